"""``wmark scrub``: detect -> report / drop / strip over a whole dataset, with a manifest.

Argparse-level only at import; the pipeline, torch and the models load inside the command.
"""
from __future__ import annotations

import argparse
import json
import sys

from wmark.cli import alpha

EPILOG = """\
inputs (format inferred from the suffixes, --format to force):
  folder      a folder tree of images (recursive), or of .txt files (--kind text)
  webdataset  .tar shards (a file or a folder of them); samples grouped by key
  parquet     .parquet with an image-bytes (or HF {bytes, path}) or a text column (--column)
  jsonl       JSON Lines with a text field (--column/--field, default "text")

OUT gets the scrubbed dataset in the input's format and layout (not with --action report),
manifest.parquet (one row per sample), summary.json, report.md and pvalues.png. A killed run
continues with the same command and --resume. With --fdr the run makes two passes over the
input (p-values first, Benjamini-Hochberg needs them all; then the decisions and actions).
"""


def _size(text: str) -> int:
    from wmark.text.stream import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _quality(text: str) -> int:
    v = _positive(text)
    if v > 100:
        raise argparse.ArgumentTypeError(f"a JPEG quality is in 1..100, got {v}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    from wmark.scrub.engines import ENGINES
    from wmark.scrub.sources import SOURCES

    p = sub.add_parser("scrub", help="detect and report / drop / strip marked samples of a whole dataset",
                       description="Detect the mark of a key in every sample of a dataset, decide (--alpha or "
                       "--fdr), act (--action) and write the result with a manifest of every decision.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="a folder, a .tar shard, a .parquet or .jsonl file (or a folder "
                   "of them)")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder (new or empty; --resume to "
                   "continue a run in it)")
    p.add_argument("--key-file", required=True, metavar="K")
    p.add_argument("--action", choices=("report", "drop", "strip"), default="report",
                   help="report: manifest only; drop: leave marked samples out; strip: remove the mark (images; "
                   "text: keep + de-bias weights) (default report)")
    p.add_argument("--kind", choices=("image", "text"), default=None, help="what the samples are (default: "
                   "from the input)")
    p.add_argument("--format", choices=sorted(SOURCES), default=None, help="input format (default: inferred)")
    p.add_argument("--column", "--field", dest="column", default=None, metavar="NAME",
                   help="parquet column / JSON Lines field holding the samples")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--alpha", type=alpha, default=None, help="per-sample significance level (default 1e-3)")
    rule.add_argument("--fdr", type=alpha, default=None, metavar="Q",
                      help="Benjamini-Hochberg false discovery rate instead (two passes)")
    p.add_argument("--on-error", choices=("copy", "skip"), default="copy",
                   help="bad samples: copied unchanged (default) or left out of the output")
    p.add_argument("--manifest-format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in OUT (same settings)")
    p.add_argument("--engine", choices=sorted(ENGINES), default="local")
    p.add_argument("--jobs", type=_positive, default=1, help="worker processes (default 1)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when present)")
    p.add_argument("--batch-size", type=_positive, default=16, help="samples per detection batch (default 16)")
    p.add_argument("--chunk-size", type=_positive, default=256,
                   help="files per commit unit of a folder input (default 256; shards and files are one unit)")
    p.add_argument("--jpeg-quality", type=_quality, default=95,
                   help="quality of stripped JPEG / WebP images written back (default 95)")
    p.add_argument("--max-bytes", type=_size, default=None, metavar="SIZE",
                   help="samples larger than SIZE are error rows (K/M/G; 0 = no limit; default 256M)")
    p.add_argument("--max-pixels", type=_positive, default=None, help="images with more pixels are error rows "
                   "(default $WMARK_MAX_PIXELS or 128 MP)")
    p.add_argument("--model", default="default", help="image model (shipped weights name)")
    p.add_argument("--scheme", default="kgw-selfhash", help="text scheme (as `wmark text detect`)")
    p.add_argument("--gamma", type=float, default=None)
    p.add_argument("--delta", type=float, default=None)
    p.add_argument("--context-width", type=int, default=None)
    p.add_argument("--tokenizer", default=None, help="a tokenizer.json (default: the built-in LM's)")
    p.add_argument("--vocab-size", type=int, default=None)
    p.add_argument("--min-window", type=_positive, default=50, help="smallest text window searched (tokens)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_scrub)


def _scrub(args: argparse.Namespace) -> int:
    from wmark.keys import Key
    from wmark.scrub.pipeline import scrub
    from wmark.scrub.scrubber import DEFAULT_MAX_BYTES

    key = Key.from_file(args.key_file)
    params = {k: v for k, v in (("gamma", args.gamma), ("delta", args.delta),
                                ("context_width", args.context_width)) if v is not None}
    res = scrub(args.input, args.out, key, action=args.action, kind=args.kind, format=args.format,
                column=args.column, alpha=args.alpha if args.alpha is not None else 1e-3, fdr=args.fdr,
                on_error=args.on_error, manifest_format=args.manifest_format, resume=args.resume,
                engine=args.engine, jobs=args.jobs, device=args.device, batch_size=args.batch_size,
                chunk_size=args.chunk_size, jpeg_quality=args.jpeg_quality,
                max_bytes=DEFAULT_MAX_BYTES if args.max_bytes is None else args.max_bytes,
                max_pixels=args.max_pixels, model=args.model, scheme=args.scheme, scheme_params=params or None,
                tokenizer=args.tokenizer, vocab_size=args.vocab_size, min_window=args.min_window,
                progress=not args.no_progress)
    c = res.counts
    rule = f"alpha {res.level:g}" if res.rule == "alpha" else f"FDR q {res.level:g}"
    resumed = f", {res.resumed_units} of {res.units} units already done" if res.resumed_units else ""
    print(f"scrubbed {c['samples']} samples ({c['detected']} marked at {rule}; expected false {res.expected_false:.3g}): "
          f"{c['kept']} kept, {c['dropped']} dropped, {c['stripped']} stripped, {c['error']} error(s){resumed} "
          f"-> {res.out}", file=sys.stderr)
    if args.json:
        print(json.dumps(res.to_json()), flush=True)
    return 0
