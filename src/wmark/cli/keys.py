"""``wmark keygen OUT``: write a fresh random key file (never overwrites)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="write a new random key file (hex, mode 0600)")
    p.add_argument("path", help="key file to create (must not exist)")
    p.add_argument("--bytes", type=int, default=32, help="key length in bytes (16..64)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from wmark.cli import CliError
    from wmark.keys import Key

    try:
        key = Key.generate(args.bytes)
        key.save(args.path)
    except FileExistsError:
        raise CliError(f"refusing to overwrite existing file: {args.path}") from None
    print(f"wrote key {key.fingerprint} to {args.path}")
    return 0
