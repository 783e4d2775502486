"""What embedding and detection cost: embed time and peak memory against image size, batched detection
against the per-image loop; the committed code (--old-rev) beside the current one in the same run.

    .venv/bin/python bench/image_detect_cost.py                    # writes runs/image_detect_cost.json
    .venv/bin/python bench/image_detect_cost.py --quick            # smoke run (1 MP, 8 images)

``embed``: one child process per size and implementation (``--sizes`` in megapixels), each marking one
photo (Kodak, resized to the size) with ``embed`` (verified: the output read back) then reading it
back with ``detect``: wall seconds of each and the child's peak resident memory (``resource``
ru_maxrss), beside a child that only loads the model (the baseline). ``old`` is the whole package at
``--embed-rev`` (its ``src/`` extracted with ``git archive`` into a temporary folder, first on the
child's path; its pixel limit lifted to the largest size), ``new`` the working tree.

``detect``: ``--n`` crops of 512 x 512 px from Kodak, half marked (random payloads), half not:
images per second of the committed detector image by image, of today's image by image, of today's
given the whole list (grouped by size, ``BATCH_PIXELS`` per pass: one image per pass on CPU) and
with passes forced to 8 images. With ``--threads`` torch threads. ``per_image_ms``: the same crops
image by image, unmarked and marked apart, against one decoder pass on their views (the target:
unmarked <= 1.25x one pass). Where CUDA is
available, a GPU section: embed and detect images/s at 512 px, batch 64.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, progress, write_json  # noqa: E402
from image_detect_sets import OLD_REV, ROOT, load_old  # noqa: E402

OUTPUT = json_output("image_detect_cost")
EMBED_REV = "d4df9df"  # embedding on whole-image float copies, before the row bands


def _photo(mp: float) -> np.ndarray:
    from PIL import Image

    from wmark.assets import shared_data

    img = Image.open(sorted((shared_data() / "kodak").glob("*.png"))[0]).convert("RGB")
    s = (mp * 1e6 / (img.width * img.height)) ** 0.5
    return np.asarray(img.resize((round(img.width * s), round(img.height * s)), Image.BICUBIC))


def child(impl: str, mp: float, threads: int) -> dict:
    """One measurement in this process: embed + detect one ``mp`` megapixel photo (``impl`` 'none':
    load only). The package imported is whatever comes first on the path (see :func:`run_embed`)."""
    import torch

    torch.set_num_threads(threads)
    import wmark
    from wmark.image import model as M
    from wmark.keys import Key

    wm, key = M.load(), Key.demo()
    out: dict = {"impl": impl, "mp": mp, "package": str(Path(wmark.__file__).parent)}
    if impl != "none":
        img = _photo(mp)
        out["shape"] = list(img.shape)
        wm.detect(wm.embed(img[:256, :256], key, verify=False).images, key)  # imports and caches, not timed
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        emb = wm.embed(img, key, "0102030405ff")
        out["embed_s"] = time.perf_counter() - t0
        out["detectable"] = bool(emb.detectable[0])
        t0 = time.perf_counter()
        d = wm.detect(emb.images, key)
        out["detect_s"] = time.perf_counter() - t0
        out["detected"] = bool(d.detected and d.payload_hex == "0102030405ff")
        out["rss_before_mb"] = rss0
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_embed(args, bar) -> list[dict]:
    import os
    import tempfile

    rows = []
    impls = ("old", "new") if args.embed_rev else ("new",)
    jobs = [("none", 0.0)] + [(impl, mp) for mp in args.sizes for impl in impls]
    with tempfile.TemporaryDirectory(prefix="wmark-old-") as tmp:
        if args.embed_rev:
            tar = subprocess.run(["git", "-C", str(ROOT), "archive", args.embed_rev, "src"], check=True,
                                 capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
        for impl, mp in jobs:
            bar.set_postfix_str(f"embed {impl} {mp:g} MP")
            env = dict(os.environ)
            if impl == "old":  # its default limit (64 MP) lifted; the working tree runs under its own
                env["WMARK_MAX_PIXELS"] = str(int(max(args.sizes) * 1.01e6))
                env["PYTHONPATH"] = os.pathsep.join([str(Path(tmp) / "src")] + env.get("PYTHONPATH", "").split(os.pathsep))
            cmd = [sys.executable, __file__, "--child", impl, "--child-mp", str(mp), "--threads", str(args.threads)]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout, env=env)
                row = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else \
                    {"impl": impl, "mp": mp, "error": r.stderr.strip().splitlines()[-1:] or [f"exit {r.returncode}"]}
            except subprocess.TimeoutExpired:
                row = {"impl": impl, "mp": mp, "error": f"timeout after {args.child_timeout} s"}
            row["rev"] = args.embed_rev if impl == "old" else "working tree"
            rows.append(row)
            bar.write(json.dumps(row))
            bar.update(1)
    return rows


def run_detect(args, bar) -> dict:
    import torch

    from wmark.assets import shared_data
    from wmark.image.model import load
    from PIL import Image

    torch.set_num_threads(args.threads)
    wm = load()
    from wmark.keys import Key

    key = Key.demo()
    rng = np.random.default_rng(0)
    kodak = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((shared_data() / "kodak").glob("*.png"))]
    imgs = []
    for j in range(args.n):
        a = kodak[j % len(kodak)]
        y0, x0 = int(rng.integers(0, a.shape[0] - 512 + 1)), int(rng.integers(0, a.shape[1] - 512 + 1))
        crop = np.ascontiguousarray(a[y0:y0 + 512, x0:x0 + 512])
        imgs.append(wm.embed(crop, key, rng.bytes(6), verify=False).images if j % 2 == 0 else crop)
    out: dict = {"n": args.n, "size": 512, "threads": args.threads, "marked": (args.n + 1) // 2}
    from wmark.image import model as M

    def forced(batch: int):  # one pass per `batch` images, whatever the device's default
        saved = dict(M.BATCH_PIXELS)
        M.BATCH_PIXELS.update({wm.device.type: batch * 512 * 512})
        try:
            return wm.detect(imgs, key)
        finally:
            M.BATCH_PIXELS.clear(), M.BATCH_PIXELS.update(saved)

    detectors = [("new-batched", lambda: wm.detect(imgs, key)), ("new-batched-8", lambda: forced(8)),
                 ("new-loop", lambda: [wm.detect(x, key) for x in imgs])]
    if args.old_rev:
        old = load_old(args.old_rev)
        detectors.insert(0, ("old-loop", lambda: [old.detect(x, key) for x in imgs]))
    wm.detect(imgs[:2], key)  # warm up
    for name, fn in detectors:
        bar.set_postfix_str(f"detect {name}")
        t0 = time.perf_counter()
        dets = fn()
        dt = time.perf_counter() - t0
        out[name] = {"seconds": dt, "images_per_s": args.n / dt,
                     "detected_marked": float(np.mean([d.detected for d in dets[0::2]])),
                     "detected_unmarked": float(np.mean([d.detected for d in dets[1::2]]))}
        bar.write(f"{name}: {args.n / dt:.2f} images/s")
        bar.update(1)
    bar.set_postfix_str("unmarked cost")
    out["per_image_ms"] = per_image_cost(wm, key, imgs, args.repeats)
    bar.update(1)
    base = out["old-loop"]["images_per_s"] if "old-loop" in out else out["new-loop"]["images_per_s"]
    out["speedup_batched_vs_old_loop"] = out["new-batched"]["images_per_s"] / base
    return out


def per_image_cost(wm, key, imgs: list, repeats: int) -> dict:
    """Milliseconds per image, image by image (best of ``repeats``): ``detect`` on the unmarked
    and on the marked crops (even indices marked), and one decoder pass (prefilter, fold, logits at
    every shift) on the same views; ``unmarked_over_pass`` is the target's ratio (<= 1.25)."""
    import torch

    from wmark.image import io as imio
    from wmark.image.model import decode_view, luma

    views = [luma(decode_view(imio.to_internal(x)[0][0])) for x in imgs]

    def best(fn, items) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for it in items:
                fn(it)
            times.append((time.perf_counter() - t0) / len(items) * 1e3)
        return min(times)

    with torch.no_grad():
        one_pass = best(lambda v: wm.shift_logits(wm.decoder.features(v)), views)
    out = {"decoder_pass": one_pass, "unmarked": best(lambda x: wm.detect(x, key), imgs[1::2]),
           "marked": best(lambda x: wm.detect(x, key), imgs[0::2])}
    out["unmarked_over_pass"] = out["unmarked"] / one_pass
    out["marked_over_pass"] = out["marked"] / one_pass
    return out


def run_gpu(bar) -> dict | None:
    import torch

    if not torch.cuda.is_available():
        return None
    from wmark.image.model import ImageWatermarker, weights_blob
    from wmark.keys import Key

    wm = ImageWatermarker.from_bytes(weights_blob()).to("cuda")
    key = Key.demo()
    x = torch.rand(64, 3, 512, 512, device="cuda")
    wm.embed_tensor(x[:2], key)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    y = wm.embed_tensor(x, key)
    torch.cuda.synchronize()
    te = time.perf_counter() - t0
    wm.detect(y[:2], key)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    dets = wm.detect(y, key)
    torch.cuda.synchronize()
    td = time.perf_counter() - t0
    bar.update(1)
    return {"device": torch.cuda.get_device_name(0), "batch": 64, "size": 512, "embed_images_per_s": 64 / te,
            "detect_images_per_s": 64 / td, "detected": float(np.mean([d.detected for d in dets]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,4,16,100", help="embed sizes in megapixels ('' = no embed section)")
    ap.add_argument("--embed-rev", default=EMBED_REV, help="git revision of the embedding baseline ('' = none)")
    ap.add_argument("--n", type=int, default=32, help="512 px crops for the detection timing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the per-image cost (best kept)")
    ap.add_argument("--old-rev", default=OLD_REV, help="git revision of the committed code ('' = none)")
    ap.add_argument("--child-timeout", type=float, default=1800)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-mp", type=float, default=0.0, help=argparse.SUPPRESS)
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.child_mp, args.threads)))
        return 0
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("image_detect_cost", exc)
    if args.quick:
        args.sizes, args.n = "1", 8
    args.sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    n_embed = (1 + len(args.sizes) * (2 if args.embed_rev else 1)) if args.sizes else 0
    with progress(n_embed + 5 + 1, "image_detect_cost", not args.no_progress, unit="step") as bar:
        res = {"embed": run_embed(args, bar) if args.sizes else [], "detect": run_detect(args, bar), "gpu": run_gpu(bar),
               "old_rev": args.old_rev or None, "embed_rev": args.embed_rev or None}
    print(f"wrote {write_json('image_detect_cost', res, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
