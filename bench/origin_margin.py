"""How the blind read's origin margin was chosen (``wmark.image.model.ORIGIN_MARGIN``), on training photos.

    .venv/bin/python bench/origin_margin.py                    # writes runs/origin_margin.json
    .venv/bin/python bench/origin_margin.py --update-results   # the committed bench/results/origin_margin.json

Training photos only (every 7th of ``../shared/data/train``, never Kodak) are marked with the demo key
and a random payload, then attacked: the degradation chain (blur -> noise -> JPEG) alone, with the tile
origin where the image has it, and after a random or centre crop, with the origin lost. For each image
the raw and low-passed reads are summed as in detection (``combine_views``) and the 128 bits read at the
shift each rule picks are scored against the carried codeword: ``energy`` (largest logit energy, the
rule before), ``logcosh`` (best ``alignment_scores``, no origin), ``margin=m`` (``report_logits``: the
origin unless another shift beats it by over m robust SDs) and ``oracle`` (the shift that agrees best
with the codeword; an upper bound no blind read has).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, progress, write_json  # noqa: E402

ATTACKS = (("degradation", 0.45), ("degradation", 0.5), ("crop_random+degradation", 0.375),
           ("crop_random+degradation", 0.45), ("crop_center+degradation", 0.4))
MARGINS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
OUTPUT = json_output("origin_margin")


def run(data: Path, n: int, seed: int = 0, show_progress: bool = False) -> dict:
    """{attack@strength: {rule: mean bit accuracy}} over the first ``n`` of every 7th training photo
    (``show_progress``: a bar on stderr)."""
    from wmark.image.model import load
    from wmark.keys import Key

    wm, key = load(), Key.demo()
    paths = sorted(data.glob("*.jpg"))[::7][:n]
    if not paths:
        raise SystemExit(f"no training photos (*.jpg) in {data}")
    rules = ["energy", "logcosh"] + [f"margin={m:g}" for m in MARGINS] + ["oracle"]
    out: dict[str, dict[str, float]] = {}
    with progress(len(ATTACKS) * len(paths), "origin_margin", show_progress, unit="img") as bar:
        for attack, strength in ATTACKS:
            bar.set_postfix_str(f"{attack}@{strength:g}")
            out[f"{attack}@{strength:g}"] = _score(wm, key, paths, attack, strength, rules, seed, bar)
            bar.write(f"{attack}@{strength:g}: "
                      + "  ".join(f"{r} {v:.3f}" for r, v in out[f"{attack}@{strength:g}"].items()))
    return {"n_images": len(paths), "data": str(data), "results": out}


def _score(wm, key, paths, attack: str, strength: float, rules, seed: int, bar) -> dict[str, float]:
    """{rule: mean bit accuracy} of one attack at one strength over ``paths``."""
    import numpy as np
    import torch
    from PIL import Image

    from wmark.attacks import get_attack
    from wmark.image.model import decode_view, combine_views, origin_shift, report_logits
    from wmark.image.nets import best_shift_logits, luma

    acc: dict[str, list[float]] = {r: [] for r in rules}
    for i, p in enumerate(paths):
        g = torch.Generator().manual_seed(seed * 100003 + i)
        x = torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        payload = bytes(torch.randint(0, 256, (6,), generator=g).tolist())
        emb = wm.embed(x, key, payload)
        y = (emb.images * 255).round() / 255
        for name in attack.split("+"):
            y = get_attack(name)(y, strength, g)
        v = decode_view(luma(y))
        with torch.no_grad():  # the raw and low-passed reads, summed as in detection
            reads = [wm.read_all(wm.decoder.features(v))] + wm.low_passed_reads(v)
        sh = combine_views([s for _, s in reads])[1]  # [1, n, S]
        bits = torch.from_numpy(np.asarray(emb.bits).astype(bool))
        origin = origin_shift(y.shape[-2:], v.shape[-2:], wm.config.factor, wm.config.tile)
        signs = bits.float() * 2 - 1
        read = {"energy": best_shift_logits(sh)[0], "logcosh": report_logits(sh, None)[0],
                "oracle": sh[0, :, int((sh[0] * signs[:, None]).sum(0).argmax())]}
        read.update({f"margin={m:g}": report_logits(sh, origin, margin=m)[0] for m in MARGINS})
        for r, lg in read.items():
            acc[r].append(float(((lg > 0) == bits).float().mean()))
        bar.update(1)
    return {r: float(np.mean(a)) for r, a in acc.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="training photos (default: the shared data's train/; never Kodak)")
    ap.add_argument("--n", type=int, default=48, help="photos (every 7th of the folder)")
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.n < 1:
        raise SystemExit(f"--n must be >= 1, got {args.n}")
    if "kodak" in str(args.data).lower():
        raise SystemExit("--data must be training photos: Kodak is for evaluation only")
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("origin_margin", exc)
    from wmark.image.data import training_dir

    res = run(Path(args.data) if args.data else training_dir(), args.n, show_progress=not args.no_progress)
    print(f"wrote {write_json('origin_margin', res, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
