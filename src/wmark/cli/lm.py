"""``wmark lm ...``: inspect the built-in LM, sample from it, score a text file."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lm", help="the built-in tiny language model: info, generate, perplexity")
    lsub = p.add_subparsers(dest="lm_cmd", metavar="CMD")

    def model_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--model", default="tiny", help="shipped model name (default tiny)")
        q.add_argument("--dir", default=None, help="load a model folder written by `wmark train lm` instead")
        q.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")

    q = lsub.add_parser("info", help="print the model card summary")
    model_args(q)
    q.set_defaults(func=_info)
    q = lsub.add_parser("generate", help="continue a prompt")
    model_args(q)
    q.add_argument("prompt", help="text to continue ('' starts from <|endoftext|>)")
    q.add_argument("--max-new-tokens", type=int, default=100)
    q.add_argument("--temperature", type=float, default=0.8)
    q.add_argument("--top-k", type=int, default=None)
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=_generate)
    q = lsub.add_parser("ppl", help="perplexity of a UTF-8 text file")
    model_args(q)
    q.add_argument("file")
    q.set_defaults(func=_ppl)


def _load(args: argparse.Namespace):
    from wmark.lm.bundle import load, load_dir

    return load_dir(args.dir, device=args.device) if args.dir else load(args.model, device=args.device)


def _info(args: argparse.Namespace) -> int:
    lm = _load(args)
    card = lm.card or {}
    print(repr(lm))
    for k in ("parameters", "val_perplexity", "train_seconds", "training_command"):
        if k in card:
            print(f"{k}: {card[k]}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    lm = _load(args)
    text = lm.generate_text(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_k=args.top_k, seed=args.seed)
    print(args.prompt + text)
    return 0


def _ppl(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wmark.lm.sampling import perplexity

    lm = _load(args)
    p = perplexity(lm, lm.encode(Path(args.file).read_text(encoding="utf-8")))
    print(f"perplexity {p.ppl:.3f} over {p.n_tokens} tokens (mean NLL {p.mean_nll:.4f} nats)")
    return 0
