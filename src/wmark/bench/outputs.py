"""Where the benchmarks write: never over earlier results unless asked, by default under ``runs/``.

Every benchmark command (``wmark bench ...``) and script (``bench/*.py``) checks its output with
:func:`prepare_out` before it starts work, so a run that would replace results stops at once with a
one-line :class:`OutputError` (a ValueError: ``wmark`` prints it as ``wmark: error: ...``, exit 2):

- a folder output (results.json, report.md, plots) must be missing or empty; ``--overwrite`` allows
  a non-empty one (the files of the new run replace those of the same name);
- a file output (one JSON, or a stem whose ``.json`` / ``.md`` are written) must not exist;
  ``--overwrite`` allows replacing it;
- a file where a folder is needed, or a folder where a file is, is refused even with ``--overwrite``.

Defaults go under ``runs/`` (git-ignored, relative to the working directory); the committed results
in ``bench/results/`` of a source checkout are written only with ``--update-results``, which implies
``--overwrite`` for that path. :class:`Output` adds these three options to a parser and resolves them.
Every file is written with :func:`wmark.assets.write_atomic` (see :func:`write_output`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from wmark.assets import write_atomic

#: the committed results of a source checkout; ``--update-results`` writes there
RESULTS_DIR = Path(__file__).resolve().parents[3] / "bench" / "results"


class OutputError(ValueError):
    """An output path that cannot be used as asked (results there already, a file for a folder, ...)."""


def results_path(name: str) -> Path:
    """``bench/results/<name>`` of the source checkout (OutputError where there is none)."""
    if not RESULTS_DIR.is_dir():
        raise OutputError(f"--update-results: no committed results folder {RESULTS_DIR} (needs a source checkout)")
    return RESULTS_DIR / name


def _check_parents(p: Path) -> None:
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{parent}: exists and is not a folder (cannot write {p})")
            return


def prepare_out(path: str | Path, overwrite: bool = False, *, file: bool = False,
                suffixes: Sequence[str] = ()) -> Path:
    """Check an output before a run and return it as a Path; nothing is created or removed.

    ``file=False``: ``path`` is an output folder; refused where it is a file, or a non-empty folder
    unless ``overwrite``. ``file=True``: ``path`` is a result file or, with ``suffixes``, the stem of
    the files ``path.with_suffix(s)``; refused where one of them is a folder, or exists unless
    ``overwrite``. Raises :class:`OutputError` with a one-line message."""
    p = Path(path)
    hint = "pass --overwrite to replace"
    if not file:
        if p.exists() and not p.is_dir():
            raise OutputError(f"{p}: exists and is not a folder (--out names an output folder)")
        if p.is_dir() and not overwrite and any(p.iterdir()):
            raise OutputError(f"{p}: output folder is not empty ({hint} its results, or choose another --out)")
        _check_parents(p)
        return p
    try:
        targets = [p.with_suffix(s) for s in suffixes] if suffixes else [p]
    except ValueError as exc:  # e.g. an empty name
        raise OutputError(f"{p}: not a usable output file name ({exc})") from None
    for t in targets:
        if t.is_dir():
            raise OutputError(f"{t}: is a folder (--out names a result file)")
        if t.exists() and not overwrite:
            raise OutputError(f"{t}: result file exists ({hint} it, or choose another --out)")
    _check_parents(p)
    return p


def write_output(path: str | Path, data: bytes | str) -> Path:
    """Write one output file atomically (:func:`wmark.assets.write_atomic`), creating its folder."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(p, data)


@dataclass(frozen=True)
class Output:
    """The output options of one benchmark: ``--out`` (default under ``runs/``), ``--overwrite`` and,
    where results are committed, ``--update-results``.

    ``default``: the default ``--out`` (None: nothing is written without ``--out``); ``results``: the committed name under ``bench/results/`` (None:
    no ``--update-results``); ``file`` / ``suffixes``: as in :func:`prepare_out`; ``what``: the help
    text's name for ``--out``."""

    default: str | None
    results: str | None = None
    file: bool = False
    suffixes: tuple[str, ...] = ()
    what: str = "output folder"

    def add_arguments(self, parser: argparse.ArgumentParser, progress: bool = True) -> None:
        """Add ``--out``, ``--overwrite`` (and ``--update-results``) to ``parser``, and ``--no-progress``
        where the run shows a progress bar."""
        kind = "replaced only with --overwrite" if self.file else "must be empty unless --overwrite"
        default = f"default {self.default}" if self.default else "default: none, nothing is written"
        parser.add_argument("--out", default=None, metavar="PATH", help=f"{self.what} ({default}); {kind}")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace earlier results at --out" if self.file else
                                 "write into a non-empty --out, replacing the files of the same name")
        if self.results:
            parser.add_argument("--update-results", action="store_true",
                                help=f"write the committed results, bench/results/{self.results} "
                                     "(replaces them: implies --overwrite; not with --out)")
        if progress:
            parser.add_argument("--no-progress", action="store_true", help="no progress bar (stderr, with ETA)")

    def path(self, args: argparse.Namespace) -> tuple[Path | None, bool]:
        """(output path, overwrite allowed) from parsed ``args``, unchecked (None: no output)."""
        update = bool(getattr(args, "update_results", False))
        if update:
            if args.out is not None:
                raise OutputError("give --out or --update-results, not both")
            if getattr(args, "quick", False):
                raise OutputError("--update-results with --quick: quick runs are not the committed results")
            return results_path(self.results or ""), True
        out = args.out if args.out is not None else self.default
        return (None if out is None else Path(out)), bool(args.overwrite)

    def prepare(self, args: argparse.Namespace) -> Path | None:
        """The checked output path of ``args`` (:func:`prepare_out`; None where there is no output)."""
        path, overwrite = self.path(args)
        return None if path is None else prepare_out(path, overwrite, file=self.file, suffixes=self.suffixes)
