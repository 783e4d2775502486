"""What a scrub has committed, so that a killed run continues where it stopped.

A :class:`Journal` is a JSON Lines file in ``OUT/.wmark-scrub/``, appended as the run goes: a *rows*
record per scrubbed batch (``{"unit", "batch", "n", "rows"}``: the manifest rows of that batch) and
a *commit* record per finished unit (``{"unit", "name", "commit": rows, "outputs"}``: its row count
and the output files written for it, relative path and size). A unit's outputs are made whole
*before* its commit record is appended and fsynced (which makes its rows records durable too), so a
commit means the unit is done; a kill leaves at most one torn last line, which is ignored, and rows
records with no commit after them (that unit is redone, rewriting the same bytes). On resume a unit
counts as done only when it has a commit whose rows records are all there, and its outputs are still
there with the recorded sizes.

Memory stays bounded: the journal keeps only where each committed unit's rows lie in the file
(byte spans) and reads them back when asked (:meth:`Journal.rows`, :meth:`Journal.unit_rows`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence


class Journal:
    """The committed units of one pass (``path``: the JSON Lines file). ``entries`` maps a committed
    unit to ``{"name", "rows" (count), "outputs", "spans"}``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries: dict[int, dict[str, Any]] = {}
        self._pending: dict[int, list[tuple[int, int, int]]] = {}  # unit -> rows records since its batch 0
        self._fd: int | None = None
        self._rd = None
        self._size = 0
        torn = False
        if self.path.is_file():
            with open(self.path, "rb") as fb:
                pos = 0
                line = b""
                for line in fb:
                    self._scan(line, pos)
                    pos += len(line)
                self._size = pos
                torn = bool(line) and not line.endswith(b"\n")
        self._torn = torn
        self._open: dict[int, tuple[list, int]] = {}  # units being written: (spans, next batch)

    def _scan(self, line: bytes, pos: int) -> None:
        try:
            e = json.loads(line)
        except ValueError:  # a line cut short by a kill
            return
        if not isinstance(e, dict) or not isinstance(e.get("unit"), int):
            return
        u = e["unit"]
        if "batch" in e and isinstance(e.get("rows"), list):
            if e["batch"] == 0:
                self._pending[u] = []
            spans = self._pending.get(u)
            if spans is None or len(spans) != e["batch"]:
                self._pending.pop(u, None)  # a gap: this attempt's rows are not whole
                return
            spans.append((pos, len(line), len(e["rows"])))
        elif isinstance(e.get("commit"), int):
            spans = self._pending.pop(u, [])
            if sum(n for _, _, n in spans) == e["commit"]:
                self.entries[u] = {"name": e.get("name"), "rows": e["commit"], "outputs": e.get("outputs", []),
                                   "spans": spans}

    # -- reading --------------------------------------------------------------------------------------
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

    def count(self, unit: int) -> int:
        """The number of rows committed for ``unit``."""
        return self.entries[unit]["rows"]

    def unit_rows(self, unit: int) -> Iterator[dict]:
        """The manifest rows of a committed unit, in order, read back from the file."""
        if self._rd is None:
            self._rd = open(self.path, "rb")
        for pos, n, _ in self.entries[unit]["spans"]:
            self._rd.seek(pos)
            yield from json.loads(self._rd.read(n))["rows"]

    def rows(self, units: Iterable[int]) -> Iterator[dict]:
        """The manifest rows of ``units``, in the order given."""
        for u in units:
            yield from self.unit_rows(u)

    # -- writing --------------------------------------------------------------------------------------
    def _append(self, data: bytes, sync: bool = False) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
        if self._torn:
            self._write(b"\n")
            self._torn = False
        pos = self._size
        self._write(data)
        if sync:
            os.fsync(self._fd)
        return pos

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            k = os.write(self._fd, view)
            view = view[k:]
            self._size += k

    def add(self, unit: int, rows: Sequence[dict]) -> None:
        """Append the rows of the next batch of ``unit`` (not yet committed; not fsynced)."""
        spans, k = self._open.get(unit, ([], 0))
        line = (json.dumps({"unit": unit, "batch": k, "n": len(rows), "rows": list(rows)}, separators=(",", ":"),
                           allow_nan=False) + "\n").encode("utf-8")
        spans.append((self._append(line), len(line), len(rows)))
        self._open[unit] = (spans, k + 1)

    def commit(self, unit: int, name: str, outputs: Sequence[tuple[str, int]]) -> None:
        """Append the commit of a finished unit (after its outputs are on disk) and fsync."""
        spans, _ = self._open.pop(unit, ([], 0))
        n = sum(k for _, _, k in spans)
        e = {"unit": unit, "name": name, "commit": n, "outputs": [list(o) for o in outputs]}
        self._append((json.dumps(e, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8"), sync=True)
        self.entries[unit] = {"name": name, "rows": n, "outputs": e["outputs"], "spans": spans}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._rd is not None:
            self._rd.close()
            self._rd = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
