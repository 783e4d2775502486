"""Per-key false-positive rate of the text detectors on human text (a null that holds for every key).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/text_key_fpr.py [--keys 50] [--tpr 100]
        [--variants baseline,default] [--bpe runs/text_key_fpr_bpe32k.json] [--out FILE] [--overwrite]

A p-value's guarantee is over the key; a user holds ONE key. This bench scores the same unmarked human
windows under ``--keys`` fresh keys (``Key.generate()``) and reports, per scheme and detector variant,
the FPR of every key, their mean and the worst key, at alpha = 1e-2 and 1e-3.

Samples (windows of ``--window`` tokens, consecutive, non-overlapping):

- ``books``: the shared books (``../shared/data/text``: pg1342, pg84, tinyshakespeare; Project
  Gutenberg header and licence stripped), hard-wrapped prose and verse;
- ``code``: Python standard-library sources (``sysconfig.get_paths()['stdlib']``, site-packages
  excluded) of the evaluation half (files split by a hash of their path);
- ``list``: list-like standard-library text (idlelib NEWS bullet lists, the math / cmath test-case
  tables).

Tokenizers: ``builtin`` (the shipped LM's byte-level BPE, 4096) and ``bpe32k`` (a 32,768-token
byte-level BPE trained with ``tokenizers`` on the OTHER half of the standard-library sources, cached
as a tokenizer.json at ``--bpe``: trained once when missing, then read by path).

Detector variants (``--variants``) are named in :data:`wmark.text.detect.VARIANTS`: ``baseline``
(the first occurrence of each (context, token) key is scored) and ``default`` (what
``scheme.detect`` uses now). TPR@1e-5 of each variant on ``--tpr`` marked generations per scheme of
the built-in LM (16-token human prompts as ``wmark bench text-robustness``; 200 new tokens at
temperature 1; the prompt not shown to the detector), the same generations for every variant.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fail, json_output, markdown_table, progress, write_json, write_output  # noqa: E402

SCHEMES = ("kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram", "gumbel", "tournament")
#: bench-only names for a registry scheme with other parameters (the baseline of a design change)
EXTRA = {"unigram-unbalanced": ("unigram", {"block": 1}),
         **{f"{n}-lean0": (n, {"lean": 0.0}) for n in ("kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram")}}


def build(name: str, key, vocab_size: int):
    """``make_scheme`` for a registry name or an :data:`EXTRA` one."""
    from wmark.text import make_scheme

    base, params = EXTRA.get(name, (name, {}))
    return make_scheme(base, key, vocab_size, **params)
BOOKS = ("pg1342", "pg84", "tinyshakespeare")
LISTS = ("idlelib/NEWS.txt", "idlelib/NEWS2x.txt", "test/cmath_testcases.txt", "test/math_testcases.txt")
ALPHAS = (1e-2, 1e-3)
OUTPUT = json_output("text_key_fpr")
BPE_DEFAULT = "runs/text_key_fpr_bpe32k.json"


def stdlib_halves() -> tuple[Path, list[Path], list[Path]]:
    """(stdlib folder, training half, evaluation half) of the standard library's .py files
    (site-packages excluded); a file's half is the low bit of sha256 of its relative path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for f in root.rglob("*.py")
                   if not {"site-packages", "dist-packages", "__pycache__"} & set(f.relative_to(root).parts))
    half = [hashlib.sha256(f.relative_to(root).as_posix().encode()).digest()[0] & 1 for f in files]
    return root, [f for f, h in zip(files, half) if h == 0], [f for f, h in zip(files, half) if h == 1]


def _read(f: Path) -> str | None:
    try:
        return f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def bpe_tokenizer(path: Path, vocab_size: int = 32768, log=print):
    """The byte-level BPE trained on the training half of the stdlib sources, cached at ``path``."""
    from wmark.lm.tokenizer import Tokenizer, train_tokenizer

    if path.exists():
        return Tokenizer.from_file(path)
    _, train, _ = stdlib_halves()
    texts = [t for t in map(_read, train) if t]
    log(f"training a {vocab_size}-token BPE on {len(texts)} stdlib files ({sum(map(len, texts)) / 1e6:.1f} M chars)")
    tok = train_tokenizer(texts, vocab_size=vocab_size)
    write_output(path, tok.to_str())
    return tok


def samples(tok, window: int, max_windows: int) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (``[W, window]`` int64 token windows, description). Each document is tokenized whole
    and cut into consecutive windows (a remainder shorter than ``window`` is dropped)."""
    from wmark.assets import shared_data
    from wmark.lm.data import strip_gutenberg

    def cut(docs: list[str]) -> np.ndarray:
        rows: list[np.ndarray] = []
        for i in range(0, len(docs), 32):  # tokenized in groups until there are enough windows
            for ids in tok.encode_batch(docs[i:i + 32]):
                a = np.asarray(ids, dtype=np.int64)
                k = len(a) // window
                if k:
                    rows.append(a[: k * window].reshape(k, window))
            if sum(len(r) for r in rows) >= max_windows:
                break
        out = np.concatenate(rows) if rows else np.zeros((0, window), dtype=np.int64)
        return out[:max_windows]

    text_dir = shared_data("text")
    books = [strip_gutenberg((text_dir / f"{b}.txt").read_text(encoding="utf-8")) for b in BOOKS]
    root, _, evaluate = stdlib_halves()
    code = [t for t in map(_read, evaluate) if t and len(t) > 2000]
    lists = [t for t in (_read(root / n) for n in LISTS if (root / n).exists()) if t]
    return {"books": (cut(books), f"{', '.join(BOOKS)} (PG header/licence stripped)"),
            "code": (cut(code), f"stdlib .py, evaluation half ({len(code)} files > 2000 chars)"),
            "list": (cut(lists), ", ".join(LISTS))}


def score_keys(X: np.ndarray, name: str, keys, vocab_size: int, variants, bar=None) -> dict[str, dict]:
    """Per variant: per-key FPR at each alpha, mean, worst, z mean per key, mean scored draws."""
    import torch

    from wmark.text.detect import VARIANTS, detect_scores

    ids = torch.as_tensor(X)
    per = {v: {"fpr": {a: [] for a in ALPHAS}, "z_mean": [], "scored": []} for v in variants}
    for key in keys:
        s = build(name, key, vocab_size)
        ts = s.token_scores(ids)
        for v in variants:
            r = detect_scores(ts, s.null, scheme=name, **VARIANTS[v])
            p = np.where(np.isnan(r.p_value), 1.0, r.p_value)
            for a in ALPHAS:
                per[v]["fpr"][a].append(float((p < a).mean()))
            per[v]["z_mean"].append(float(np.nanmean(r.z_score)))
            per[v]["scored"].append(float(r.num_scored.mean()))
        if bar is not None:
            bar.update(1)
    out = {}
    for v, d in per.items():
        rec = {"windows": int(len(X)), "keys": len(keys), "mean_scored": float(np.mean(d["scored"])),
               "z_mean_per_key_sd": float(np.std(d["z_mean"])), "z_mean_per_key": [round(z, 4) for z in d["z_mean"]]}
        for a in ALPHAS:
            f = np.asarray(d["fpr"][a])
            rec.update({f"fpr@{a:.0e}_mean": float(f.mean()), f"fpr@{a:.0e}_worst": float(f.max()),
                        f"fpr@{a:.0e}_worst_key": int(f.argmax()), f"fpr@{a:.0e}_per_key": [round(x, 5) for x in f]})
        out[v] = rec
    return out


def tpr(lm, names, n: int, length: int, seed: int, variants, bar=None) -> dict[str, dict]:
    """TPR@1e-5 (and 1e-3) per scheme and variant on ``n`` marked generations of the built-in LM
    (one fresh key per scheme)."""
    import torch

    from wmark.bench.text_robustness import sample_prompts
    from wmark.keys import Key
    from wmark.lm.sampling import generate
    from wmark.text.detect import VARIANTS, detect_scores

    prompts, src = sample_prompts(lm, n, seed)
    out = {}
    for i, name in enumerate(names):
        s = build(name, Key.generate(), lm.vocab_size)
        g = torch.Generator().manual_seed(seed * 1000 + i)
        rows = []
        for b in range(0, n, 50):
            rows.append(generate(lm, prompts[b:b + 50], length, temperature=1.0, logits_processor=[s],
                                 generator=g)[:, prompts.shape[1]:])
        gen = torch.cat(rows)
        ts = s.token_scores(gen)
        rec = {"n": int(len(gen)), "length": length, "prompt": src}
        for v in variants:
            r = detect_scores(ts, s.null, scheme=name, **VARIANTS[v])
            p = np.where(np.isnan(r.p_value), 1.0, r.p_value)
            rec[v] = {"tpr@1e-05": float((p < 1e-5).mean()), "tpr@1e-03": float((p < 1e-3).mean()),
                      "median_p": float(np.median(p)), "mean_scored": float(r.num_scored.mean())}
        out[name] = rec
        if bar is not None:
            bar.update(1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=50, help="random keys (Key.generate(); default 50)")
    ap.add_argument("--window", type=int, default=200, help="tokens per window (default 200)")
    ap.add_argument("--max-windows", type=int, default=4000, help="windows per sample at most (default 4000)")
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--variants", default="baseline,default", help="detector variants (wmark.text.detect.VARIANTS)")
    ap.add_argument("--tokenizers", default="builtin,bpe32k")
    ap.add_argument("--samples", default="books,code,list")
    ap.add_argument("--bpe", default=BPE_DEFAULT, help=f"cached tokenizer.json of the stdlib BPE (default {BPE_DEFAULT})")
    ap.add_argument("--tpr", type=int, default=100, help="marked generations per scheme for TPR (0: skip)")
    ap.add_argument("--tpr-length", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
        from wmark.bench.text_robustness import check_names
        from wmark.text.detect import VARIANTS
        from wmark.text.schemes import SCHEMES as KNOWN

        schemes = check_names(args.schemes.split(","), list(KNOWN) + list(EXTRA), "text scheme")
        variants = check_names(args.variants.split(","), list(VARIANTS), "detector variant")
        toks = check_names(args.tokenizers.split(","), ["builtin", "bpe32k"], "tokenizer")
        wanted = check_names(args.samples.split(","), ["books", "code", "list"], "sample")
        if args.keys < 1 or args.window < 2 or args.max_windows < 1 or args.tpr < 0:
            raise ValueError("--keys, --window, --max-windows must be positive, --tpr >= 0")
    except ValueError as e:  # OutputError included
        return fail("text_key_fpr", e)

    import torch

    import wmark.lm
    from wmark.keys import Key

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lm = wmark.lm.load(device="cpu")
    keys = [Key.generate() for _ in range(args.keys)]
    res: dict = {}
    data = {}
    for t in toks:
        tok = lm.tokenizer if t == "builtin" else bpe_tokenizer(Path(args.bpe), log=lambda m: print(m, file=sys.stderr))
        got = samples(tok, args.window, args.max_windows)
        data[t] = ({k: v for k, v in got.items() if k in wanted}, tok.vocab_size)
    total = sum(len(schemes) * args.keys for t in data for _ in data[t][0]) + (len(schemes) if args.tpr else 0)
    with progress(total, "text_key_fpr", not args.no_progress, unit="key") as bar:
        for t, (smp, V) in data.items():
            for sname, (X, desc) in smp.items():
                for name in schemes:
                    bar.set_postfix_str(f"{t}/{sname}/{name}")
                    rec = score_keys(X, name, keys, V, variants, bar)
                    res.setdefault(t, {}).setdefault(sname, {"description": desc, "vocab_size": V,
                                                             "windows": int(len(X)), "schemes": {}})
                    res[t][sname]["schemes"][name] = rec
        tp = {}
        if args.tpr:
            bar.set_postfix_str("TPR generations")
            tp = tpr(lm, schemes, args.tpr, args.tpr_length, args.seed, variants, bar)
    rows = []
    for t, d in res.items():
        for sname, smp in d.items():
            for name, rec in smp["schemes"].items():
                for v in variants:
                    r = rec[v]
                    rows.append([t, f"{sname} ({smp['windows']})", name, v,
                                 f"{r['fpr@1e-02_mean']:.4f} / {r['fpr@1e-02_worst']:.4f}",
                                 f"{r['fpr@1e-03_mean']:.4f} / {r['fpr@1e-03_worst']:.4f}",
                                 f"{r['z_mean_per_key_sd']:.3f}", f"{r['mean_scored']:.0f}"])
    table = markdown_table(["tokenizer", "sample (windows)", "scheme", "detector", "FPR@1e-2 mean / worst key",
                            "FPR@1e-3 mean / worst key", "sd of per-key z mean", "scored / window"], rows)
    if tp:
        trows = [[name] + [f"{r[v]['tpr@1e-05']:.2f} ({r[v]['mean_scored']:.0f})" for v in variants]
                 for name, r in tp.items()]
        table += "\n\n" + markdown_table(["scheme"] + [f"TPR@1e-5 {v} (scored)" for v in variants], trows)
    payload = {"config": {"keys": args.keys, "key_fingerprints": [k.fingerprint for k in keys], "window": args.window,
                          "max_windows": args.max_windows, "schemes": list(schemes), "variants":
                          {v: VARIANTS[v] for v in variants}, "tokenizers": list(toks), "bpe": args.bpe,
                          "tpr": args.tpr, "tpr_length": args.tpr_length, "seed": args.seed, "threads": args.threads},
               "fpr": res, "tpr": tp, "elapsed_s": time.perf_counter() - t0,
               "notes": ["FPR per key: fraction of the unmarked human windows with p < alpha under that key; "
                         "mean and worst over the keys (worst_key: its index in key_fingerprints).",
                         "sd of per-key z mean: spread over keys of the mean z of the windows (the per-key bias).",
                         "TPR: one fresh key per scheme, --tpr generations of --tpr-length tokens, prompt not scored."],
               "table_md": table}
    path = write_json("text_key_fpr", payload, out)
    print(table)
    print(f"wrote {path} ({payload['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
