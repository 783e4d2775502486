"""KGW detection throughput on CPU (tokens/s), wmark beside Hugging Face's ``WatermarkDetector``.

    .venv/bin/python bench/text_detect.py [--quick] [--out FILE]

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
from _common import markdown_table, time_call, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from wmark import Key
    from wmark.text import make_scheme

    V = 50257
    B, T = (64, 512) if args.quick else (256, 1024)
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))
    rows, res = [], {}
    for name in ("kgw-lefthash", "kgw-selfhash", "unigram", "gumbel", "tournament"):
        s = make_scheme(name, Key.demo(), V)
        for dedup in (True, False):
            t = time_call(lambda: s.detect_batch(ids, dedup=dedup), min_time=1.0)["median_ms"]
            tps = B * T / (t / 1e3)
            res[f"wmark {name} dedup={dedup}"] = tps
            rows.append([f"wmark {name}", dedup, f"{B}x{T}", t, tps / 1e6])
    try:
        from transformers import GPT2Config, WatermarkDetector, WatermarkingConfig
    except ImportError:
        print("transformers not installed: HF baseline skipped", file=sys.stderr)
    else:
        hb, ht = (4, 256) if args.quick else (8, 512)
        hids = ids[:hb, :ht]
        for seeding in ("lefthash", "selfhash"):
            det = WatermarkDetector(model_config=GPT2Config(vocab_size=V), device="cpu",
                                    watermarking_config=WatermarkingConfig(seeding_scheme=seeding))
            t = time_call(lambda: det(hids, return_dict=True), min_time=1.0, min_reps=2, max_reps=10)["median_ms"]
            tps = hb * ht / (t / 1e3)
            res[f"HF {seeding}"] = tps
            rows.append([f"HF WatermarkDetector {seeding}", False, f"{hb}x{ht}", t, tps / 1e6])
    table = markdown_table(["detector", "dedup", "batch", "ms", "M tokens/s"], rows)
    path = write_json("text_detect", {"tokens_per_s": res, "table_md": table}, args.out)
    print(table)
    print("wrote", path)


if __name__ == "__main__":
    main()
