"""Measure the image detector's false-positive rate on unmarked crops (never Kodak).

    .venv/bin/python bench/image_fpr.py --n 10000                    # writes runs/image_fpr.json
    .venv/bin/python bench/image_fpr.py --n 10000 --update-results   # the committed bench/results/image_fpr.json

Unmarked random crops of ../shared/data/train at several sizes are tested under the public demo key
and under random keys; marked crops tested under a *wrong* key count as unmarked too. Reports the
empirical FPR at alpha = 1e-2, 1e-3, 1e-4 (with a 95% Clopper-Pearson upper bound) per group.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, progress, write_output  # noqa: E402

OUTPUT = json_output("image_fpr")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="unmarked crops in total (split over sizes)")
    ap.add_argument("--sizes", default="64,128,256,384")
    ap.add_argument("--wrong-key-marked", type=int, default=1000)
    OUTPUT.add_arguments(ap)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-search", action="store_true", help="identity hypothesis only (faster)")
    ap.add_argument("--keys", default="demo,random")
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("image_fpr", exc)

    import torch

    from wmark.image.data import load_images, sample_batch, training_dir
    from wmark.stats import clopper_pearson
    from wmark.image.model import load
    from wmark.keys import Key

    torch.set_grad_enabled(False)
    wm = load()
    images = load_images(training_dir())
    gen = torch.Generator().manual_seed(args.seed)
    sizes = [int(s) for s in args.sizes.split(",")]
    keys = {"demo": Key.demo(), "random": Key.from_bytes(bytes(range(7, 39)))}
    keys = {k: v for k, v in keys.items() if k in args.keys.split(",")}

    def run(x, key):  # search=False: the identity hypothesis only
        return wm.detect(x, key, search=not args.no_search)
    alphas = [1e-2, 1e-3, 1e-4]
    groups: dict[str, list[float]] = {}
    t0 = time.time()
    per = args.n // len(sizes)
    with progress(per * len(sizes) + max(0, args.wrong_key_marked), "image_fpr", not args.no_progress,
                  unit="crop") as bar:
        for size in sizes:
            bar.set_postfix_str(f"unmarked {size}px")
            done = 0
            while done < per:
                b = min(100, per - done)
                x = sample_batch(images, b, size, gen)
                for kname, key in keys.items():
                    ps = [d.p_value for d in run(x, key)]
                    groups.setdefault(f"unmarked/{size}px/{kname}-key", []).extend(ps)
                done += b
                bar.update(b)
            bar.write(f"{size}px done ({time.time() - t0:.0f}s)")
        # marked under one key, tested under another
        bar.set_postfix_str("marked, wrong key")
        other = Key.from_bytes(bytes(range(100, 132)))
        done = 0
        while done < args.wrong_key_marked:
            b = min(50, args.wrong_key_marked - done)
            x = sample_batch(images, b, 256, gen)
            payload = int(torch.randint(0, 2 ** 31, (1,), generator=gen))
            y = wm.embed_tensor(x, other, payload)
            y = torch.round(y * 255) / 255
            ps = [d.p_value for d in run(y, Key.demo())]
            groups.setdefault("marked-other-key/256px/demo-key", []).extend(ps)
            done += b
            bar.update(b)
    rows = {}
    allp = []
    for g, ps in groups.items():
        ps = np.asarray(ps)
        allp.append(ps)
        rows[g] = {"n": int(ps.size), **{f"fpr@{a:g}": float((ps < a).mean()) for a in alphas},
                   "min_p": float(ps.min()), "median_p": float(np.median(ps))}
    allp = np.concatenate(allp)
    total = {"n": int(allp.size)}
    for a in alphas:
        k = int((allp < a).sum())
        total[f"fpr@{a:g}"] = k / allp.size
        total[f"fpr@{a:g}_upper95"] = clopper_pearson(k, allp.size, 0.90)[1]  # one-sided 95%
    total["min_p"] = float(allp.min())
    res = {"total": total, "groups": rows, "seconds": round(time.time() - t0, 1)}
    write_output(out, json.dumps(res, indent=2) + "\n")
    print(json.dumps(total, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
