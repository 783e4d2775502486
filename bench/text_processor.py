"""Per-step cost of the text watermark processors on CPU, beside Hugging Face's
``WatermarkLogitsProcessor`` (lefthash, selfhash), plain sampling and the one-pass floor.

    .venv/bin/python bench/text_processor.py [--quick] [--vocab V ...] [--batch B ...]
        [--out FILE | --update-results] [--overwrite] [--no-hf] [--no-progress]

Writes runs/text_processor.json by default (``--update-results``: the committed
bench/results/text_processor.json).

Each cell is the median wall time (ms) of one call on random logits ``[B, V]`` with a 64-token
context. "plain sampling" is softmax + multinomial; the "floor" adds a precomputed ``[B, V]`` mask to
the logits (no mark can cost less). torch.compile warm-up is excluded and reported separately.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, markdown_table, progress, time_call, write_json  # noqa: E402

SCHEMES = ["kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram", "gumbel", "tournament"]
OUTPUT = json_output("text_processor")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="B=32 only, V=50257 only, no HF selfhash")
    OUTPUT.add_arguments(ap)
    ap.add_argument("--vocab", type=int, nargs="+", help="vocabulary sizes (default 50257 128256)")
    ap.add_argument("--batch", type=int, nargs="+", help="batch sizes (default 1 8 32)")
    ap.add_argument("--no-hf", action="store_true")
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("text_processor", exc)

    from wmark import Key
    from wmark.text import make_scheme

    key = Key.demo()
    vocabs = args.vocab or ([50257] if args.quick else [50257, 128256])
    batches = args.batch or ([32] if args.quick else [1, 8, 32])
    results, warm = [], {}
    hf_seedings = [] if args.no_hf else ["lefthash"] if args.quick else ["lefthash", "selfhash"]
    bar = progress(len(vocabs) * len(batches) * (2 + len(SCHEMES) + len(hf_seedings)), "text_processor",
                   not args.no_progress, unit="cell")
    for V in vocabs:
        for B in batches:
            g = torch.Generator().manual_seed(0)
            scores = torch.randn(B, V, generator=g)
            ids = torch.randint(0, V, (B, 64), generator=g)
            mask = (torch.rand(B, V, generator=g) < 0.25).float() * 2.0
            cell: dict[str, float] = {}
            cell["plain sampling"] = time_call(lambda: torch.multinomial(torch.softmax(scores, -1), 1))["median_ms"]
            cell["floor"] = time_call(lambda: scores + mask)["median_ms"]
            bar.update(2)
            for name in SCHEMES:
                s = make_scheme(name, key, V)
                t0 = time.perf_counter()
                s(ids, scores)  # warm-up: builds tables, compiles where the backend does
                warm[f"{name} V={V} B={B}"] = time.perf_counter() - t0
                cell[name] = time_call(lambda: s(ids, scores))["median_ms"]
                bar.update(1)
            if not args.no_hf:
                try:
                    from transformers import WatermarkLogitsProcessor
                except ImportError:
                    bar.write("transformers not installed: HF baselines skipped", file=sys.stderr)
                    bar.update(len(hf_seedings))
                else:
                    for seeding in ("lefthash", "selfhash"):
                        if seeding == "selfhash" and args.quick:
                            continue
                        hf = WatermarkLogitsProcessor(vocab_size=V, device="cpu", seeding_scheme=seeding)
                        cell[f"HF {seeding}"] = time_call(lambda: hf(ids, scores.clone()), min_time=0.5,
                                                          min_reps=2, max_reps=50)["median_ms"]
                        bar.update(1)
            results.append({"V": V, "B": B, "ms": cell})
            bar.write(f"V={V} B={B}: " + ", ".join(f"{k} {v:.2f}" for k, v in cell.items()))
    bar.close()

    cols = ["plain sampling", "floor", *SCHEMES] + ([] if args.no_hf else ["HF lefthash", "HF selfhash"])
    table = markdown_table(["V", "B", *cols], [[r["V"], r["B"], *[r["ms"].get(c, float("nan")) for c in cols]]
                                               for r in results])
    # targets at the largest cell
    big = results[-1]["ms"]
    targets = {
        "lefthash_vs_hf_lefthash_x": big.get("HF lefthash", float("nan")) / big["kgw-lefthash"],
        "lefthash_vs_floor_x": big["kgw-lefthash"] / big["floor"],
        "selfhash_vs_hf_selfhash_x": big.get("HF selfhash", float("nan")) / big["kgw-selfhash"],
        **{f"{n}_fraction_of_sampling": big[n] / big["plain sampling"] for n in SCHEMES},
    }
    path = write_json("text_processor", {"unit": "ms per step (median)", "results": results,
                                          "warmup_s": warm, "targets_at_largest": targets,
                                          "table_md": table}, out)
    print(table)
    print("targets at", f"V={results[-1]['V']} B={results[-1]['B']}:",
          ", ".join(f"{k}={v:.2f}" for k, v in targets.items()))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
