"""Blind image detection beyond Kodak: the committed detector beside the current one, same images, same run.

    .venv/bin/python bench/image_detect_sets.py                    # writes runs/image_detect_sets.json
    .venv/bin/python bench/image_detect_sets.py --quick            # smoke run (a few images per set)
    .venv/bin/python bench/image_detect_sets.py --old-rev ''       # the current detector only

Sets: ``kodak`` (24, 768x512), ``skimage`` (the photos bundled in scikit-image's wheel: astronaut,
chelsea, coffee, rocket, camera, ...; every one that loads without a download, binary ones left out),
``kodak-crops`` (random crops of Kodak, 192-768 px per side, at random odd offsets), ``train``
(``../shared/data/train``: BSDS500 481x321 and Hays ~1024x768 photos, every ``--train-step``-th;
evaluation here, no tuning), ``small`` (Kodak crops of 64/96/128/192/224 px, 6 each: clean only, with
``Embedded.detectable``). Each image gets a random 48-bit payload (``clean-default``: no payload) and
the demo key, is marked by the current embedder (marks identical to the committed one within 8-bit
rounding) and read blind under each condition: clean, JPEG 75 / 50 (PIL), resize 0.75 / 0.5
(downscaled, not re-upscaled, PIL Lanczos), a crop keeping 75% of each side at random odd offsets.
TPR = detected at ``--alpha`` (and ``payload_ok``: the payload read is the one embedded). Null tests:
every cover unmarked, every clean marked image under a wrong key, and ``--null-crops`` unmarked random
crops (64-512 px) of the training photos; FPR at 1e-2 / 1e-3 and the Kolmogorov-Smirnov statistic of
the null p-values against uniform. The committed detector is ``src/wmark/image/model.py`` at
``--old-rev`` (git), loaded under another module name.
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
import types
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, progress, write_json  # noqa: E402

OUTPUT = json_output("image_detect_sets")
OLD_REV = "d76009d"  # the detector before the hypothesis table
CONDITIONS = ("clean", "clean-default", "jpeg75", "jpeg50", "resize0.75", "resize0.5", "crop-odd")
SMALL_SIDES = (64, 96, 128, 192, 224)
SKIMAGE = ("astronaut", "camera", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel", "brick",
           "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina", "rocket", "text")
ROOT = Path(__file__).resolve().parents[1]


def load_old(rev: str):
    """The ``ImageWatermarker`` of ``src/wmark/image/model.py`` at git ``rev``, with the shipped weights."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/wmark/image/model.py"], check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType(f"wmark_image_model_{rev}")
    mod.__file__ = f"<{rev}:src/wmark/image/model.py>"
    sys.modules[mod.__name__] = mod
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    from wmark.image.model import weights_blob

    return mod.ImageWatermarker.from_bytes(weights_blob())


def _rgb(a: np.ndarray) -> np.ndarray:
    """uint8 [H, W] / [H, W, C] -> [H, W, 3] or [H, W] (alpha dropped)."""
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    return np.ascontiguousarray(a)


def load_sets(args, rng: np.random.Generator) -> dict[str, list[tuple[str, np.ndarray]]]:
    from PIL import Image

    from wmark.assets import shared_data

    data = shared_data()
    kodak = [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in sorted((data / "kodak").glob("*.png"))]
    sets: dict[str, list[tuple[str, np.ndarray]]] = {"kodak": kodak}
    import skimage.data as skd

    sk = []
    for name in SKIMAGE:
        try:
            a = np.asarray(getattr(skd, name)())
        except Exception:  # noqa: BLE001  (not bundled in this wheel)
            continue
        if a.dtype == np.uint8 and min(a.shape[:2]) >= 64:
            sk.append((name, _rgb(a)))
    sets["skimage"] = sk
    crops = []
    for j in range(args.kodak_crops):
        name, img = kodak[int(rng.integers(len(kodak)))]
        h, w = img.shape[:2]
        ch, cw = int(rng.integers(192, min(h, 768) + 1)), int(rng.integers(192, min(w, 768) + 1))
        y0 = int(rng.integers(0, (h - ch) // 2 + 1)) * 2 + 1 if h - ch >= 1 else 0
        x0 = int(rng.integers(0, (w - cw) // 2 + 1)) * 2 + 1 if w - cw >= 1 else 0
        y0, x0 = min(y0, h - ch), min(x0, w - cw)
        crops.append((f"{name}@{y0},{x0}+{ch}x{cw}", img[y0:y0 + ch, x0:x0 + cw]))
    sets["kodak-crops"] = crops
    paths = sorted((data / "train").glob("*.jpg"))[::args.train_step]
    sets["train"] = [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in paths]
    small = []
    for side in SMALL_SIDES:
        for j in range(6):
            name, img = kodak[(4 * j + side) % len(kodak)]
            h, w = img.shape[:2]
            y0, x0 = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
            small.append((f"{name}@{side}", img[y0:y0 + side, x0:x0 + side]))
    sets["small"] = small
    if args.quick:
        sets = {k: v[:3] for k, v in sets.items()}
    return {k: v for k, v in sets.items() if k in args.sets.split(",")}


def transform(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    if cond.startswith("clean"):
        return img
    pil = Image.fromarray(img)
    if cond.startswith("jpeg"):
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(cond[4:]))
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    if cond.startswith("resize"):
        f = float(cond[6:])
        w, h = pil.size
        return np.asarray(pil.resize((max(64, round(w * f)), max(64, round(h * f))), Image.LANCZOS))
    if cond == "crop-odd":
        h, w = img.shape[:2]
        ch, cw = max(64, round(0.75 * h)), max(64, round(0.75 * w))
        y0 = min(h - ch, 2 * int(rng.integers(0, 32)) + 1) if h > ch else 0
        x0 = min(w - cw, 2 * int(rng.integers(0, 32)) + 1) if w > cw else 0
        return img[y0:y0 + ch, x0:x0 + cw]
    raise ValueError(cond)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="kodak,skimage,kodak-crops,train,small")
    ap.add_argument("--kodak-crops", type=int, default=100, help="random Kodak crops (192-768 px, odd offsets)")
    ap.add_argument("--train-step", type=int, default=4, help="every n-th training photo (480 in all)")
    ap.add_argument("--null-crops", type=int, default=600, help="unmarked random training crops, 64-512 px")
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument("--old-rev", default=OLD_REV, help="git revision of the committed detector ('' = none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("image_detect_sets", exc)

    import torch

    from wmark.image.model import load
    from wmark.keys import Key

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    rng = np.random.default_rng(args.seed)
    new = load()
    detectors = {"new": new}
    if args.old_rev:
        detectors["old"] = load_old(args.old_rev)
    key, wrong = Key.demo(), Key.from_passphrase("not the demo key")
    sets = load_sets(args, rng)
    a = args.alpha
    n_cond = {s: (2 if s == "small" else len(CONDITIONS)) for s in sets}
    total = sum(len(v) * (n_cond[s] + 2) for s, v in sets.items()) + args.null_crops
    res: dict = {"alpha": a, "old_rev": args.old_rev or None, "conditions": list(CONDITIONS), "sets": {}}
    nulls: dict[str, dict[str, list[float]]] = {d: {} for d in detectors}
    secs: dict[str, float] = {d: 0.0 for d in detectors}
    calls: dict[str, int] = {d: 0 for d in detectors}

    def run(name: str, img: np.ndarray, k, payload=None):
        d, dt = _timed(lambda: detectors[name].detect(img, k))
        secs[name] += dt
        calls[name] += 1
        return d

    with progress(total, "image_detect_sets", not args.no_progress, unit="img") as bar:
        for sname, items in sets.items():
            bar.set_postfix_str(sname)
            conds = ("clean", "clean-default") if sname == "small" else CONDITIONS
            rows = []
            for name, img in items:
                payload = rng.bytes(6)
                emb = new.embed(img, key, payload)
                emb0 = new.embed(img, key) if "clean-default" in conds else None
                row = {"image": name, "size": list(img.shape[:2]), "detectable": bool(emb.detectable[0]),
                       "reason": emb.reasons[0]}
                for cond in conds:
                    src = emb0.images if cond == "clean-default" else emb.images
                    want = bytes(6) if cond == "clean-default" else payload
                    y = transform(src, cond, np.random.default_rng(zlib.crc32(f"{sname}/{name}/{cond}".encode())))
                    for dn in detectors:
                        d = run(dn, y, key)
                        row[f"{dn}/{cond}"] = {"p": float(d.p_value), "detected": bool(d.p_value < a),
                                               "payload_ok": bool(d.payload == want),
                                               "hypothesis": getattr(d, "hypothesis", None)}
                    bar.update(1)
                for dn in detectors:  # null tests: the cover, and the marked image under a wrong key
                    nulls[dn].setdefault(f"{sname}/cover", []).append(float(run(dn, img, key).p_value))
                    nulls[dn].setdefault(f"{sname}/wrong-key", []).append(float(run(dn, emb.images, wrong).p_value))
                bar.update(2)
                rows.append(row)
            res["sets"][sname] = {"n": len(rows), "summary": _summary(rows, conds, list(detectors)), "images": rows}
            if sname == "small":  # per side: detected right after embedding, and what embed said
                res["sets"][sname]["by_side"] = {
                    str(side): {**{f"{dn}/{c}": int(sum(r[f"{dn}/{c}"]["detected"] for r in rows if r["size"][0] == side))
                                   for dn in detectors for c in conds},
                                "detectable": int(sum(r["detectable"] for r in rows if r["size"][0] == side)),
                                "n": sum(r["size"][0] == side for r in rows)} for side in SMALL_SIDES}
            bar.write(f"{sname}: " + _line(res["sets"][sname]["summary"], conds))
        if args.null_crops:
            from wmark.image.data import load_images, sample_batch, training_dir

            imgs = load_images(training_dir())
            gen = torch.Generator().manual_seed(args.seed + 1)
            sizes = (64, 128, 256, 512)
            for j in range(args.null_crops):
                side = sizes[j % len(sizes)]
                x = sample_batch(imgs, 1, side, gen)
                arr = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                for dn in detectors:
                    nulls[dn].setdefault(f"crops/{side}px", []).append(float(run(dn, arr, key).p_value))
                bar.update(1)
    res["null"] = {dn: _null_summary(g) for dn, g in nulls.items()}
    res["ms_per_detect"] = {dn: 1e3 * secs[dn] / max(1, calls[dn]) for dn in detectors}
    res["threads"] = args.threads
    from wmark.image.model import hypothesis_table

    res["hypotheses"] = hypothesis_table()
    print(f"wrote {write_json('image_detect_sets', res, out)}")
    for sname, s in res["sets"].items():
        print(sname, _line(s["summary"], ("clean", "clean-default") if sname == "small" else CONDITIONS))
        if "by_side" in s:
            print("  by side:", json.dumps(s["by_side"]))
    for dn, s in res["null"].items():
        print("null", dn, {k: s["all"][k] for k in ("n", "fpr@0.01", "fpr@0.001", "ks", "min_p")})
    return 0


def _summary(rows: list[dict], conds, names: list[str]) -> dict:
    out: dict = {"detectable": float(np.mean([r["detectable"] for r in rows])) if rows else None}
    big = [r for r in rows if min(r["size"]) >= 224]
    for dn in names:
        for c in conds:
            cell = [r[f"{dn}/{c}"] for r in rows]
            cell_big = [r[f"{dn}/{c}"] for r in big]
            out[f"{dn}/{c}"] = {"tpr": float(np.mean([x["detected"] for x in cell])) if cell else None,
                                "payload_ok": float(np.mean([x["payload_ok"] for x in cell])) if cell else None,
                                "missed_ge224": [r["image"] for r, x in zip(big, cell_big) if not x["detected"]]}
            if dn == "new":
                wins: dict[str, int] = {}
                for x in cell:
                    if x["detected"]:
                        wins[x["hypothesis"]] = wins.get(x["hypothesis"], 0) + 1
                out[f"{dn}/{c}"]["won_by"] = wins
    if rows and "detectable" in rows[0]:  # does the embed-time flag agree with the clean blind read?
        out["detectable_matches_clean"] = float(np.mean([r["detectable"] == r["new/clean"]["detected"] for r in rows]))
    return out


def _line(summary: dict, conds) -> str:
    parts = []
    for c in conds:
        cell = [f"{dn} {summary[f'{dn}/{c}']['tpr']:.3f}" for dn in ("old", "new") if f"{dn}/{c}" in summary]
        parts.append(f"{c}: " + " / ".join(cell))
    return "; ".join(parts)


def _null_summary(groups: dict[str, list[float]]) -> dict:
    from scipy.stats import kstest

    from wmark.stats import clopper_pearson

    def one(ps: list[float]) -> dict:
        p = np.asarray(ps)
        d = {"n": int(p.size), "ks": float(kstest(p, "uniform").statistic), "min_p": float(p.min()),
             "median_p": float(np.median(p)), "frac_p1": float((p >= 1.0).mean())}
        for al in (1e-2, 1e-3):
            k = int((p < al).sum())
            d[f"fpr@{al:g}"] = k / p.size
            d[f"fpr@{al:g}_upper95"] = clopper_pearson(k, p.size, 0.90)[1]
        return d

    out = {g: one(ps) for g, ps in groups.items()}
    out["all"] = one([p for ps in groups.values() for p in ps])
    return out


if __name__ == "__main__":
    raise SystemExit(main())
