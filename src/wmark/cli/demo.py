"""``wmark demo``: the whole story on shipped data — mark, detect, strip, scrub a crawl, and the loop.

Sections run in order (a registry); each prints its numbers. A section whose part is not built in
this checkout says so and is skipped.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the mark -> detect -> strip -> loop showcase on shipped data")
    p.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    p.add_argument("--quick", action="store_true", help="smaller sizes (for tests)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _rule(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))


def text_section(quick: bool) -> None:
    """Marked generation with the built-in LM, its detection, and human text left alone."""
    import numpy as np
    import torch

    import wmark.lm
    from wmark.keys import Key
    from wmark.text import make_scheme

    key = Key.demo()
    print(f"key: the PUBLIC demo key {key!r} (use `wmark keygen` for a real one)")
    lm = wmark.lm.load()
    n_new = 60 if quick else 150
    prompts = ["ROMEO:", "It is a truth universally acknowledged", "I beheld the wretch"]
    scheme = make_scheme("kgw-selfhash", key, lm.vocab_size, gamma=0.25, delta=2.0)
    print(f"scheme: {scheme!r}")
    gen = torch.Generator().manual_seed(0)
    for prompt in prompts[: 2 if quick else 3]:
        ids = torch.tensor([lm.encode(prompt)])
        marked = wmark.lm.generate(lm, ids, n_new, logits_processor=scheme, generator=gen)
        plain = wmark.lm.generate(lm, ids, n_new, generator=gen)
        rm = scheme.detect(marked[0], ignore_prefix=ids.shape[1])
        rp = scheme.detect(plain[0], ignore_prefix=ids.shape[1])
        snippet = lm.decode(marked[0, ids.shape[1]:ids.shape[1] + 30].tolist()).replace("\n", " ")
        print(f"\nprompt {prompt!r}\n  marked : {prompt}{snippet}...")
        print(f"  marked   -> detected={rm.detected}  p={rm.p_value:.2e}  z={rm.z_score:5.2f}  "
              f"green {rm.mean_score:.2f} of {rm.num_scored}")
        print(f"  unmarked -> detected={rp.detected}  p={rp.p_value:.2e}  z={rp.z_score:5.2f}  "
              f"green {rp.mean_score:.2f} of {rp.num_scored}")
    # human text: the three public-domain books
    from wmark.lm import load_corpus

    corpus = load_corpus()
    rows = []
    for name, text in corpus.val.items():
        toks = torch.tensor(lm.encode(text))
        n = min(len(toks) // 200, 20 if quick else 100)
        batch = toks[: n * 200].reshape(n, 200)
        r = scheme.detect_batch(batch)
        rows.append((name, n, int(r.detected.sum()), float(np.median(r.p_value))))
    print("\nhuman text (held-out passages of 200 tokens, alpha=1e-3):")
    for name, n, k, med in rows:
        print(f"  {name:<22} {n:4d} passages  detected {k}  median p {med:.2f}")
    # every scheme, a few samples each
    print("\nevery scheme, 4 marked samples of", n_new, "tokens (median p-value):")
    prompt_ids = torch.tensor([lm.encode("The")] * 4)
    for name in ("kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram", "gumbel", "tournament"):
        s = make_scheme(name, key, lm.vocab_size)
        out = wmark.lm.generate(lm, prompt_ids, n_new, logits_processor=s, generator=gen)
        r = s.detect_batch(out, ignore_prefix=prompt_ids.shape[1])
        print(f"  {name:<13} median p {float(np.median(r.p_value)):.1e}  detected {int(r.detected.sum())}/4")


def image_section(quick: bool) -> None:
    """Mark a few Kodak images, attack them, detect, and strip with the key."""
    import numpy as np
    import torch
    from PIL import Image

    import wmark.image
    from wmark.assets import shared_data
    from wmark.attacks import get_attack
    from wmark.image.quality import psnr
    from wmark.keys import Key

    kodak = shared_data("kodak")
    if not kodak.is_dir():
        print(f"(Kodak images not found at {kodak}: skipped)")
        return
    key, wrong = Key.demo(), Key.from_passphrase("somebody else's key")
    wm = wmark.image.load()
    payload = "c0ffee000001"
    names = ["kodim01.png", "kodim03.png", "kodim23.png"][: 2 if quick else 3]
    gen = torch.Generator().manual_seed(0)
    attacks = {"JPEG 50": ("jpeg", 0.5), "resize 0.5": ("resize", 2 / 3), "crop 50%": ("crop_center", 2 / 3)}
    print(f"payload {payload}, demo key {key!r}; p-values: 'marked under this key' (alpha 1e-3)")
    for name in names:
        x = torch.from_numpy(np.asarray(Image.open(kodak / name).convert("RGB"), dtype=np.float32) / 255.0)
        x = x.permute(2, 0, 1)[None]
        t0 = time.perf_counter()
        y = wm.embed(x, key, payload=payload).images
        t_embed = time.perf_counter() - t0
        d = wm.detect(y, key)[0]
        print(f"\n{name} {x.shape[-1]}x{x.shape[-2]}: embed {t_embed * 1e3:.0f} ms, PSNR {psnr(x, y, peak=1.0):.1f} dB")
        print(f"  clean        p={d.p_value:.1e} payload={d.payload_hex} detected={d.detected}")
        print(f"  wrong key    p={wm.detect(y, wrong)[0].p_value:.2f}   unmarked p={wm.detect(x, key)[0].p_value:.2f}")
        for label, (attack, strength) in attacks.items():
            ya = get_attack(attack)(y, strength, gen)
            da = wm.detect(ya, key)[0]
            print(f"  {label:<12} p={da.p_value:.1e} payload={da.payload_hex} detected={da.detected}")
        z = wm.strip(y, key).images
        ds = wm.detect(z, key)[0]
        print(f"  strip        PSNR(stripped, original) {psnr(x, z, peak=1.0):.1f} dB; after strip p={ds.p_value:.2f} "
              f"detected={ds.detected}")


def scrub_section(quick: bool, progress: bool = True) -> None:
    """Scrub a mixed folder before retraining: marked, marked then JPEG'd, unmarked and one corrupt
    file; strip what is marked, copy the rest byte for byte, and print the manifest."""
    import io
    from pathlib import Path

    from PIL import Image

    import wmark.image
    from wmark.assets import shared_data
    from wmark.image.io import png_bytes
    from wmark.keys import Key
    from wmark.scrub import read_manifest, scrub

    kodak = shared_data("kodak")
    if not kodak.is_dir():
        print(f"(Kodak images not found at {kodak}: skipped)")
        return
    key = Key.demo()
    wm = wmark.image.load()
    run = Path("runs") / f"scrub-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    src = run / "crawl"
    src.mkdir(parents=True)
    photos = [Image.open(kodak / f"kodim{i:02d}.png").convert("RGB").crop((0, 0, 384, 256))
              for i in (2, 5, 7, 13, 19)]
    marked = [wm.embed(im, key).images for im in photos[:3]]
    (src / "marked_a.png").write_bytes(png_bytes(marked[0]))
    (src / "marked_b.png").write_bytes(png_bytes(marked[1]))
    buf = io.BytesIO()
    marked[2].save(buf, format="JPEG", quality=85)
    (src / "marked_then_jpeg85.jpg").write_bytes(buf.getvalue())
    (src / "human_a.png").write_bytes(png_bytes(photos[3]))
    buf = io.BytesIO()
    photos[4].save(buf, format="JPEG", quality=90)
    (src / "human_b.jpg").write_bytes(buf.getvalue())
    (src / "broken.png").write_bytes(png_bytes(photos[4])[:900])  # cut short on its way back
    print(f"a crawl of 6 files in {src}: 3 marked (one then JPEG 85), 2 human photos, 1 truncated PNG")
    res = scrub(src, run / "clean", key, action="strip", manifest_format="jsonl", progress=progress)
    print(f"\nwmark scrub {src} -o {run / 'clean'} --action strip  ({res.elapsed_s:.1f} s)")
    print(f"  {'sample':<24}{'p-value':>10}  {'action':<9}{'p after':>9}  note")
    for row in sorted(read_manifest(res.manifest), key=lambda r: r["id"]):
        p = "-" if row["p_value"] is None else f"{row['p_value']:.1e}"
        pa = "-" if row["p_after"] is None else f"{row['p_after']:.2f}"
        print(f"  {Path(row['id']).name:<24}{p:>10}  {row['action']:<9}{pa:>9}  {row['error'] or ''}")
    c = res.counts
    print(f"  {c.get('samples', 0)} samples: {c.get('stripped', 0)} stripped, {c.get('kept', 0)} kept byte for byte, "
          f"{c.get('error', 0)} error; expected false detections at alpha {res.level:g}: {res.expected_false:.3f}")
    print(f"  manifest {res.manifest}, summary {res.summary}, report {res.report}")


def _loop_run(preset: str, quick: bool, quick_changes: dict, progress: bool = True) -> tuple:
    """Run ``preset`` into a fresh run folder (smaller with ``quick``); returns (result, report path,
    paired policy effects vs `none`)."""
    from pathlib import Path

    from wmark.loop import engine, presets, report

    cfg = presets.get_preset(preset)
    if quick:
        cfg = type(cfg).from_dict({**cfg.to_dict(), "generations": 2, "seeds": 1, **quick_changes})
    out = Path("runs") / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"preset {preset}: {cfg.generations} generations, arms "
          f"{', '.join(f'{a.name}({a.policy})' for a in cfg.arms)}; run folder {out}")
    t0 = time.time()
    result = engine.run_loop(cfg, out, progress=progress, keep_checkpoint=False)  # a finished showcase is not extended
    path = report.write_report(result)
    print(f"({time.time() - t0:.0f} s)")
    effects = report.policy_effects(result)
    print("\npaired effect of each policy vs `none` at the last generation (mean +- se over seeds):")
    for e in effects:
        print(f"  {e.metric:<28} {e.arm:<6} {e.mean:+.4g} +- {e.se:.2g}")
    return result, path, effects


def _answer(effects: list, metrics: tuple[str, ...]) -> None:
    by = {(e.metric, e.arm): e for e in effects}
    print("\nanswer (last generation, vs never-marked `none`):")
    for arm, what in (("keep", "kept the mark"), ("strip", "stripped before retraining"),
                      ("drop", "dropped detected samples")):
        parts = [f"{m} {by[(m, arm)].mean:+.3g} (se {by[(m, arm)].se:.2g})" for m in metrics if (m, arm) in by]
        if parts:
            print(f"  {what:<28}: " + ", ".join(parts))


def loop_section(quick: bool, progress: bool = True) -> None:
    """The self-consuming loop with none / keep / strip / drop arms, and its answer: text, then images."""
    import numpy as np

    _, path, effects = _loop_run("demo-text", quick, {}, progress)
    _answer(effects, ("green_frac", "green_z", "inherited", "radio_log10p", "distinct_1"))
    print(f"\nreport with plots: {path}")

    from wmark.assets import shared_data

    mnist = shared_data("mnist")
    if not mnist.is_dir():
        print(f"\n(MNIST not found at {mnist}: image loop skipped)")
        return
    print()
    result, path, effects = _loop_run("demo-image", quick, {"n_real": 64, "model": {
        "ch": 16, "batch_size": 32, "steps_init": 100, "steps": 20}, "eval": {"n_eval": 128, "n_mark": 64}}, progress)
    t = int(result.generations()[-1])
    names = ("inherited", "bit_acc", "log10p", "train_marked", "hf_excess", "spec_dist", "fd", "recall")
    print(f"\nimage loop at t = {t} (mean over seeds):\n"
          "  inherited = share of the model's own, unmarked samples the detector flags (alpha 1e-3);\n"
          "  bit_acc = their decoded bits vs the key's codeword (0.5 = chance); train_marked = share of\n"
          "  the training set flagged; hf_excess = log10 power in the mark's band (>= 0.3 cycles/px),\n"
          "  model vs real digits")
    print("  " + f"{'arm':<6}" + "".join(f"{m:>13}" for m in names))
    for arm in result.arms:
        vals = [float(np.nanmean(result.series(m, arm)[-1])) for m in names]
        print("  " + f"{arm:<6}" + "".join(f"{v:>13.3g}" for v in vals))
    _answer(effects, ("inherited", "bit_acc", "log10p", "hf_excess", "spec_dist", "fd"))
    print(f"\nreport with plots: {path}")


#: the demo's sections, in order: name -> section(quick, progress)
SECTIONS: dict[str, Callable[[bool, bool], None]] = {
    "text": lambda quick, progress: text_section(quick),
    "image": lambda quick, progress: image_section(quick),
    "scrub": scrub_section,
    "loop": loop_section,
}


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    for name, fn in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        _rule(f"{name}")
        fn(args.quick, not args.no_progress)
    print(f"\ndemo finished in {time.time() - t0:.0f} s")
    return 0
