"""Green-list stealing: what an attacker who reads N marked tokens learns, and what it buys them.

    .venv/bin/python bench/text_stealing.py [--quick] [--schemes NAME ...] [--tokens N ...]
        [--out FILE | --update-results] [--overwrite] [--no-progress]

Writes runs/text_stealing.json by default (``--update-results``: the committed
bench/results/text_stealing.json).

Threat model (a strong attacker): they read N tokens the built-in LM generated under a KGW-family
mark, and have the same LM unmarked (so they know the base frequencies exactly); they never see the
key. They score each (previous token, token) pair by the log ratio of its marked to unmarked
count, backing off to the token's own ratio where the pair was seen fewer than twice (the estimator
of Jovanovic et al. 2024, "Watermark Stealing", reduced to counts). Two measurements per scheme
and N:

- *recovery*: on fresh marked text, the fraction of the draws the attacker calls green (score > 0)
  that are green under the key (chance: ``gamma``), and the fraction of green draws they find;
- *spoofing*: the unmarked LM generates 100-token texts with ``+delta`` on the attacker's green
  pairs (no key involved); the rate at which the real detector calls them marked at alpha = 1e-3,
  beside unmarked text (about alpha) and genuinely marked text (about 1).

The key itself is never at stake: 256 bits through keyed BLAKE2b; what leaks is the green lists'
footprint in text, which is what the mark is.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, markdown_table, progress, write_json  # noqa: E402

SCHEMES = ("unigram", "kgw-lefthash", "kgw-selfhash", "kgw-minhash")
OUTPUT = json_output("text_stealing")
ALPHA = 1e-3


def _generate(lm, prompts: torch.Tensor, n_new: int, processor, seed: int) -> torch.Tensor:
    import wmark.lm

    gen = torch.Generator().manual_seed(seed)
    return wmark.lm.generate(lm, prompts, n_new, logits_processor=processor, generator=gen)[:, prompts.shape[1]:]


def _prompts(lm, n: int, seed: int, width: int = 8) -> torch.Tensor:
    import wmark.lm

    ids = torch.tensor(lm.encode(wmark.lm.load_corpus().train["pg1342.txt"]))
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - width, (n,), generator=g)
    return torch.stack([ids[s:s + width] for s in starts.tolist()])


def _corpus(lm, processor, n_tokens: int, seed: int, rows: int = 64, length: int = 128) -> torch.Tensor:
    """``n_tokens`` generated tokens as ``[R, length]`` rows."""
    out = []
    for i in range((n_tokens + rows * length - 1) // (rows * length)):
        out.append(_generate(lm, _prompts(lm, rows, seed + i), length, processor, seed + 7919 * i))
    return torch.cat(out)[: (n_tokens + length - 1) // length]


def _pair_counts(rows: torch.Tensor, V: int) -> tuple[torch.Tensor, torch.Tensor]:
    prev, tok = rows[:, :-1].reshape(-1), rows[:, 1:].reshape(-1)
    pairs = torch.bincount(prev * V + tok, minlength=V * V).reshape(V, V).float()
    return pairs, torch.bincount(rows.reshape(-1), minlength=V).float()


class Attacker:
    """Log-ratio scores of (previous token, token) pairs from marked vs unmarked counts, ``[V, V]``."""

    def __init__(self, marked: torch.Tensor, plain: torch.Tensor, V: int, prior: float = 0.5) -> None:
        pm, um = _pair_counts(marked, V)
        pp, up = _pair_counts(plain, V)
        nm, npl = marked.numel(), plain.numel()
        uni = torch.log((um + prior) / nm) - torch.log((up + prior) / npl)                 # [V]
        pair = torch.log((pm + prior) / nm) - torch.log((pp + prior) / npl)               # [V, V]
        seen = (pm + pp) >= 2
        self.scores = torch.where(seen, pair, uni[None, :].expand(V, V))

    def green(self, prev: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
        return self.scores[prev, tok] > 0


class SpoofProcessor:
    """``+delta`` on the attacker's green tokens after the last token (a logits processor; no key)."""

    def __init__(self, attacker: Attacker, delta: float) -> None:
        self.attacker, self.delta = attacker, delta

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        green = self.attacker.scores[input_ids[:, -1]] > 0                                 # [B, V]
        return scores + self.delta * green.to(scores.dtype)


def _recovery(scheme, attacker: Attacker, fresh: torch.Tensor) -> tuple[float, float]:
    ts = scheme.token_scores(fresh)
    h = ts.history
    truth = ts.scores[:, :] > 0.5                                                          # [B, T - h]
    tok = fresh[:, h:]
    prev = fresh[:, h - 1:-1] if h >= 1 else fresh[:, :-1]
    if h == 0:
        tok, truth = fresh[:, 1:], truth[:, 1:]
    guess = attacker.green(prev, tok)
    valid = ts.valid if h else ts.valid[:, 1:]
    g, t = guess[valid], truth[valid]
    precision = float(t[g].float().mean()) if g.any() else float("nan")
    recall = float(g[t].float().mean()) if t.any() else float("nan")
    return precision, recall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small N and few texts (a smoke run)")
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    ap.add_argument("--tokens", nargs="+", type=int, default=None, help="marked tokens the attacker reads")
    ap.add_argument("--texts", type=int, default=None, help="spoofed / control texts per cell (100 tokens each)")
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("text_stealing", exc)

    import wmark.lm
    from wmark import Key
    from wmark.text import make_scheme

    torch.set_num_threads(1)
    tokens = args.tokens or ([4_096, 32_768] if args.quick else [8_192, 65_536, 262_144])
    n_texts = args.texts or (32 if args.quick else 128)
    lm = wmark.lm.load()
    V = lm.vocab_size
    key = Key.generate()
    plain = _corpus(lm, None, max(tokens), seed=1)
    rows, res = [], {}
    cells = len(args.schemes) * (len(tokens) + 1)
    with progress(cells, "text_stealing", not args.no_progress, unit="cell") as bar:
        for name in args.schemes:
            scheme = make_scheme(name, key, V)
            marked = _corpus(lm, scheme, max(tokens), seed=2)
            fresh = _corpus(lm, scheme, 16_384, seed=3)
            prompts = _prompts(lm, n_texts, seed=4)
            ctrl_plain = scheme.detect_batch(_generate(lm, prompts, 100, None, 5), alpha=ALPHA).detected.mean()
            ctrl_marked = scheme.detect_batch(_generate(lm, prompts, 100, scheme, 6), alpha=ALPHA).detected.mean()
            res[name] = {"gamma": scheme.params.get("gamma"), "unmarked_detected": float(ctrl_plain),
                         "marked_detected": float(ctrl_marked), "by_tokens": {}}
            rows.append([name, "—", "—", "—", float(ctrl_plain), "unmarked text"])
            rows.append([name, "—", "—", "—", float(ctrl_marked), "marked text"])
            bar.update(1)
            for n in tokens:
                att = Attacker(marked[: (n + marked.shape[1] - 1) // marked.shape[1]], plain, V)
                precision, recall = _recovery(scheme, att, fresh)
                spoofed = _generate(lm, prompts, 100, SpoofProcessor(att, scheme.params.get("delta", 2.0)), 7)
                rate = float(scheme.detect_batch(spoofed, alpha=ALPHA).detected.mean())
                res[name]["by_tokens"][str(n)] = {"precision": precision, "recall": recall, "spoof_detected": rate}
                rows.append([name, n, precision, recall, rate, "attacker's spoof"])
                bar.update(1)
    table = markdown_table(["scheme", "marked tokens read", "precision (green | called green)",
                            "recall (green found)", f"detected at {ALPHA:g}", "texts"], rows)
    payload = {"setup": {"lm": "built-in tiny LM", "vocab_size": V, "alpha": ALPHA, "spoof_texts": n_texts,
                         "spoof_length": 100, "estimator": "pair log-ratio, unigram back-off", "tokens": tokens},
               "results": res, "table_md": table}
    path = write_json("text_stealing", payload, out)
    print(table)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
