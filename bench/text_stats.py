"""Statistics of the text watermarks on real text, with the built-in language model.

    .venv/bin/python bench/text_stats.py [--quick] [--out FILE | --update-results] [--overwrite] [--no-progress]

Writes runs/text_stats.json by default (``--update-results``: the committed bench/results/text_stats.json).

1. False positives on human text (../shared/data/text, non-overlapping 200-token windows of the
   built-in tokenizer): measured FPR at alpha = 1e-2, 1e-3, and the mean / sd of z, with and without
   dedup, for every scheme, with the demo key; and the same averaged over 10 other keys (the
   p-value's guarantee is over keys: with one fixed key, seeds that recur across documents — the
   previous token for lefthash, the one list of Unigram — give a key-specific z offset on natural text).
2. Marked generation with the built-in LM at temperature 1 (gamma=0.25, delta=2 for KGW/Unigram),
   T=200 new tokens after a 16-token human prompt (excluded from scoring): TPR at p < 1e-5, and the
   perplexity cost (PPL of the generated tokens under the unmarked LM, marked vs unmarked samples
   from the same prompts).
3. A 250-token marked span inside 1,000 human tokens: windowed vs global detection.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, markdown_table, progress, write_json  # noqa: E402

from wmark.bench.report import progress_processor  # noqa: E402

SCHEMES = ["kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram", "gumbel", "tournament"]
SPAN_SCHEMES = ("kgw-lefthash", "kgw-selfhash", "unigram", "gumbel")
GEN_BATCH = 100
#: progress units: one per generated token of a batch; a detection over every human window costs about
#: as much as DETECT_STEPS of them, a windowed span detection about SPAN_STEPS (2 CPU cores)
DETECT_STEPS, SPAN_STEPS = 3, 1
SPAN_LEN = 250  # marked tokens inside 1,000 human ones (section 3)
OUTPUT = json_output("text_stats")


def human_windows(lm, length: int) -> torch.Tensor:
    from wmark.lm import load_corpus

    corpus = load_corpus()
    rows = []
    for name in corpus.train:
        ids = lm.tokenizer.encode(corpus.train[name] + corpus.val[name])
        n = len(ids) // length
        rows.append(torch.tensor(ids[: n * length]).reshape(n, length))
    return torch.cat(rows)


def generate(lm, prompts: torch.Tensor, n_new: int, processor, seed: int, batch: int = GEN_BATCH,
             bar=None) -> torch.Tensor:
    """Sampled continuations of ``prompts`` (prompt included); ``bar`` ticks once per generated token
    of each batch (an identity processor after ``processor``: the samples do not change)."""
    from wmark.lm.sampling import generate as lm_generate

    procs = [p for p in (processor, None if bar is None else progress_processor(bar)) if p is not None]
    out = []
    g = torch.Generator().manual_seed(seed)
    for i in range(0, len(prompts), batch):
        out.append(lm_generate(lm, prompts[i:i + batch], n_new, temperature=1.0, logits_processor=procs or None,
                               generator=g))
    return torch.cat(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("text_stats", exc)

    import wmark.lm
    from wmark import Key

    torch.manual_seed(0)
    key = Key.demo()
    lm = wmark.lm.load()
    V = lm.vocab_size
    human = human_windows(lm, 200)
    if args.quick:
        human = human[:500]
    n_gen = 40 if args.quick else 200
    P, T = 16, 200
    rng = np.random.default_rng(0)
    prompts = human[rng.choice(len(human), n_gen, replace=False), :P]
    n_keys = 3 if args.quick else 10
    n_trials = 20 if args.quick else 50
    batches = -(-n_gen // GEN_BATCH)
    # detections over the human windows, generated tokens per batch, span generation and trials
    total = (len(SCHEMES) * (2 + n_keys) * DETECT_STEPS + (1 + len(SCHEMES)) * batches * T
             + len(SPAN_SCHEMES) * (-(-n_trials // GEN_BATCH) * SPAN_LEN + n_trials * SPAN_STEPS))
    with progress(total, "text_stats", not args.no_progress, unit="step") as bar:
        res = _run(lm, key, V, human, prompts, rng, n_keys, n_trials, P, T, bar)
    path = write_json("text_stats", res, out)
    print(*res["tables_md"], sep="\n\n")
    print("wrote", path)
    return 0


def _run(lm, key, V, human, prompts, rng, n_keys: int, n_trials: int, P: int, T: int, bar) -> dict:
    from wmark import Key
    from wmark.lm import token_logprobs
    from wmark.text import make_scheme

    # --- 1. FPR on human text -------------------------------------------------------------
    fpr_rows, fpr = [], {}
    for name in SCHEMES:
        s = make_scheme(name, key, V)
        for dedup in (True, False):
            r = s.detect_batch(human, dedup=dedup)
            rec = {"windows": len(r), "fpr_1e-2": float((r.p_value < 1e-2).mean()),
                   "fpr_1e-3": float((r.p_value < 1e-3).mean()), "z_mean": float(r.z_score.mean()),
                   "z_sd": float(r.z_score.std())}
            fpr[f"{name} dedup={dedup}"] = rec
            fpr_rows.append([name, dedup, rec["windows"], rec["fpr_1e-2"], rec["fpr_1e-3"], rec["z_mean"], rec["z_sd"]])
            bar.update(DETECT_STEPS)
        bar.write(f"fpr {name} {fpr[f'{name} dedup=True']}")
    keys_rows, keys_fpr = [], {}
    for name in SCHEMES:
        f2, f3, zm = [], [], []
        for i in range(n_keys):
            r = make_scheme(name, Key.from_passphrase(f"fpr-key-{i}"), V).detect_batch(human)
            f2.append(float((r.p_value < 1e-2).mean()))
            f3.append(float((r.p_value < 1e-3).mean()))
            zm.append(float(r.z_score.mean()))
            bar.update(DETECT_STEPS)
        rec = {"keys": n_keys, "fpr_1e-2_mean": float(np.mean(f2)), "fpr_1e-3_mean": float(np.mean(f3)),
               "fpr_1e-2_max": float(np.max(f2)), "z_mean_over_keys": float(np.mean(zm)),
               "z_mean_sd_across_keys": float(np.std(zm))}
        keys_fpr[name] = rec
        keys_rows.append([name, n_keys, rec["fpr_1e-2_mean"], rec["fpr_1e-3_mean"], rec["fpr_1e-2_max"],
                          rec["z_mean_over_keys"], rec["z_mean_sd_across_keys"]])
        bar.write(f"fpr over keys {name} {rec}")

    # --- 2. TPR and perplexity cost with the built-in LM ---------------------------------
    bar.set_postfix_str("generation")
    plain = generate(lm, prompts, T, None, seed=1, bar=bar)
    ppl_plain = math.exp(-float(token_logprobs(lm, plain)[:, P - 1:].double().mean()))
    tpr_rows, tpr = [], {}
    for name in SCHEMES:
        s = make_scheme(name, key, V)
        marked = generate(lm, prompts, T, s, seed=1, bar=bar)
        r = s.detect_batch(marked, ignore_prefix=P)
        lp = token_logprobs(lm, marked)[:, P - 1:]
        ppl = math.exp(-float(lp.double().mean()))
        rec = {"samples": len(r), "tpr_p<1e-5": float((r.p_value < 1e-5).mean()),
               "median_p": float(np.median(r.p_value)), "median_z": float(np.median(r.z_score)),
               "median_scored": float(np.median(r.num_scored)), "ppl_marked": ppl, "ppl_unmarked": ppl_plain}
        tpr[name] = rec
        tpr_rows.append([name, rec["samples"], rec["tpr_p<1e-5"], rec["median_z"], rec["median_scored"], ppl, ppl_plain])
        bar.write(f"tpr {name} {rec}")

    # --- 3. a marked span inside human text ----------------------------------------------
    span_rows, span = [], {}
    long_human = human.reshape(-1)
    bar.set_postfix_str("span")
    for name in SPAN_SCHEMES:
        s = make_scheme(name, key, V)
        marked = generate(lm, prompts[:n_trials], SPAN_LEN, s, seed=2, bar=bar)[:, P:]
        g_ok = w_ok = 0
        gp, wp = [], []
        for i in range(n_trials):
            start = int(rng.integers(0, len(long_human) - 1000))
            hum = long_human[start:start + 1000]
            at = int(rng.integers(0, 1000))
            ids = torch.cat([hum[:at], marked[i], hum[at:]])
            r = s.detect(ids, windowed=True)
            gp.append(r.p_value)
            wp.append(r.window.p_value_corrected)
            g_ok += r.p_value < 1e-5
            w_ok += r.window.p_value_corrected < 1e-5
            bar.update(SPAN_STEPS)
        rec = {"trials": n_trials, "global_detect_p<1e-5": g_ok / n_trials, "window_detect_p<1e-5": w_ok / n_trials,
               "median_global_p": float(np.median(gp)), "median_window_p_corrected": float(np.median(wp))}
        span[name] = rec
        span_rows.append([name, n_trials, rec["global_detect_p<1e-5"], rec["window_detect_p<1e-5"],
                          rec["median_global_p"], rec["median_window_p_corrected"]])
        bar.write(f"span {name} {rec}")

    t1 = markdown_table(["scheme", "dedup", "windows", "FPR@1e-2", "FPR@1e-3", "z mean", "z sd"], fpr_rows)
    t1k = markdown_table(["scheme", "keys", "mean FPR@1e-2", "mean FPR@1e-3", "worst key FPR@1e-2",
                          "z mean (all keys)", "sd of per-key z mean"], keys_rows)
    t2 = markdown_table(["scheme", "samples", "TPR@p<1e-5", "median z", "median scored", "PPL marked",
                         "PPL unmarked"], tpr_rows)
    t3 = markdown_table(["scheme", "trials", "global p<1e-5", "windowed p<1e-5", "median global p",
                         "median windowed p (corrected)"], span_rows)
    return {"windows": len(human), "fpr_human": fpr, "fpr_over_keys": keys_fpr, "tpr_lm": tpr, "span_in_human": span,
            "tables_md": [t1, t1k, t2, t3]}


if __name__ == "__main__":
    raise SystemExit(main())
