"""What a writing run has finished, so that a re-run continues instead of starting over.

A :class:`Manifest` is a JSON Lines file in the output folder (``.wmark-manifest.jsonl``), one line
per finished output: its name, its sha256, the sha256 of its input and the parameters that made it
(command, key fingerprint, payload, model …). Each line is appended and fsynced after the output
itself was written atomically, so a killed run leaves at most one torn last line, which is ignored.
An output counts as done only when its line matches the input and parameters of the new run and the
file on disk still has the recorded digest: a file that was edited, replaced or made with another
key is never mistaken for finished work.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from wmark.assets import sha256_file

MANIFEST_NAME = ".wmark-manifest.jsonl"


class Manifest:
    """The finished outputs of one folder. ``params`` are what must match for an output to be reused."""

    def __init__(self, folder: str | os.PathLike[str], params: Mapping[str, Any], name: str = MANIFEST_NAME):
        self.path = Path(folder) / name
        self.params = dict(params)
        self._done: dict[str, dict[str, Any]] = {}
        self._torn = False  # the last line lacks its newline: the next append starts a fresh line
        if self.path.is_file():
            with open(self.path, "rb") as fb:
                fb.seek(0, os.SEEK_END)
                if fb.tell():
                    fb.seek(-1, os.SEEK_END)
                    self._torn = fb.read(1) != b"\n"
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:  # a line cut short by a kill: that output is redone
                        continue
                    if isinstance(row, dict) and isinstance(row.get("output"), str):
                        self._done[row["output"]] = row

    def complete(self, dst: Path, src_sha256: str) -> bool:
        """Whether ``dst`` is finished work of a run with these parameters on this input."""
        row = self._done.get(dst.name)
        if row is None or row.get("input_sha256") != src_sha256 or row.get("params") != self.params:
            return False
        return dst.is_file() and not dst.is_symlink() and sha256_file(dst) == row.get("sha256")

    def record(self, dst: Path, src: Path, src_sha256: str, dst_sha256: str) -> None:
        """Append the line of a finished output (after the output itself is on disk)."""
        row = {"output": dst.name, "sha256": dst_sha256, "input": str(src), "input_sha256": src_sha256,
               "params": self.params}
        self._done[dst.name] = row
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(("\n" if self._torn else "") + json.dumps(row, sort_keys=True) + "\n")
            self._torn = False
            f.flush()
            os.fsync(f.fileno())
