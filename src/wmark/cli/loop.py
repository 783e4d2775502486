"""``wmark loop``: run a self-consuming loop from a preset or a JSON config into a run folder."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loop", help="run the self-consuming training loop (presets, configs, resume)",
                       description="Run a self-consuming loop into a run folder: config.json, "
                                   "generations.jsonl, checkpoint.pt (tensors and plain data, never "
                                   "pickle), key.hex (a marked run's fresh key, mode 0600, unless the "
                                   "config names one), report.md, plots/. One run at a time per folder.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", metavar="NAME", help="a named preset (see --list)")
    src.add_argument("--config", metavar="FILE", help="a JSON config (keys of LoopConfig; may name a 'preset')")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/loop-NAME); never overwritten")
    p.add_argument("--list", action="store_true", help="list presets, model families and markers")
    p.add_argument("--seeds", type=int, metavar="N", help="override the number of seeds")
    p.add_argument("--generations", type=int, metavar="N", help="override the number of generations")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its checkpoint (identical results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="write report.md without PNG plots")
    p.set_defaults(func=_run)


def _list() -> int:
    from wmark.loop.markers import marker_names
    from wmark.loop.models import family_names
    from wmark.loop.presets import PRESETS, preset_names

    print("presets:")
    for name in preset_names():
        print(f"  {name:28s} {PRESETS[name].description}")
    print("model families: " + ", ".join(family_names()))
    print("markers: " + ", ".join(marker_names()))
    return 0


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.list:
        return _list()
    from wmark.loop.config import LoopConfig
    from wmark.loop.engine import run_loop
    from wmark.loop.presets import get_preset
    from wmark.loop.report import write_report

    cfg = None
    if args.preset:
        cfg = get_preset(args.preset)
    elif args.config:
        cfg = LoopConfig.from_json(args.config)
    elif not (args.resume and args.out):
        raise ValueError("give --preset NAME or --config FILE (or --resume --out DIR); --list shows presets")
    overrides = {k: v for k in ("seeds", "generations") if (v := getattr(args, k)) is not None}
    if overrides and cfg is None:
        from wmark.loop.engine import load_result

        cfg = load_result(args.out).config
    if overrides:
        cfg = cfg.replace(**overrides)
    out = Path(args.out) if args.out else Path("runs") / f"loop-{cfg.name}"
    result = run_loop(cfg, out, resume=args.resume, progress=not args.no_progress)
    report = write_report(result, plots=not args.no_plots)
    print(f"wrote {report}")
    return 0
