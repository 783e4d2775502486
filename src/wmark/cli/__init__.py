"""The one command-line entry point: ``wmark COMMAND ...``.

Command groups are a registry of ``name -> "module:register"``, one module of this package per
group; each ``register(sub)`` adds its parsers (argparse-level code only) and sets ``func`` on them.
Heavy work is imported inside the command functions, so ``wmark --help`` is instant.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from wmark._lazy import import_attr

#: top-level command groups; add one line per group
COMMANDS: dict[str, str] = {
    "keygen": "wmark.cli.keys:register",
    "text": "wmark.cli.text:register",
    "lm": "wmark.cli.lm:register",
    "train": "wmark.cli.train:register",
    "image": "wmark.cli.image:register",  # embed / detect / strip
    "attack": "wmark.cli.attack:register",
    "bench": "wmark.cli.bench:register",
    "loop": "wmark.cli.loop:register",
    "demo": "wmark.cli.demo:register",
}


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def alpha(text: str) -> float:
    """argparse type of a significance level: a number strictly between 0 and 1."""
    try:
        a = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < a < 1.0:
        raise argparse.ArgumentTypeError(f"a significance level must be in (0, 1), got {text}")
    return a


def build_parser() -> argparse.ArgumentParser:
    from wmark import __version__

    parser = argparse.ArgumentParser(prog="wmark", description="Autophagy-aware watermarking.")
    parser.add_argument("--version", action="version", version=f"wmark {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for spec in COMMANDS.values():
        import_attr(spec)(sub)
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
    except (CliError, ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, PermissionError) as exc:
        print(f"wmark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
