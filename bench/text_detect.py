"""KGW detection throughput on CPU (tokens/s), wmark beside Hugging Face's ``WatermarkDetector``.

    .venv/bin/python bench/text_detect.py [--quick] [--out FILE | --update-results] [--overwrite] [--no-progress]

Writes runs/text_detect.json by default (``--update-results``: the committed bench/results/text_detect.json).

Random token ids (V=50257) in a batch of sequences; wmark scores every position with the exact
binomial test (with and without n-gram dedup); HF with its default settings (lefthash,
``ignore_repeated_ngrams=False``) on a smaller batch (it loops in Python per token).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, markdown_table, progress, time_call, write_json  # noqa: E402

SCHEMES = ("kgw-lefthash", "kgw-selfhash", "unigram", "gumbel", "tournament")
HF_SEEDINGS = ("lefthash", "selfhash")
OUTPUT = json_output("text_detect")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("text_detect", exc)

    from wmark import Key
    from wmark.text import make_scheme

    try:
        from transformers import GPT2Config, WatermarkDetector, WatermarkingConfig
    except ImportError:
        print("transformers not installed: HF baseline skipped", file=sys.stderr)
        hf = False
    else:
        hf = True
    V = 50257
    B, T = (64, 512) if args.quick else (256, 1024)
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))
    rows, res = [], {}
    with progress(2 * len(SCHEMES) + (len(HF_SEEDINGS) if hf else 0), "text_detect", not args.no_progress,
                  unit="cell") as bar:
        for name in SCHEMES:
            s = make_scheme(name, Key.demo(), V)
            for dedup in (True, False):
                t = time_call(lambda: s.detect_batch(ids, dedup=dedup), min_time=1.0)["median_ms"]
                tps = B * T / (t / 1e3)
                res[f"wmark {name} dedup={dedup}"] = tps
                rows.append([f"wmark {name}", dedup, f"{B}x{T}", t, tps / 1e6])
                bar.update(1)
        if hf:
            hb, ht = (4, 256) if args.quick else (8, 512)
            hids = ids[:hb, :ht]
            for seeding in HF_SEEDINGS:
                det = WatermarkDetector(model_config=GPT2Config(vocab_size=V), device="cpu",
                                        watermarking_config=WatermarkingConfig(seeding_scheme=seeding))
                t = time_call(lambda: det(hids, return_dict=True), min_time=1.0, min_reps=2, max_reps=10)["median_ms"]
                tps = hb * ht / (t / 1e3)
                res[f"HF {seeding}"] = tps
                rows.append([f"HF WatermarkDetector {seeding}", False, f"{hb}x{ht}", t, tps / 1e6])
                bar.update(1)
    table = markdown_table(["detector", "dedup", "batch", "ms", "M tokens/s"], rows)
    path = write_json("text_detect", {"tokens_per_s": res, "table_md": table}, out)
    print(table)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
