"""The strength knob: imperceptibility (PSNR) against robustness, per ``embed(strength=)``.

    .venv/bin/python bench/image_strength.py [--quick] [--strengths S ...] [--out FILE | --update-results]
        [--overwrite] [--no-progress]

Writes runs/image_strength.json by default (``--update-results``: the committed
bench/results/image_strength.json).

Images: Kodak (every other photo from kodim01; evaluation only) and the photos bundled with
scikit-image (``skimage.data``), each marked with a random payload at each strength. Per strength:
mean PSNR to the cover; bit accuracy (the payload's codeword bits read at the winning hypothesis)
and blind TPR at alpha = 1e-3 (payload unknown, the right payload decoded) on the marked image, after
JPEG q50 and after the registry's ``degradation`` chain (blur, noise, JPEG) at strength 0.25
(blur sigma 1 px, noise sigma 0.05, JPEG q70). TrustMark's published operating points (Bui et al.
2023: variant Q ~43 dB, variant P ~48-50 dB PSNR, both at ~95% bit accuracy under their noise
model) are quoted beside it, not run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, markdown_table, progress, write_json  # noqa: E402

OUTPUT = json_output("image_strength")
STRENGTHS = (0.5, 0.7, 1.0, 1.4, 2.0)
SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
ALPHA = 1e-3


def _images(quick: bool) -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    from wmark.assets import shared_data

    out = []
    kodak = sorted((shared_data() / "kodak").glob("kodim*.png"))[:: 6 if quick else 2]
    for p in kodak:
        out.append((p.stem, np.asarray(Image.open(p).convert("RGB"))))
    try:
        import skimage.data as sk
    except ImportError:
        print("scikit-image not installed: its photos are left out", file=sys.stderr)
        return out
    for name in SKIMAGE[:2] if quick else SKIMAGE:
        a = np.asarray(getattr(sk, name)())
        out.append((name, np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a[..., :3]))
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 Kodak + 2 skimage photos, 3 strengths")
    ap.add_argument("--strengths", nargs="+", type=float, default=None)
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("image_strength", exc)

    import torch

    from wmark import Key
    from wmark.attacks import get_attack
    from wmark.image import load

    strengths = args.strengths or ((0.5, 1.0, 2.0) if args.quick else STRENGTHS)
    images = _images(args.quick)
    if not images:
        return fail("image_strength", "no images (../shared/data/kodak absent and scikit-image missing)")
    wm = load()
    key = Key.generate()
    rng = np.random.default_rng(0)
    payloads = [rng.integers(0, 256, 6, dtype=np.uint8).tobytes() for _ in images]
    chains = {"clean": None, "jpeg50": (get_attack("jpeg"), 0.5), "degradation0.25": (get_attack("degradation"), 0.25)}
    res, rows = {}, []
    with progress(len(strengths) * len(images), "image_strength", not args.no_progress, unit="image") as bar:
        for s in strengths:
            cell = {"psnr": [], **{f"{c}_tpr": [] for c in chains}, **{f"{c}_bit_acc": [] for c in chains}}
            for (name, img), payload in zip(images, payloads):
                r = wm.embed(img, key, payload, strength=s, verify=False)
                cell["psnr"].append(_psnr(img, r.images))
                x = torch.from_numpy(np.ascontiguousarray(r.images)).permute(2, 0, 1)[None].float() / 255
                gen = torch.Generator().manual_seed(1)
                for c, att in chains.items():
                    y = x if att is None else att[0](x, att[1], gen)
                    d = wm.detect(y[0], key)
                    cell[f"{c}_tpr"].append(float(d.detected and d.payload == payload))
                    cell[f"{c}_bit_acc"].append(float((np.asarray(d.bits) == np.asarray(r.bits)).mean()))
                bar.update(1)
            means = {k: float(np.mean(v)) for k, v in cell.items()}
            res[str(s)] = {"per_image": cell, "mean": means}
            rows.append([f"wmark strength {s:g}", means["psnr"], means["clean_bit_acc"], means["clean_tpr"],
                         means["jpeg50_bit_acc"], means["jpeg50_tpr"], means["degradation0.25_bit_acc"],
                         means["degradation0.25_tpr"]])
    rows.append(["TrustMark Q (published)", "~43", "~0.95", "—", "—", "—", "—", "—"])
    rows.append(["TrustMark P (published)", "~48-50", "~0.95", "—", "—", "—", "—", "—"])
    table = markdown_table(["model", "PSNR dB", "bit acc clean", f"TPR@{ALPHA:g} clean", "bit acc JPEG50",
                            "TPR JPEG50", "bit acc degradation 0.25", "TPR degradation 0.25"], rows)
    payload = {"setup": {"images": [n for n, _ in images], "alpha": ALPHA, "strengths": list(strengths),
                         "payload": "random 48-bit per image", "detection": "blind (payload unknown)"},
               "results": res, "table_md": table}
    path = write_json("image_strength", payload, out)
    print(table)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
