"""``wmark keygen OUT``: write a new key file, mode 0600, never over anything at OUT.

A random key by default; ``--passphrase`` derives one from a passphrase with a fresh random salt
(or ``--salt HEX`` to recreate an earlier one). The file then holds the salt and the derived key,
not the passphrase (see :mod:`wmark.keys`). Only the fingerprint and the public salt are printed.
"""
from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="write a new key file (random, or from a salted passphrase; mode 0600)")
    p.add_argument("path", help="key file to create (must not exist)")
    p.add_argument("--bytes", type=int, default=None, help="random key length in bytes (16..64, default 32)")
    p.add_argument("--passphrase", action="store_true",
                   help="derive the key from a passphrase: read from stdin when it is not a terminal, "
                        "else asked twice; a random salt is drawn and stored in the file")
    p.add_argument("--salt", metavar="HEX", default=None,
                   help="with --passphrase: this salt (from an earlier key file) instead of a random one, "
                        "to recreate that key")
    p.set_defaults(func=_run)


def _read_passphrase() -> str:
    """The passphrase: one line of stdin when it is not a terminal, else typed twice (not echoed)."""
    from wmark.cli import CliError

    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        text = line[:-1] if line.endswith("\n") else line
        text = text[:-1] if text.endswith("\r") else text
        if not text:
            raise CliError("no passphrase on stdin (expected one line)")
        return text
    import getpass

    text = getpass.getpass("passphrase: ")
    if not text:
        raise CliError("empty passphrase")
    if getpass.getpass("passphrase again: ") != text:
        raise CliError("the two passphrases differ")
    return text


def _run(args: argparse.Namespace) -> int:
    import secrets

    from wmark.cli import CliError
    from wmark.keys import SALT_BYTES, Key

    if not args.passphrase and args.salt is not None:
        raise CliError("--salt applies only with --passphrase")
    if args.passphrase and args.bytes is not None:
        raise CliError("--bytes applies only to random keys (a passphrase key is 32 bytes)")
    salt = None
    if args.salt is not None:
        try:
            salt = bytes.fromhex(args.salt)
        except ValueError:
            raise CliError("--salt must be hex") from None
    # refuse before asking for a passphrase; the write itself re-checks atomically
    if os.path.lexists(args.path):
        raise CliError(f"refusing to overwrite existing file: {args.path}")
    if args.passphrase:
        key = Key.from_passphrase(_read_passphrase(), salt if salt is not None else secrets.token_bytes(SALT_BYTES))
    else:
        key = Key.generate(32 if args.bytes is None else args.bytes)
    try:
        key.save(args.path)
    except FileExistsError:
        raise CliError(f"refusing to overwrite existing file: {args.path}") from None
    if key.salt is None:
        print(f"wrote key {key.fingerprint} to {args.path}")
    else:
        salt_hex = key.salt.hex()
        print(f"wrote key {key.fingerprint} to {args.path} (from a passphrase with salt {salt_hex}; "
              f"`wmark keygen OUT --passphrase --salt {salt_hex}` recreates it)")
    return 0
