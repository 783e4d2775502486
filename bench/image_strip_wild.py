"""Strip in the wild: marked images recompressed, resized, cropped, rotated (and pairs), then stripped with
the key; today's strip (``src/wmark/image/model.py`` at ``--old-rev``, default git HEAD) beside the
current one, same images, same transforms, same run.

    .venv/bin/python bench/image_strip_wild.py              # writes runs/image_strip_wild.json
    .venv/bin/python bench/image_strip_wild.py --quick      # smoke run (2 images, 3 transforms)

Images: ``--kodak`` Kodak photos (every third from kodim01; evaluation only) and ``--skimage`` photos
bundled in scikit-image's wheel (astronaut, chelsea, coffee, rocket, camera, coins). Each is
marked with a random 48-bit payload under the demo key. A transform (``TRANSFORMS``) is applied to the
marked image and, with the same parameters and seed, to the cover: the "equally transformed cover".
Per (image, transform) and per strip: ``gone`` = the payload's own test on the stripped image (the
key holder's strongest) gives p >= 0.01; ``dpsnr`` = PSNR(stripped, transformed cover) - PSNR(transformed
marked, transformed cover) (RGB, 8-bit); ``changed``; the new strip's hypothesis / reason. Worst = the
smallest dpsnr. Transforms use PIL (JPEG, WebP, Lanczos resize: what scrapers use) and kornia's
rotation (bilinear, black corners); crops are at odd offsets drawn per image.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, markdown_table, progress, write_json  # noqa: E402
from image_detect_sets import load_old  # noqa: E402  (the image model at a git revision)

OUTPUT = json_output("image_strip_wild")
SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
TRANSFORMS = ("jpeg75", "webp50", "resize0.5", "resize0.75", "resize1.5", "resize2.0", "crop256-odd",
              "rotate5", "rotate10", "resize0.75+jpeg75", "crop256-odd+jpeg75", "rotate5+crop256-odd")
QUICK = ("jpeg75", "resize0.75", "crop256-odd")
GONE_P = 0.01


def images(args) -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    from wmark.assets import shared_data

    out = []
    paths = sorted((shared_data() / "kodak").glob("*.png"))[::3][:args.kodak]
    out += [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in paths]
    try:
        import skimage.data as skd
    except ImportError:
        print("image_strip_wild: scikit-image is not installed: the skimage photos are left out", file=sys.stderr)
        return out
    for name in SKIMAGE[:args.skimage]:
        a = np.asarray(getattr(skd, name)())
        out.append((name, np.ascontiguousarray(a[..., :3] if a.ndim == 3 else a)))
    return out


def one(img: np.ndarray, t: str, rng: np.random.Generator) -> np.ndarray:
    """One transform step of ``t`` (uint8 in, uint8 out); ``rng`` draws crop offsets."""
    from PIL import Image

    pil = Image.fromarray(img)
    if t.startswith(("jpeg", "webp")):
        buf = io.BytesIO()
        pil.save(buf, format="JPEG" if t.startswith("jpeg") else "WEBP", quality=int(t[4:]))
        with Image.open(io.BytesIO(buf.getvalue())) as dec:
            return np.asarray(dec.convert(pil.mode))
    if t.startswith("resize"):
        f = float(t[6:])
        w, h = pil.size
        return np.asarray(pil.resize((max(64, round(w * f)), max(64, round(h * f))), Image.LANCZOS))
    if t.startswith("crop"):
        side = int(t[4:].split("-")[0])
        h, w = img.shape[:2]
        ch, cw = min(side, h), min(side, w)
        y0 = min(h - ch, 2 * int(rng.integers(0, max(1, (h - ch) // 2))) + 1) if h > ch else 0
        x0 = min(w - cw, 2 * int(rng.integers(0, max(1, (w - cw) // 2))) + 1) if w > cw else 0
        return img[y0:y0 + ch, x0:x0 + cw]
    if t.startswith("rotate"):
        import torch
        from kornia.geometry.transform import rotate

        x = torch.from_numpy(np.ascontiguousarray(img)).float() / 255
        x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
        y = rotate(x, torch.tensor([float(t[6:])]), mode="bilinear", padding_mode="zeros", align_corners=True)
        a = (y[0].clamp(0, 1) * 255).round().byte().numpy()
        return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    raise ValueError(t)


def transform(img: np.ndarray, t: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    for part in t.split("+"):
        img = one(img, part, rng)
    return img


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kodak", type=int, default=8)
    ap.add_argument("--skimage", type=int, default=6)
    ap.add_argument("--transforms", default=",".join(TRANSFORMS))
    ap.add_argument("--old-rev", default="HEAD", help="git revision of today's strip ('' = none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("image_strip_wild", exc)

    import torch

    from wmark.image.model import load
    from wmark.image.quality import psnr
    from wmark.keys import Key

    torch.set_num_threads(args.threads)
    transforms = QUICK if args.quick else tuple(args.transforms.split(","))
    if args.quick:
        args.kodak, args.skimage = 1, 1
    new = load()
    strippers = {"new": new}
    if args.old_rev:
        strippers = {"old": load_old(args.old_rev), "new": new}
    key = Key.demo()
    rng = np.random.default_rng(args.seed)
    imgs = images(args)
    rows, secs = [], {k: 0.0 for k in strippers}
    with progress(len(imgs) * len(transforms), "image_strip_wild", not args.no_progress, unit="case") as bar:
        for name, cover in imgs:
            payload = rng.bytes(6)
            marked = new.embed(cover, key, payload).images
            for t in transforms:
                bar.set_postfix_str(f"{name} {t}")
                seed = zlib.crc32(f"{name}/{t}".encode())
                tc, tm = transform(cover, t, seed), transform(marked, t, seed)
                base = psnr(tc, tm)
                row = {"image": name, "transform": t, "size": list(tm.shape[:2]), "psnr_before": base}
                for sn, wm in strippers.items():
                    t0 = time.perf_counter()
                    res = wm.strip(tm, key)
                    secs[sn] += time.perf_counter() - t0
                    after = new.detect(res.images, key, payload=payload)
                    cell = {"changed": bool(res.removed[0]), "p_after": float(after.p_value),
                            "gone": bool(after.p_value >= GONE_P), "dpsnr": psnr(tc, res.images) - base}
                    if hasattr(res, "results") and res.results:
                        r = res.results[0]
                        cell.update(hypothesis=r.hypothesis, reason=r.reason, method=r.method, gain=r.gain,
                                    p_before=r.p_before, geometry=None if r.geometry is None else r.geometry.to_json())
                    row[sn] = cell
                rows.append(row)
                bar.update(1)
    summary = {}
    for t in transforms + ("all",):
        sel = [r for r in rows if t in ("all", r["transform"])]
        summary[t] = {sn: {"n": len(sel), "gone": float(np.mean([r[sn]["gone"] for r in sel])),
                           "changed": float(np.mean([r[sn]["changed"] for r in sel])),
                           "mean_dpsnr": float(np.mean([r[sn]["dpsnr"] for r in sel])),
                           "worst_dpsnr": float(np.min([r[sn]["dpsnr"] for r in sel]))} for sn in strippers}
    header = ["transform", "n"] + [f"{sn} {m}" for sn in strippers for m in ("gone", "mean ΔPSNR", "worst ΔPSNR")]
    table = markdown_table(header, [[t, summary[t][next(iter(strippers))]["n"]]
                                    + [v for sn in strippers for v in (f"{summary[t][sn]['gone']:.0%}",
                                                                       round(summary[t][sn]["mean_dpsnr"], 2),
                                                                       round(summary[t][sn]["worst_dpsnr"], 2))]
                                    for t in summary])
    print(table)
    write_json("image_strip_wild", {"old_rev": args.old_rev or None, "gone_p": GONE_P, "transforms": list(transforms),
                                    "images": [n for n, _ in imgs], "seconds": secs, "summary": summary,
                                    "table": table, "rows": rows}, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
