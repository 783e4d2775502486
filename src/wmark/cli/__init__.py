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
    "scrub": "wmark.cli.scrub:register",
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


def _warn_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings from the library as one line on stderr (``warnings.showwarning`` signature)."""
    print(f"wmark: warning: {message}", file=sys.stderr, flush=True)


#: exceptions that mean the request cannot be done as asked (exit 2); anything else is a runtime
#: failure (exit 1)
USAGE_ERRORS: tuple[type[BaseException], ...] = (CliError, ValueError, FileNotFoundError, FileExistsError,
                                                 IsADirectoryError, NotADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every error is one line on stderr: exit 2 for a request that cannot be done
    as given (bad arguments or input, an existing output, a held folder), 1 for a failure while
    running (I/O, memory, a corrupt file the run depends on). ``WMARK_DEBUG=1`` shows the traceback."""
    import os
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    debug = os.environ.get("WMARK_DEBUG", "") not in ("", "0")
    with warnings.catch_warnings():
        warnings.showwarning = _warn_line
        try:
            rc = func(args)
        except KeyboardInterrupt:
            print("wmark: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if debug:
                raise
            usage = isinstance(exc, USAGE_ERRORS)
            text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not usage and not isinstance(exc, OSError):
                text = f"{type(exc).__name__}: {text} (WMARK_DEBUG=1 shows the traceback)"
            print(f"wmark: error: {text}", file=sys.stderr)
            return 2 if usage else 1
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
