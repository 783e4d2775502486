"""What a scrub has committed, so that a killed run continues where it stopped.

A :class:`Journal` is a JSON Lines file in ``OUT/.wmark-scrub/``, one line per finished unit (a
chunk of files or a shard): its index, name, manifest rows and the output files written for it
(relative path and size). A unit's outputs are written atomically *before* its line is appended and
fsynced, so a line means the unit is done; a kill leaves at most one torn last line, which is
ignored (that unit is redone, rewriting the same bytes). On resume a unit counts as done only when
its line is whole and its outputs are still there with the recorded sizes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence


class Journal:
    """The committed units of one pass (``path``: the JSON Lines file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries: dict[int, dict[str, Any]] = {}
        self._torn = False
        if not self.path.is_file():
            return
        with open(self.path, "rb") as fb:
            blob = fb.read()
        self._torn = bool(blob) and not blob.endswith(b"\n")
        for line in blob.split(b"\n"):
            try:
                e = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if isinstance(e, dict) and isinstance(e.get("unit"), int) and isinstance(e.get("rows"), list):
                self.entries[e["unit"]] = e

    def done(self, unit: int, out: Path | None = None) -> bool:
        """Whether ``unit`` is committed (and, given ``out``, its outputs are there with their sizes)."""
        e = self.entries.get(unit)
        if e is None:
            return False
        if out is None:
            return True
        for rel, size in e.get("outputs", []):
            p = out / rel
            if p.is_symlink() or not p.is_file() or p.stat().st_size != size:
                return False
        return True

    def rows(self, units: Iterable[int]) -> list[dict]:
        """The manifest rows of ``units``, in the order given."""
        return [r for u in units for r in self.entries[u]["rows"]]

    def commit(self, unit: int, name: str, rows: Sequence[dict], outputs: Sequence[tuple[str, int]]) -> None:
        """Append the line of a finished unit (after its outputs are on disk) and fsync it."""
        e = {"unit": unit, "name": name, "rows": list(rows), "outputs": [list(o) for o in outputs]}
        line = json.dumps(e, separators=(",", ":"), allow_nan=False)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(("\n" if self._torn else "") + line + "\n")
            self._torn = False
            f.flush()
            os.fsync(f.fileno())
        self.entries[unit] = e
