"""``wmark demo``: the whole story on shipped data — mark, detect, strip, and the loop.

Sections run in order (a registry); each prints its numbers. A section whose part is not built in
this checkout says so and is skipped.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from typing import Callable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the mark -> detect -> strip -> loop showcase on shipped data")
    p.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    p.add_argument("--quick", action="store_true", help="smaller sizes (for tests)")
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


#: name -> (module that must exist, section function)
SECTIONS: dict[str, tuple[str, Callable[[bool], None]]] = {
    "text": ("wmark.lm", text_section),
}


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    for name, (needs, fn) in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        _rule(f"{name}")
        if importlib.util.find_spec(needs) is None:
            print(f"({needs} is not built in this checkout: skipped)")
            continue
        fn(args.quick)
    print(f"\ndemo finished in {time.time() - t0:.0f} s")
    return 0
