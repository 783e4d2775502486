"""``wmark embed / detect / strip``: the image watermark on files and folders.

Argparse-level only at import; torch and the model load inside the command functions.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wmark.cli import alpha


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="mark images with the neural image watermark")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder (lossless PNG)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in OUTDIR (default: refuse)")
    p.add_argument("--key-file", required=True, metavar="K")
    p.add_argument("--payload", default=None, metavar="HEX", help="6-byte payload as 12 hex digits (default zeros)")
    p.add_argument("--model", default="default")
    p.add_argument("--strength", type=float, default=1.0,
                   help="mark strength: x the residual RMS, in (0, 2] (default 1; 0.5: +6 dB PSNR, less robust)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_embed)

    p = sub.add_parser("detect", help="detect the image watermark (p-value, payload)")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("--key-file", required=True, metavar="K")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--alpha", type=alpha, default=1e-3, help="significance level for 'detected'")
    p.add_argument("--payload", default=None, metavar="HEX",
                   help="test for this one known payload (exact binomial p-value) instead of any payload")
    p.add_argument("--model", default="default")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_detect)

    p = sub.add_parser("strip", help="remove the image watermark with the key (restores the cover)")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in OUTDIR (default: refuse)")
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
    from wmark.runtime.progress import progress

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


def _each(files: list[Path], desc: str, args: argparse.Namespace, work) -> int:
    """``work(f)`` for every file; a file that fails (bad image, existing output, I/O error) is one
    line on stderr (and a JSON row with ``error`` under ``--json``) and the batch goes on. Returns the
    number of failures."""
    failed = 0
    for f in _progress(files, desc, not args.no_progress):
        try:
            work(f)
        except (ValueError, OSError) as exc:
            failed += 1
            msg = str(exc) if str(f) in str(exc) else f"{f}: {exc}"
            print(f"wmark: error: {msg}", file=sys.stderr, flush=True)
            if getattr(args, "json", False):
                print(json.dumps({"path": str(f), "error": msg}), flush=True)
    return failed


def _summary(done: str, failed: int, total: int, od: Path | None) -> int:
    """The closing line on stderr; exit status 1 where any file failed."""
    where = f" -> {od}" if od is not None else ""
    tail = f"; {failed} of {total} failed" if failed else ""
    if od is not None or (failed and total > 1):
        print(f"{done}{where}{tail}", file=sys.stderr)
    return 1 if failed else 0


def _session(args: argparse.Namespace, writes: bool):
    """(key, input files, output folder or None) for one command; the output folder is prepared
    (never overwriting an input) when the command ``writes``."""
    from wmark.keys import Key

    key = Key.from_file(args.key_file)
    files = expand_inputs(args.inputs)
    od = _prepare_out(args.out, files) if writes else None
    return key, files, od


def _write_all(args: argparse.Namespace, command: str, key, files: list[Path], od: Path, make) -> int:
    """The writing commands' loop: holds ``od`` (one run at a time), skips outputs that a previous
    run with the same input, key and settings finished (the manifest), writes each new PNG
    atomically, records it, and goes on past bad files.
    ``make(model, image) -> (PIL image or Image16, note or None)``."""
    from wmark.assets import folder_lock, sha256_bytes, sha256_file
    from wmark.image import io as imio
    from wmark.image.model import load
    from wmark.runtime.manifest import Manifest

    used: set[Path] = set()
    dsts = {f: _out_path(f, od, used) for f in files}
    params = {"command": command, "key": key.fingerprint, "payload": args.payload, "model": args.model,
              **({"strength": args.strength} if getattr(args, "strength", 1.0) != 1.0 else {})}
    counts = {"done": 0, "skipped": 0}
    with folder_lock(od, command):
        manifest = Manifest(od, params)
        model = load(args.model)

        def work(f: Path) -> None:
            dst = dsts[f]
            src_digest = sha256_file(f)
            if not args.overwrite and manifest.complete(dst, src_digest):
                counts["skipped"] += 1
                return
            img, note = make(model, imio.load(f))
            if note:
                print(f"{f}: {note}", file=sys.stderr)
            blob = _png(img)
            _write(blob, dst, args.overwrite)
            manifest.record(dst, f, src_digest, sha256_bytes(blob))
            counts["done"] += 1

        failed = _each(files, command, args, work)
    skipped = f", {counts['skipped']} already done" if counts["skipped"] else ""
    verb = {"embed": "marked", "strip": "stripped"}[command]
    return _summary(f"{verb} {counts['done']}/{len(files)} image(s){skipped}", failed, len(files), od)


def _png(img) -> bytes:
    """What embed / strip return (a PIL image or an ``Image16``) as PNG bytes: bit depth and ICC /
    EXIF / DPI kept."""
    from wmark.image import io as imio

    return imio.png_bytes(img)


def _write(blob: bytes, dst: Path, overwrite: bool) -> None:
    """PNG bytes at ``dst``, atomically; an existing file is kept unless ``overwrite``."""
    from wmark.assets import write_atomic

    write_atomic(dst, blob, overwrite=overwrite)


def _embed(args: argparse.Namespace) -> int:
    from wmark.image.model import check_strength

    check_strength(args.strength)
    key, files, od = _session(args, writes=True)

    def make(model, img):
        res = model.embed(img, key, args.payload, strength=args.strength)
        lost = res.detectable and not res.detectable[0]
        return res.images, (f"warning: the mark will not be found here ({res.reasons[0]}); written anyway"
                            if lost else None)

    return _write_all(args, "embed", key, files, od, make)


def _detect(args: argparse.Namespace) -> int:
    from wmark.image import io as imio
    from wmark.image.model import load

    key, files, _ = _session(args, writes=False)
    model = load(args.model)

    def work(f: Path) -> None:
        d = model.detect(imio.load(f), key, payload=args.payload, alpha=args.alpha)
        if args.json:
            print(json.dumps({"path": str(f), **d.to_json()}), flush=True)
        else:
            verdict = "MARKED" if d.detected else "not marked"
            print(f"{f}: {verdict}  p={d.p_value:.3g}  payload={d.payload_hex or '-'}", flush=True)

    failed = _each(files, "detect", args, work)
    return _summary(f"read {len(files) - failed}/{len(files)} image(s)", failed, len(files), None)


def _strip(args: argparse.Namespace) -> int:
    key, files, od = _session(args, writes=True)

    def make(model, img):
        res = model.strip(img, key, args.payload)
        if res.removed[0]:
            return res.images, None
        why = res.results[0].reason if res.results else "no mark found under this key"
        return res.images, f"{why}; copied unchanged"

    return _write_all(args, "strip", key, files, od, make)
