"""``wmark attack list | apply | train-regen``: the attack registries from the command line."""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="image / text attacks (list the registry, apply one to images)")
    asub = p.add_subparsers(dest="attack_command", metavar="ACTION")

    ls = asub.add_parser("list", help="print every attack with its strength -> parameter mapping")
    ls.add_argument("--kind", choices=("image", "text", "all"), default="all")
    ls.set_defaults(func=_list)

    ap = asub.add_parser("apply", help="apply an image attack to image files, writing PNGs")
    ap.add_argument("name", metavar="NAME", help="attack name (see `wmark attack list`)")
    ap.add_argument("inputs", nargs="+", metavar="IN", help="input image files")
    ap.add_argument("--strength", "-s", type=float, required=True, help="strength in [0, 1]")
    ap.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder (created if needed)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the attack's randomness (default 0)")
    ap.add_argument("--overwrite", action="store_true", help="replace existing files in OUTDIR (default: refuse)")
    ap.set_defaults(func=_apply)

    tr = asub.add_parser("train-regen", help="train the regeneration autoencoder (reproduces shipped weights)")
    tr.add_argument("--out", required=True, help="output folder (weights, sha256, card)")
    tr.add_argument("--steps", type=int, default=3000)
    tr.add_argument("--batch", type=int, default=16)
    tr.add_argument("--crop", type=int, default=96)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    tr.add_argument("--data", default=None, help="training images (default ../shared/data/train; never Kodak)")
    tr.add_argument("--device", default=None)
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _list(args: argparse.Namespace) -> int:
    from wmark.attacks import registry

    kinds = ("image", "text") if args.kind == "all" else (args.kind,)
    for kind in kinds:
        print(f"{kind} attacks (strength s in [0, 1] -> parameter):")
        for spec in registry(kind).values():
            print("  " + spec.describe())
    return 0


def _read(path: Path):
    """An image file -> [1, C, H, W] float tensor (C = 1 gray or 3 RGB)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img = img.convert("L" if img.mode in ("1", "L", "LA", "I", "I;16") else "RGB")
            a = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__})") from None
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))[None]


def _write(x, path: Path, overwrite: bool) -> None:
    """[1, C, H, W] in [0, 1] as an 8-bit PNG at ``path``, atomically; kept unless ``overwrite``."""
    import io

    from PIL import Image

    from wmark.assets import write_atomic

    a = (x[0].clamp(0, 1) * 255).round().byte().numpy()
    buf = io.BytesIO()
    Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(buf, format="PNG")
    write_atomic(path, buf.getvalue(), overwrite=overwrite)


def _apply(args: argparse.Namespace) -> int:
    import torch

    from wmark.attacks import get_attack
    from wmark.attacks.spec import check_strength

    spec = get_attack(args.name, "image")
    if spec.needs:
        raise ValueError(f"attack {args.name!r} needs {', '.join(spec.needs)} (Python API only)")
    s = check_strength(args.strength)
    inputs = [Path(p) for p in args.inputs]
    images = [_read(p) for p in inputs]  # validate every input before writing anything
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    resolved_in = {p.resolve() for p in inputs}
    targets: list[Path] = []
    for p in inputs:
        t = out / f"{p.stem}_{args.name}_s{s:g}.png"
        k = 2
        while t in targets:
            t, k = out / f"{p.stem}_{args.name}_s{s:g}_{k}.png", k + 1
        if t.resolve() in resolved_in:
            raise ValueError(f"{t}: refusing to overwrite an input")
        if os.path.lexists(t) and not args.overwrite:
            raise ValueError(f"{t}: exists (pass --overwrite to replace it)")
        targets.append(t)
    from wmark.assets import folder_lock

    gen = torch.Generator().manual_seed(args.seed)
    with folder_lock(out, "attack apply"):
        for x, t in zip(images, targets):
            _write(spec(x, s, gen), t, args.overwrite)
            print(t)
    return 0


def _train(args: argparse.Namespace) -> int:
    from wmark.assets import folder_lock
    from wmark.attacks.regen import train_autoencoder

    with folder_lock(args.out, "attack train-regen"):
        train_autoencoder(out=args.out, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                          seed=args.seed, minutes=args.minutes, data=args.data, device=args.device,
                          progress=not args.no_progress)
    return 0
