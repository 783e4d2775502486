"""``wmark bench robustness | text-robustness``: attack sweeps written as JSON, Markdown and PNG plots."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

from wmark.bench.outputs import Output

#: ``--out`` / ``--overwrite`` / ``--update-results`` of the two sweeps
ROBUSTNESS_OUT = Output("runs/robustness", results="robustness",
                        what="output folder: results.json, report.md, *.png")
TEXT_ROBUSTNESS_OUT = Output("runs/text-robustness", results="text-robustness",
                             what="output folder: results.json, report.md, text_robustness.png")


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="robustness benchmarks: image attacks x strengths, text edit rates")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH")

    r = bsub.add_parser("robustness", help="image attacks x strengths for wmark and the invisible-watermark baselines")
    r.add_argument("images", nargs="?", default=None, metavar="IMAGES_DIR",
                   help="folder of images (default ../shared/data/kodak; --quick falls back to synthetic images)")
    ROBUSTNESS_OUT.add_arguments(r)
    r.add_argument("--attacks", type=_names, default=None,
                   help="comma list of image attacks (default: the whole registry; see `wmark attack list`)")
    r.add_argument("--strengths", type=_floats, default=None, help="comma list in [0, 1] (default 0,0.25,0.5,0.75,1)")
    r.add_argument("--methods", type=_names, default=None, help="comma list of wmark,dwtDct,dwtDctSvd,rivaGan")
    r.add_argument("--n", type=int, default=None, help="number of images (default 24; --quick 3)")
    r.add_argument("--rivagan-n", type=int, default=2, help="images for rivaGan, ~4 s per decode (default 2)")
    r.add_argument("--quick", action="store_true",
                   help="3 images cropped to 256x256, strengths 0,0.5, 7 attacks, no rivaGan (CI smoke run)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--jobs", type=int, default=1,
                   help="worker processes, one thread each (e.g. 2 on 2 cores); results do not depend on it")
    r.add_argument("--weights", default=None, metavar="FILE",
                   help="image weights file for wmark, e.g. DIR/default.pt from `wmark train image` "
                        "(default: the shipped weights)")
    r.set_defaults(func=_robustness)

    t = bsub.add_parser("text-robustness", help="TPR at FPR 1e-3 vs edit rate for the text schemes (built-in LM)")
    TEXT_ROBUSTNESS_OUT.add_arguments(t)
    t.add_argument("--schemes", type=_names, default=None,
                   help="comma list (default kgw-lefthash,kgw-selfhash,unigram,gumbel,tournament)")
    t.add_argument("--lengths", type=_ints, default=None, help="generated tokens per text, comma list (default 200)")
    t.add_argument("--rates", type=_floats, default=None, help="edit rates in [0, 1] (default 0,0.1,...,0.5)")
    t.add_argument("--attacks", type=_names, default=None,
                   help="comma list of text attacks (default delete,insert,substitute,lm_substitute)")
    t.add_argument("--n", type=int, default=None, help="texts per scheme (default 100; --quick 8)")
    t.add_argument("--fpr-n", type=int, default=None,
                   help="unmarked texts for the FPR row only (default: --n); FPR at 1e-2 and 1e-3 with 95%% "
                        "Clopper-Pearson intervals")
    t.add_argument("--quick", action="store_true", help="8 texts of 100 tokens, rates 0,0.3, 3 attacks")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_text_robustness)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _timed(run: Callable[[], object], out: Path) -> int:
    t0 = time.perf_counter()
    run()
    print(f"wrote {out}/results.json, {out}/report.md and plots ({time.perf_counter() - t0:.0f} s)")
    return 0


def _robustness(args: argparse.Namespace) -> int:
    from wmark.bench.robustness import RobustnessConfig, run_robustness

    out, overwrite = ROBUSTNESS_OUT.path(args)
    cfg = RobustnessConfig(out=str(out), images=args.images, attacks=args.attacks, strengths=args.strengths,
                           methods=args.methods, n=args.n, rivagan_n=args.rivagan_n, quick=args.quick,
                           seed=args.seed, progress=not args.no_progress, jobs=args.jobs, weights=args.weights,
                           overwrite=overwrite)
    return _timed(lambda: run_robustness(cfg), out)


def _text_robustness(args: argparse.Namespace) -> int:
    from wmark.bench.text_robustness import TextRobustnessConfig, run_text_robustness

    out, overwrite = TEXT_ROBUSTNESS_OUT.path(args)
    cfg = TextRobustnessConfig(out=str(out), schemes=args.schemes, lengths=args.lengths, rates=args.rates,
                               attacks=args.attacks, n=args.n, fpr_n=args.fpr_n, quick=args.quick, seed=args.seed,
                               progress=not args.no_progress, overwrite=overwrite)
    return _timed(lambda: run_text_robustness(cfg), out)
