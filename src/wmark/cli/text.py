"""``wmark text generate`` and ``wmark text detect``: text watermarking from the command line."""
from __future__ import annotations

import argparse
import json
import sys

from wmark.cli import alpha


def _add_scheme_args(p: argparse.ArgumentParser) -> None:
    k = p.add_mutually_exclusive_group(required=True)
    k.add_argument("--key-file", help="key file (hex or 'passphrase:...'); see `wmark keygen`")
    k.add_argument("--demo-key", action="store_true", help="use the PUBLIC demo key (examples only)")
    p.add_argument("--scheme", default="kgw-selfhash", help="text scheme (default kgw-selfhash); one of "
                   "kgw-lefthash, kgw-selfhash, kgw-minhash, unigram, gumbel, tournament ('kgw' stands for "
                   "kgw-selfhash); JSON outputs carry the canonical name")
    p.add_argument("--gamma", type=float, default=None, help="green fraction (KGW / Unigram; default 0.25)")
    p.add_argument("--delta", type=float, default=None, help="green bias (KGW / Unigram; default 2.0)")
    p.add_argument("--context-width", type=int, default=None, help="context tokens for the seed")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("text", help="statistical text watermarks (generate / detect)")
    tsub = p.add_subparsers(dest="text_command", metavar="ACTION")

    g = tsub.add_parser("generate", help="generate marked text with the built-in language model")
    _add_scheme_args(g)
    g.add_argument("--prompt", default="", help="prompt text (default: start of a document)")
    g.add_argument("--length", type=int, default=200, help="new tokens to generate (default 200)")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--num", type=int, default=1, help="number of samples")
    g.add_argument("--seed", type=int, default=None, help="sampling seed (reproducible output)")
    g.add_argument("--no-watermark", action="store_true", help="generate without the mark (for comparison)")
    g.add_argument("--json", action="store_true", help="one JSON object per sample")
    g.set_defaults(func=_generate)

    d = tsub.add_parser("detect", help="detect the mark in text files ('-' reads stdin)",
                        description="Detect the mark in UTF-8 text files ('-' reads stdin). Files are read, "
                        "tokenized and scored 256 KiB at a time, so memory stays bounded; each input must be "
                        "at most --max-bytes. A file that is empty, not UTF-8 (the first bad byte's offset "
                        "is named) or too large is one error line; the other files are still scored.")
    _add_scheme_args(d)
    d.add_argument("files", nargs="+", metavar="FILE")
    d.add_argument("--tokenizer", default=None, help="a tokenizer.json (default: the built-in LM's)")
    d.add_argument("--vocab-size", type=int, default=None, help="vocabulary size used at generation "
                   "(default: the tokenizer's)")
    d.add_argument("--alpha", type=alpha, default=1e-3, help="significance level for 'detected'")
    d.add_argument("--no-dedup", action="store_true", help="score repeated n-grams too")
    d.add_argument("--ignore-prefix", type=int, default=0, help="do not score the first N tokens")
    d.add_argument("--windowed", action="store_true", help="also search windows for a marked span")
    d.add_argument("--min-window", type=int, default=50)
    d.add_argument("--max-bytes", default=None, metavar="SIZE",
                   help="refuse inputs larger than SIZE bytes (K/M/G suffixes; 0 = no limit; default "
                        "$WMARK_MAX_TEXT_BYTES or 64M)")
    d.add_argument("--json", action="store_true", help="one JSON object per input")
    d.set_defaults(func=_detect)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _key(args: argparse.Namespace):
    from wmark.keys import Key

    return Key.demo() if args.demo_key else Key.from_file(args.key_file)


def _scheme(args: argparse.Namespace, vocab_size: int):
    from wmark.text import make_scheme
    from wmark.text.names import resolve

    name = resolve(args.scheme)
    params = {k: v for k, v in (("gamma", args.gamma), ("delta", args.delta),
                                ("context_width", args.context_width)) if v is not None}
    try:
        return make_scheme(name, _key(args), vocab_size, **params)
    except TypeError as exc:  # a parameter this scheme does not take
        raise ValueError(f"scheme {name!r}: {exc}") from None


def _generate(args: argparse.Namespace) -> int:
    import torch

    import wmark.lm
    from wmark.text.names import resolve

    resolve(args.scheme)  # an unknown name fails before the model loads
    if args.length < 1 or args.num < 1:
        raise ValueError("--length and --num must be >= 1")
    lm = wmark.lm.load()
    scheme = _scheme(args, lm.vocab_size)
    params = scheme.params
    gen = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    for i in range(args.num):
        text = lm.generate_text(args.prompt, max_new_tokens=args.length, temperature=args.temperature,
                                logits_processor=None if args.no_watermark else scheme, generator=gen,
                                stop_at_eos=False)
        if args.json:
            print(json.dumps({"index": i, "prompt": args.prompt, "text": text, "watermarked": not args.no_watermark,
                              **params, "key_fingerprint": scheme.key_fingerprint}))
        else:
            print(args.prompt + text)
            if i + 1 < args.num:
                print("\n-----")
    return 0


def _tokenizer(args: argparse.Namespace):
    if args.tokenizer:
        from wmark.lm import Tokenizer

        return Tokenizer.from_file(args.tokenizer)
    from wmark.lm import load_tokenizer

    return load_tokenizer()


def _detect(args: argparse.Namespace) -> int:
    """Score every file, streaming it in bounded memory; a file that cannot be read or scored is one
    line on stderr (a JSON row with ``error`` under ``--json``) and the others are still scored.
    Exit status 1 if any failed."""
    from wmark.text.names import resolve
    from wmark.text.stream import detect_file, max_text_bytes, seams_exact

    resolve(args.scheme)
    if args.ignore_prefix < 0:
        raise ValueError(f"--ignore-prefix must be >= 0, got {args.ignore_prefix}")
    try:
        limit = max_text_bytes(args.max_bytes)
    except ValueError as exc:
        raise ValueError(f"--max-bytes: {exc}" if args.max_bytes is not None else str(exc)) from None
    tok = _tokenizer(args)
    scheme = _scheme(args, args.vocab_size or tok.vocab_size)
    exact = seams_exact(tok)
    failed = 0
    for path in args.files:
        try:
            r, chunks = detect_file(scheme, tok, path, max_bytes=limit, alpha=args.alpha, dedup=not args.no_dedup,
                                    ignore_prefix=args.ignore_prefix, windowed=args.windowed,
                                    min_window=args.min_window)
        except (ValueError, OSError) as exc:
            failed += 1
            msg = " ".join(str(exc).split())  # one line, whatever the message
            msg = msg if msg.startswith(f"{path}:") else f"{path}: {msg}"
            print(f"wmark: error: {msg}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps({"path": path, "error": msg}), flush=True)
            continue
        seams = chunks.forced_cuts if exact else chunks.chunks - 1
        if seams:
            print(f"wmark: warning: {path}: read in {chunks.chunks} pieces; tokens at {seams} seam(s) may differ "
                  "from tokenizing the whole text", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps({"path": path, **r.to_json()}), flush=True)
        else:
            w = (f", best window [{r.window.start}, {r.window.end}) p={r.window.p_value_corrected:.3g} (corrected)"
                 if r.window else "")
            print(f"{path}: {'MARKED' if r.detected else 'not detected'} (p={r.p_value:.3g}, z={r.z_score:.2f}, "
                  f"{r.num_scored} tokens scored{w})", flush=True)
    if failed and len(args.files) > 1:
        print(f"{failed} of {len(args.files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
