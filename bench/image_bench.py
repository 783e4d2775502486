"""Kodak benchmark for the image watermark (+ invisible-watermark baselines when installed).

    .venv/bin/python bench/image_bench.py                     # writes runs/image_bench.json and .md
    .venv/bin/python bench/image_bench.py --update-results    # the committed bench/results/image_bench.*

``--out STEM`` writes STEM.json and STEM.md; existing ones are replaced only with ``--overwrite``.

Kodak is the evaluation set only (never used for training or tuning). Per method: PSNR / SSIM of
the marked images, ms per embed and per decode (768x512, this machine), mean bit accuracy under each
attack; for wmark also the detection rate at p < 1e-6, and strip quality (PSNR to the original,
fraction with p > 0.01 after strip, bit accuracy after strip).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Output, OutputError, fail, progress, write_output  # noqa: E402

ATTACKS = ["clean", "jpeg75", "jpeg50", "resize0.5", "crop50", "noise.03", "bright1.3", "rot+10", "rot-10",
           "blur1", "combo"]
OUTPUT = Output("runs/image_bench", results="image_bench", file=True, suffixes=(".json", ".md"),
                what="output stem: STEM.json and STEM.md")


def _jpeg(img: Image.Image, q: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=q)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def attack(img: Image.Image, name: str, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    if name == "clean":
        return img
    if name.startswith("jpeg"):
        return _jpeg(img, int(name[4:]))
    if name == "resize0.5":  # down to half size and back up (decoders get the original size)
        return img.resize((w // 2, h // 2), Image.BICUBIC).resize((w, h), Image.BICUBIC)
    if name == "crop50":  # centre crop keeping 50% of the area
        cw, ch = int(round(w * 0.5 ** 0.5)), int(round(h * 0.5 ** 0.5))
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        return img.crop((x0, y0, x0 + cw, y0 + ch))
    if name == "noise.03":
        a = np.asarray(img, np.float64) / 255 + rng.normal(0, 0.03, (h, w, 3))
        return Image.fromarray(np.clip(np.rint(a * 255), 0, 255).astype(np.uint8))
    if name == "bright1.3":
        return ImageEnhance.Brightness(img).enhance(1.3)
    if name.startswith("rot"):
        return img.rotate(float(name[3:]), resample=Image.BILINEAR)
    if name == "blur1":
        return img.filter(ImageFilter.GaussianBlur(1.0))
    if name == "combo":
        img = _jpeg(img, 75)
        img = img.resize((int(w * 0.75), int(h * 0.75)), Image.BICUBIC).resize((w, h), Image.BICUBIC)
        return ImageEnhance.Brightness(img).enhance(1.2)
    raise ValueError(name)


def psnr(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(10 * np.log10(255 ** 2 / max(((a - b) ** 2).mean(), 1e-12)))


def ssim(a, b) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(a), np.asarray(b), channel_axis=2, data_range=255))


def payload_bits(wm, d, key) -> np.ndarray:
    """The 48 payload bits wmark returns: the RS-decoded payload, or where decoding fails the
    systematic part of the descrambled carried bits (its best guess)."""
    from wmark.codes import bytes_to_bits

    if d.payload is not None:
        return bytes_to_bits(d.payload)
    return wm.code.descramble(d.bits, key)[: wm.code.k_bits]


def bench_wmark(images, rng, threads, bar=None):
    import torch

    from wmark.codes import bytes_to_bits
    from wmark.image.model import load
    from wmark.keys import Key

    torch.set_num_threads(threads)
    wm = load()
    key = Key.demo()
    res = {"psnr": [], "ssim": [], "ms_embed": [], "ms_decode": [], "acc": {a: [] for a in ATTACKS},
           "acc_payload": {a: [] for a in ATTACKS},
           "det": {a: [] for a in ATTACKS}, "strip_psnr": [], "strip_p": [], "strip_acc": []}
    wm.embed(images[0], key)  # warm-up
    for img in images:
        payload = rng.bytes(6)
        t = time.perf_counter()
        emb = wm.embed(img, key, payload)
        res["ms_embed"].append(1e3 * (time.perf_counter() - t))
        marked = emb.images
        res["psnr"].append(psnr(img, marked))
        res["ssim"].append(ssim(img, marked))
        for a in ATTACKS:
            att = attack(marked, a, rng)
            t = time.perf_counter()
            d = wm.detect(att, key)
            if a == "clean":
                res["ms_decode"].append(1e3 * (time.perf_counter() - t))
            res["acc"][a].append(float((d.bits == emb.bits).mean()))
            res["acc_payload"][a].append(float((payload_bits(wm, d, key) == bytes_to_bits(emb.payload)).mean()))
            res["det"][a].append(bool(d.p_value < 1e-6))
        st = wm.strip(marked, key)
        res["strip_psnr"].append(psnr(img, st.images))
        ds = wm.detect(st.images, key)
        res["strip_p"].append(ds.p_value)
        res["strip_acc"].append(float((ds.bits == emb.bits).mean()))
        if bar is not None:
            bar.update(1)
    # batched throughput (same-size images as one tensor batch)
    x = torch.stack([torch.from_numpy(np.asarray(i)).permute(2, 0, 1).float() / 255 for i in images
                     if i.size == (768, 512)][:8])
    t = time.perf_counter()
    y = wm.embed_tensor(x, key)
    wm.logits_tensor(y)
    res["batch_img_per_s"] = x.shape[0] / (time.perf_counter() - t)
    return res


def bench_baseline(images, method: str, rng, bar=None):
    import cv2
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    if method == "rivaGan":
        WatermarkEncoder.loadModel()
    res = {"psnr": [], "ssim": [], "ms_embed": [], "ms_decode": [], "acc": {a: [] for a in ATTACKS}}
    for img in images:
        bits = rng.integers(0, 2, 32).tolist()
        enc = WatermarkEncoder()
        enc.set_watermark("bits", bits)
        bgr = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
        t = time.perf_counter()
        out = enc.encode(bgr, method)
        res["ms_embed"].append(1e3 * (time.perf_counter() - t))
        marked = Image.fromarray(cv2.cvtColor(out, cv2.COLOR_BGR2RGB))
        res["psnr"].append(psnr(img, marked))
        res["ssim"].append(ssim(img, marked))
        dec = WatermarkDecoder("bits", 32)
        for a in ATTACKS:
            att = attack(marked, a, rng)
            t = time.perf_counter()
            try:
                got = dec.decode(cv2.cvtColor(np.asarray(att), cv2.COLOR_RGB2BGR), method)
                acc = float((np.asarray(got, dtype=int) == np.asarray(bits)).mean())
            except Exception:
                acc = 0.5
            if a == "clean":
                res["ms_decode"].append(1e3 * (time.perf_counter() - t))
            res["acc"][a].append(acc)
        if bar is not None:
            bar.update(1)
    return res


def summarise(res) -> dict:
    out = {k: float(np.mean(v)) for k, v in res.items() if k in ("psnr", "ssim", "ms_embed", "ms_decode")}
    out["psnr_min"] = float(np.min(res["psnr"]))
    out["acc"] = {a: float(np.mean(v)) for a, v in res["acc"].items()}
    if "acc_payload" in res:
        out["acc_payload"] = {a: float(np.mean(v)) for a, v in res["acc_payload"].items()}
    if "det" in res:
        out["tpr@1e-6"] = {a: float(np.mean(v)) for a, v in res["det"].items()}
        out["strip_psnr_mean"] = float(np.mean(res["strip_psnr"]))
        out["strip_psnr_min"] = float(np.min(res["strip_psnr"]))
        out["strip_gone_frac"] = float(np.mean(np.asarray(res["strip_p"]) > 0.01))
        out["strip_bit_acc"] = float(np.mean(res["strip_acc"]))
        out["batch_img_per_s"] = float(res["batch_img_per_s"])
    return out


def markdown(summary: dict) -> str:
    cols = ["PSNR dB", "SSIM", "ms embed", "ms decode", *ATTACKS]
    lines = ["| method | " + " | ".join(cols) + " |", "| --- " * (len(cols) + 1) + "|"]
    for m, s in summary.items():
        row = [f"{s['psnr']:.1f}", f"{s['ssim']:.3f}", f"{s['ms_embed']:.0f}", f"{s['ms_decode']:.0f}",
               *[f"{s['acc'][a]:.3f}" for a in ATTACKS]]
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    w = summary.get("wmark")
    if w:
        lines += ["", "wmark payload bit accuracy (48 RS-decoded bits): "
                  + ", ".join(f"{a} {v:.4f}" for a, v in w["acc_payload"].items()),
                  "", "wmark detection rate at p < 1e-6: " + ", ".join(f"{a} {v:.2f}" for a, v in w["tpr@1e-6"].items()),
                  f"wmark PSNR worst image {w['psnr_min']:.1f} dB; strip: PSNR mean {w['strip_psnr_mean']:.1f} / "
                  f"min {w['strip_psnr_min']:.1f} dB, mark gone (p > 0.01) on {100 * w['strip_gone_frac']:.0f}%, "
                  f"bit accuracy after strip {w['strip_bit_acc']:.3f}; batched {w['batch_img_per_s']:.1f} img/s "
                  "(embed+decode, 768x512)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from wmark.assets import shared_data

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kodak", default=None, help="Kodak folder (default ../shared/data/kodak)")
    OUTPUT.add_arguments(ap)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--baselines", default="dwtDct,dwtDctSvd,rivaGan", help="comma list, or '' for none")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-wmark", action="store_true", help="baselines only")
    ap.add_argument("--baseline-n", type=int, default=None, help="images for the baselines (default --n)")
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("image_bench", exc)
    kodak = Path(args.kodak) if args.kodak else shared_data("kodak")
    paths = sorted(kodak.glob("kodim*.png"))[: args.n]
    if not paths:
        return fail("image_bench", f"no Kodak images in {kodak}")
    images = [Image.open(p).convert("RGB") for p in paths]
    baselines = [b for b in args.baselines.split(",") if b]
    n_base = len(images[: args.baseline_n or len(images)])
    summary = {}
    with progress((0 if args.skip_wmark else len(images)) + n_base * len(baselines), "image_bench",
                  not args.no_progress, unit="img") as bar:
        if not args.skip_wmark:
            bar.set_postfix_str("wmark")
            summary["wmark"] = summarise(bench_wmark(images, np.random.default_rng(0), args.threads, bar))
        for m in baselines:
            bar.set_postfix_str(m)
            try:
                summary[m] = summarise(bench_baseline(images[: args.baseline_n or len(images)], m,
                                                      np.random.default_rng(0), bar))
            except ImportError as exc:
                bar.write(f"skipping {m}: {exc}")
                bar.update(n_base)
    write_output(out.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
    md = markdown(summary)
    write_output(out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
