"""The one command-line entry point: ``wmark GROUP ...``.

Command groups are a registry of ``name -> "module:register"``; each module's ``register(sub)``
adds its parsers (importing only argparse-level code) and sets ``func`` on them. Heavy work is
imported inside the command functions, so ``wmark --help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Callable, Sequence

#: top-level command groups; add one line per group
COMMANDS: dict[str, str] = {
    "keygen": "wmark.keys_cli:register",
    "text": "wmark.text.cli:register",
    "lm": "wmark.lm.cli:register",
    "train": "wmark.train_cli:register",
    "image": "wmark.image.cli:register",  # embed / detect / strip
    "attack": "wmark.attacks.cli:register",
    "bench": "wmark.bench_cli:register",
    "loop": "wmark.loop.cli:register",
    "demo": "wmark.demo:register",
}


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _load(spec: str) -> Callable[[argparse._SubParsersAction], None]:
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


def build_parser() -> argparse.ArgumentParser:
    from wmark import __version__

    parser = argparse.ArgumentParser(prog="wmark", description="Autophagy-aware watermarking.")
    parser.add_argument("--version", action="version", version=f"wmark {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, spec in COMMANDS.items():
        if importlib.util.find_spec(spec.partition(":")[0]) is None:
            continue  # a group not built yet in this checkout
        _load(spec)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        rc = func(args)
    except (CliError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"wmark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
