"""``wmark embed / detect / strip``: the image watermark on files and folders.

Argparse-level only at import; torch and the model load inside the command functions.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="mark images with the neural image watermark")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder (lossless PNG)")
    p.add_argument("--key-file", required=True, metavar="K")
    p.add_argument("--payload", default=None, metavar="HEX", help="6-byte payload as 12 hex digits (default zeros)")
    p.add_argument("--model", default="default")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_embed)

    p = sub.add_parser("detect", help="detect the image watermark (p-value, payload)")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("--key-file", required=True, metavar="K")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--alpha", type=float, default=1e-3, help="significance level for 'detected'")
    p.add_argument("--payload", default=None, metavar="HEX",
                   help="test for this one known payload (exact binomial p-value) instead of any payload")
    p.add_argument("--model", default="default")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_detect)

    p = sub.add_parser("strip", help="remove the image watermark with the key (restores the cover)")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR")
    p.add_argument("--key-file", required=True, metavar="K")
    p.add_argument("--payload", default=None, metavar="HEX", help="known payload (default: read it)")
    p.add_argument("--model", default="default")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_strip)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders -> their image files (sorted, non-recursive)."""
    from wmark.assets import list_images

    out: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files = list_images(p)
            if not files:
                raise ValueError(f"{p}: folder holds no images")
            out.extend(files)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return out


def _progress(items, desc: str, enabled: bool = True):
    from wmark._progress import progress

    return progress(len(items), desc, enabled and len(items) >= 4, unit="img", iterable=items)


def _out_path(src: Path, outdir: Path, used: set[Path]) -> Path:
    dst = outdir / (src.stem + ".png")
    i = 1
    while dst in used:
        dst = outdir / f"{src.stem}-{i}.png"
        i += 1
    used.add(dst)
    return dst


def _prepare_out(outdir: str, files: list[Path]) -> Path:
    od = Path(outdir)
    od.mkdir(parents=True, exist_ok=True)
    ins = {f.resolve() for f in files}
    for f in files:
        if (od / (f.stem + ".png")).resolve() in ins:
            raise ValueError(f"output would overwrite the input {f}; choose another -o folder")
    return od


def _save(img, dst: Path) -> None:
    img.save(dst, format="PNG")


def _session(args: argparse.Namespace, writes: bool):
    """(key, input files, output folder or None, model) for one command; the output folder is
    prepared (never overwriting an input) when the command ``writes``."""
    from wmark.image.model import load
    from wmark.keys import Key

    key = Key.from_file(args.key_file)
    files = expand_inputs(args.inputs)
    od = _prepare_out(args.out, files) if writes else None
    return key, files, od, load(args.model)


def _embed(args: argparse.Namespace) -> int:
    from wmark.image import io as imio

    key, files, od, model = _session(args, writes=True)
    used: set[Path] = set()
    for f in _progress(files, "embed", not args.no_progress):
        img = imio.load(f)
        res = model.embed(img, key, args.payload)
        dst = _out_path(f, od, used)
        _save(res.images, dst)
    print(f"marked {len(files)} image(s) -> {od}", file=sys.stderr)
    return 0


def _detect(args: argparse.Namespace) -> int:
    from wmark.image import io as imio

    key, files, _, model = _session(args, writes=False)
    for f in _progress(files, "detect", not args.no_progress):
        d = model.detect(imio.load(f), key, payload=args.payload, alpha=args.alpha)
        if args.json:
            print(json.dumps({"path": str(f), **d.to_json()}), flush=True)
        else:
            verdict = "MARKED" if d.detected else "not marked"
            print(f"{f}: {verdict}  p={d.p_value:.3g}  payload={d.payload_hex or '-'}", flush=True)
    return 0


def _strip(args: argparse.Namespace) -> int:
    from wmark.image import io as imio

    key, files, od, model = _session(args, writes=True)
    used: set[Path] = set()
    n_removed = 0
    for f in _progress(files, "strip", not args.no_progress):
        res = model.strip(imio.load(f), key, args.payload)
        n_removed += int(res.removed[0])
        if not res.removed[0]:
            print(f"{f}: no mark found under this key; copied unchanged", file=sys.stderr)
        _save(res.images, _out_path(f, od, used))
    print(f"stripped {n_removed}/{len(files)} image(s) -> {od}", file=sys.stderr)
    return 0
