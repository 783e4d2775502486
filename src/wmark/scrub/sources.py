"""Where a scrub's samples come from and where its outputs go: one class per input format, each
reading its input in *units* (the commit unit of a run) and writing each unit's output in the same
format and layout under the output folder, both as a stream.

    folder      a folder tree of images (recursive; ``wmark.assets.IMAGE_EXTS``), or of ``.txt`` files
                for text; sample id = the relative path; output = the same relative path under OUT
                (stripped text: a ``NAME.wmark_weights.json`` sidecar beside it). Every other file
                (captions, ``.json`` metadata: *sidecars*) is copied byte for byte, except that the
                sidecars of a *group* (the files of one folder sharing the name up to its first dot,
                ``img1.jpg`` with ``img1.txt`` and ``img1.jpg.json``) are left out with its images when
                every one of them is. unit = about ``chunk_size`` files, whole groups, in order
    webdataset  ``.tar`` shards (a file or a folder tree of them); a sample = the consecutive members
                sharing a key (the member path up to the first dot of its file name, as webdataset
                groups them); each of its members with an image suffix (text: ``.txt``) is scrubbed,
                the other members travel with it byte for byte. unit = one shard; id = ``SHARD/KEY``
                (a sample with several images: ``SHARD/KEY.EXT`` for each, ``EXT`` the member's suffix
                after the key); output = the shard rebuilt: a sample is left out whole where any of
                its images is dropped (or skipped as an error), a stripped image replaces its member,
                stripped text adds a ``KEY.wmark_weights.json`` member
    parquet     ``.parquet`` files with an image-bytes column (binary, or a struct with a ``bytes``
                field as Hugging Face writes them) or a text column; unit = one file; id =
                ``FILE/ROW`` (0-based); output = the file with dropped rows left out, stripped cells
                replaced and, for stripped text, a ``wmark_weights`` list column
    jsonl       JSON Lines with a text field; unit = one file; id = ``FILE/LINE`` (1-based); output =
                the file with dropped lines left out and a ``wmark_weights`` field on stripped ones

Streaming: :meth:`Source.open` gives a :class:`UnitIO` whose :meth:`~UnitIO.items` reads the unit
sample by sample (a shard member by member, a parquet file batch by batch, JSON Lines line by line)
and whose :meth:`~UnitIO.put` writes each decided sample to the unit's temporary output at once, so
a run holds only the samples in flight, never a whole shard. :meth:`~UnitIO.finish` makes the output
whole (fsync, then rename over the final name); :meth:`~UnitIO.close` before that removes it.

Unchanged samples are copied byte for byte (lines, members and cells as read); a shard or parquet
file where nothing changed is copied whole. Every output appears atomically (a temporary
``.NAME.XXXX.tmp`` beside it, fsync, rename, as :func:`wmark.assets.write_atomic`).

The registry :data:`SOURCES` maps a format name to its class (``"module:attr"``); :func:`infer_format`
picks one from the input's suffixes; :func:`open_source` builds it.
"""
from __future__ import annotations

import copy
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from wmark.assets import IMAGE_EXTS, write_atomic

#: input format name -> "module:attr" of its Source class
SOURCES: dict[str, str] = {
    "folder": "wmark.scrub.sources:FolderSource",
    "webdataset": "wmark.scrub.sources:TarSource",
    "parquet": "wmark.scrub.sources:ParquetSource",
    "jsonl": "wmark.scrub.sources:JsonlSource",
}

TEXT_EXTS: frozenset[str] = frozenset({".txt"})
#: suffix of the de-bias weights written beside (folder) or with (webdataset) a stripped text
WEIGHTS_SUFFIX = ".wmark_weights.json"
#: column (parquet) / field (jsonl) that holds the de-bias weights of a stripped text
WEIGHTS_FIELD = "wmark_weights"
#: rows per record batch read from a parquet file
PARQUET_READ_ROWS = 1024


@dataclass
class Item:
    """One sample as read: ``id``, ``data`` (image bytes or text), ``ext`` (format hint), ``error``
    (why the reader could not make a sample of it), ``ref`` (what the source needs to write it) and
    ``group`` (items of one webdataset sample share it: a batch never splits them)."""

    id: str
    data: bytes | str | None
    ext: str = ""
    error: str | None = None
    ref: Any = None
    group: Any = None


@dataclass(frozen=True)
class Unit:
    """One commit unit of a source: ``index`` in the run, ``name`` (for messages), ``files`` (the
    relative paths it reads) and ``size`` (their bytes)."""

    index: int
    name: str
    files: tuple[str, ...]
    size: int = 0


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative posix path, stat) of every regular file under ``root``, hidden names and folder
    links skipped, in sorted order per folder."""
    stack = [""]
    while stack:
        rel = stack.pop()
        d = root / rel if rel else root
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except NotADirectoryError:
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            r = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir(follow_symlinks=False):
                subdirs.append(r)
            elif e.is_file():
                yield r, e.stat()
        stack.extend(reversed(subdirs))


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _raw(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _weights_json(w) -> bytes:
    return (json.dumps(list(w), separators=(",", ":")) + "\n").encode("utf-8")


def emitted(row: dict, on_error: str) -> bool:
    """Whether a sample goes to the output: it has an output, or it is a bad sample to copy."""
    return row["data_out"] is not None or (row["action"] == "error" and on_error == "copy")


def changed(row: dict) -> bool:
    """Whether a sample's output differs from its input (by digest: the row may have come back from
    another process, so object identity says nothing; an unchanged sample's ``data_out`` may be an
    empty placeholder, the input is written instead)."""
    return row["data_out"] is not None and row["sha256_out"] != row["sha256_in"]


def same_out(row: dict, on_error: str) -> bool:
    """The sample goes out exactly as it came in."""
    return emitted(row, on_error) and not changed(row) and row["weights"] is None


class AtomicFile:
    """An output file written in pieces and seen whole or not at all: a temporary ``.NAME.XXXX.tmp``
    beside ``dst`` (what :func:`wmark.assets.sweep_temp_files` removes after a kill), then fsync and
    ``os.replace`` in :meth:`commit`; :meth:`abort` removes it."""

    def __init__(self, dst: Path) -> None:
        from wmark.assets import _umask

        self.dst = Path(dst)
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.dst.name}.", suffix=".tmp", dir=self.dst.parent)
        self.f = os.fdopen(fd, "w+b")
        self._mode = 0o666 & ~_umask()

    def write(self, data: bytes) -> int:
        return self.f.write(data)

    def copy_of(self, path: Path) -> None:
        """Make the file a byte-for-byte copy of ``path`` (whatever was written so far is discarded)."""
        self.f.seek(0)
        self.f.truncate()
        with open(path, "rb") as src:
            shutil.copyfileobj(src, self.f, 1 << 20)

    def commit(self) -> int:
        """fsync, rename over ``dst``; returns the size."""
        self.f.flush()
        os.fsync(self.f.fileno())
        size = self.f.tell()
        self.f.close()
        os.chmod(self.tmp, self._mode)
        os.replace(self.tmp, self.dst)
        self.tmp = None
        return size

    def abort(self) -> None:
        if self.tmp is not None:
            self.f.close()
            Path(self.tmp).unlink(missing_ok=True)
            self.tmp = None


class UnitIO:
    """One unit being read and (with ``out``) written; see the module doc. Use as a context manager,
    or call :meth:`close`. ``put`` takes the rows in the order :meth:`items` gave the samples
    (``row``: the scrubber's output row, with ``data_out``, ``action``, ``sha256_*``, ``weights``) and
    may correct a row in place (a webdataset image left out with its sample becomes "dropped"); the
    items of one ``group`` come in one batch, so their rows are all there before any is recorded."""

    def __init__(self, src: "Source", unit: Unit, out: Path | None, on_error: str, weights: bool = False) -> None:
        self.src, self.unit, self.out, self.on_error, self.weights = src, unit, out, on_error, weights
        self.outputs: list[tuple[str, int]] = []
        self.finished = False

    def items(self) -> Iterator[Item]:  # pragma: no cover - interface
        raise NotImplementedError

    def put(self, item: Item, row: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> list[tuple[str, int]]:
        """Make the unit's outputs whole; returns (relative path, size) per file written."""
        self.finished = True
        return self.outputs

    def close(self) -> None:
        """Drop an output not yet finished (after an error)."""

    def __enter__(self) -> "UnitIO":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _put_file(self, rel: str, data: bytes) -> None:
        dst = self.out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dst, data)
        self.outputs.append((rel, len(data)))


class _OneFileIO(UnitIO):
    """A unit that is one input file rebuilt into one output file (shard, parquet, JSON Lines): the
    output is streamed into an :class:`AtomicFile`; where every sample went out unchanged (and
    ``whole_copy``), the input file is copied instead of the rebuilt one."""

    whole_copy = True

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.rel = self.unit.files[0]
        self.path = self.src.path(self.rel)
        self.file: AtomicFile | None = None
        self.same = True  # every sample so far went out as it came in

    def _file(self) -> AtomicFile:
        if self.file is None:
            self.file = AtomicFile(self.out / self.rel)
        return self.file

    def _commit(self, copy_whole: bool, write_nothing: bool = False) -> list[tuple[str, int]]:
        self.finished = True
        if self.out is None:
            return []
        if write_nothing:
            if self.file is not None:
                self.file.abort()
            return []
        f = self._file()
        if copy_whole:
            f.copy_of(self.path)
        self.outputs.append((self.rel, f.commit()))
        return self.outputs

    def close(self) -> None:
        if self.file is not None and not self.finished:
            self.file.abort()


class Source:
    """The interface every input format implements (see the module doc)."""

    format = ""
    #: the input file suffixes of the format (per kind)
    suffixes: dict[str, frozenset[str]] = {}

    def __init__(self, root: str | os.PathLike[str], kind: str | None = None, column: str | None = None,
                 chunk_size: int = 256) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"no such file or folder: {self.root}")
        self.column = column
        self.chunk_size = int(chunk_size)
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.kind = kind or self._infer_kind()
        if self.kind not in ("image", "text"):
            raise ValueError(f"kind must be image or text, got {self.kind!r}")
        if self.kind not in self.suffixes:
            raise ValueError(f"{self.format} inputs hold {' or '.join(self.suffixes)}, not {self.kind}")
        self._files = self._list()
        if not any(self._is_input(r) for r, _, _ in self._files):
            want = ", ".join(sorted(self.suffixes[self.kind]))
            raise ValueError(f"{self.root}: no {self.format} input files ({want})")

    # -- listing --------------------------------------------------------------------------------------
    def _infer_kind(self) -> str:
        return next(iter(self.suffixes))

    def _is_input(self, rel: str) -> bool:
        return _suffix(rel) in self.suffixes[self.kind]

    def _list(self) -> list[tuple[str, int, int]]:
        """(relative path, size, mtime_ns) of the input files, in order."""
        if self.root.is_file():
            st = self.root.stat()
            return [(self.root.name, st.st_size, st.st_mtime_ns)] if self._is_input(self.root.name) else []
        return sorted((r, st.st_size, st.st_mtime_ns) for r, st in _walk(self.root) if self._is_input(r))

    def path(self, rel: str) -> Path:
        """The input file of relative path ``rel``."""
        return self.root if self.root.is_file() else self.root / rel

    def listing(self) -> list[tuple[str, int, int]]:
        """What the run's resume check compares: (relative path, size, mtime_ns) per input file."""
        return list(self._files)

    def units(self) -> list[Unit]:
        """The commit units, in order (default: one per input file)."""
        return [Unit(i, r, (r,), s) for i, (r, s, _) in enumerate(self._files)]

    def total(self) -> int | None:
        """The number of samples where cheap to know (the progress bar's total)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "kind": self.kind, "column": self.column, "files": len(self._files)}

    def open(self, unit: Unit, out: Path | None = None, on_error: str = "copy", weights: bool = False) -> UnitIO:
        """The :class:`UnitIO` of ``unit``: read it, and with ``out`` write its output there.
        ``weights``: stripped texts may carry de-bias weights (a parquet output gets the column)."""
        return self.io_class(self, unit, out, on_error, weights)

    io_class: type[UnitIO] = UnitIO


# -- folder tree ---------------------------------------------------------------------------------------------
def _group(rel: str) -> str:
    """A folder file's group: its folder and its name up to the first dot."""
    d, _, base = rel.rpartition("/")
    stem = base.split(".", 1)[0]
    return f"{d}/{stem}" if d else stem


class _FolderIO(UnitIO):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.group_out: dict[str, bool] = {}  # group -> whether any of its samples went out
        self.written: set[str] = set()

    def items(self) -> Iterator[Item]:
        for rel in self.unit.files:
            if not self.src._is_input(rel):
                continue
            self.group_out.setdefault(_group(rel), False)
            try:
                yield Item(rel, self.src.path(rel).read_bytes(), _suffix(rel))
            except OSError as exc:
                yield Item(rel, None, _suffix(rel), error=f"cannot read ({exc.strerror or exc})")

    def put(self, item: Item, row: dict) -> None:
        if self.out is None or not emitted(row, self.on_error):
            return
        data = row["data_out"] if changed(row) else item.data
        if data is None:  # unreadable: nothing to copy
            return
        self.group_out[_group(item.id)] = True
        self._put_file(item.id, _raw(data))
        self.written.add(item.id)
        if row["weights"] is not None:
            self._put_file(item.id + WEIGHTS_SUFFIX, _weights_json(row["weights"]))
            self.written.add(item.id + WEIGHTS_SUFFIX)

    def finish(self) -> list[tuple[str, int]]:
        if self.out is not None:
            for rel in self.unit.files:  # the sidecars: byte for byte, unless their group's samples all went
                if self.src._is_input(rel) or rel in self.written or not self.group_out.get(_group(rel), True):
                    continue
                try:
                    data = self.src.path(rel).read_bytes()
                except OSError as exc:
                    import warnings

                    warnings.warn(f"scrub: sidecar {rel} not copied ({exc.strerror or exc})", stacklevel=2)
                    continue
                self._put_file(rel, data)
        return super().finish()


class FolderSource(Source):
    """A folder tree of image files (or ``.txt`` files for text) and their sidecars; see the module doc."""

    format = "folder"
    suffixes = {"image": frozenset(IMAGE_EXTS), "text": TEXT_EXTS}
    io_class = _FolderIO

    def _infer_kind(self) -> str:
        if self.root.is_file():
            return "text" if _suffix(self.root.name) in TEXT_EXTS else "image"
        for r, _ in _walk(self.root):
            if _suffix(r) in IMAGE_EXTS:
                return "image"
        return "text"

    def _list(self) -> list[tuple[str, int, int]]:
        """Every file (samples and sidecars), a group's files together."""
        if self.root.is_file():
            return super()._list()
        return sorted(((r, st.st_size, st.st_mtime_ns) for r, st in _walk(self.root)),
                      key=lambda f: (_group(f[0]), f[0]))

    def units(self) -> list[Unit]:
        n = self.chunk_size
        out: list[Unit] = []
        cur: list[tuple[str, int, int]] = []

        def close() -> None:
            if cur:
                out.append(Unit(len(out), f"{cur[0][0]} .. ({len(cur)} files)", tuple(f[0] for f in cur),
                                sum(f[1] for f in cur)))
                cur.clear()

        for k, f in enumerate(self._files):
            cur.append(f)
            nxt = self._files[k + 1][0] if k + 1 < len(self._files) else None
            if len(cur) >= n and (nxt is None or _group(nxt) != _group(f[0])):
                close()
        close()
        return out

    def total(self) -> int:
        return sum(self._is_input(f[0]) for f in self._files)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "samples": self.total()}


# -- webdataset tar shards ------------------------------------------------------------------------------------
def wds_key(name: str) -> tuple[str, str]:
    """(key, extension) of a webdataset member: ``dir/abc.seg.jpg`` -> (``dir/abc``, ``seg.jpg``)."""
    d, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{d}/{stem}" if d else stem), ext


@dataclass(eq=False)
class _Sample:
    """The members of one webdataset sample: [TarInfo, bytes | None, error | None] each, and the
    rows of its scrubbed members as they come back."""

    key: str
    members: list = field(default_factory=list)
    scrubbed: list = field(default_factory=list)  # member indices (None: the sample has none)
    rows: dict = field(default_factory=dict)


def _info(m: tarfile.TarInfo, size: int, name: str | None = None) -> tarfile.TarInfo:
    """A copy of a member's header for ``size`` bytes of data (and another name)."""
    info = copy.copy(m)
    info.pax_headers = dict(m.pax_headers)
    info.size = size
    if name is not None:
        info.name = name
    return info


class _TarIO(_OneFileIO):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.tar: tarfile.TarFile | None = None
        self.broken = False

    def _samples(self) -> Iterator[tuple[_Sample | None, str | None]]:
        """(sample, None) per sample in order, then (None, why) where the shard is cut short."""
        cur: _Sample | None = None
        n = 0
        problem = None
        try:
            with tarfile.open(self.path, "r:") as tf:
                while True:
                    m = tf.next()
                    if m is None:
                        break
                    tf.members.clear()  # the listing is not kept: a shard streams in bounded memory
                    if not m.isfile():
                        continue
                    key, _ = wds_key(m.name)
                    if cur is not None and cur.key != key:
                        yield cur, None
                        cur = None
                    if cur is None:
                        cur = _Sample(key)
                    n += 1
                    try:
                        f = tf.extractfile(m)
                        data = f.read() if f is not None else b""
                        if len(data) != m.size:
                            raise tarfile.ReadError("unexpected end of data")
                        cur.members.append([m, data, None])
                    except (tarfile.TarError, OSError, EOFError) as exc:
                        cur.members.append([m, None, f"member {m.name}: {exc}"])
                        problem = f"shard truncated or corrupt at member {m.name} ({exc})"
                        break
        except (tarfile.TarError, OSError, EOFError) as exc:
            problem = f"shard truncated or corrupt after {n} members ({exc})"
        if cur is not None:
            yield cur, None
        if problem:
            yield None, problem

    def _main(self, ext: str) -> bool:
        last = "." + ext.rsplit(".", 1)[-1].lower()
        return last in (IMAGE_EXTS if self.src.kind == "image" else TEXT_EXTS)

    def items(self) -> Iterator[Item]:
        for smp, problem in self._samples():
            if smp is None:
                self.broken = True
                yield Item(f"{self.rel}/#end", None, error=problem, ref=None)
                continue
            sid = f"{self.rel}/{smp.key}"
            bad = next((e for _, _, e in smp.members if e), None)
            smp.scrubbed = [j for j, (m, _, _) in enumerate(smp.members) if self._main(wds_key(m.name)[1])]
            if not smp.scrubbed:
                found = ", ".join(wds_key(m.name)[1] for m, _, _ in smp.members)
                smp.scrubbed = [None]
                yield Item(sid, None, error=bad or f"no {self.src.kind} member in the sample ({found})",
                           ref=(smp, None))
                continue
            several = len(smp.scrubbed) > 1
            for j in smp.scrubbed:
                m, data, _ = smp.members[j]
                ext = wds_key(m.name)[1]
                yield Item(f"{sid}.{ext}" if several else sid, data, "." + ext.rsplit(".", 1)[-1].lower(),
                           error=bad, ref=(smp, j), group=smp if several else None)

    def put(self, item: Item, row: dict) -> None:
        if item.ref is None:  # the shard's cut-short end: nothing to write
            return
        smp, j = item.ref
        smp.rows[j] = row
        if len(smp.rows) < len(smp.scrubbed):
            return
        rows = [smp.rows[j] for j in smp.scrubbed]
        by_member = dict(zip(smp.scrubbed, rows))
        smp.rows = {}
        if not all(same_out(r, self.on_error) for r in rows):
            self.same = False
        if self.out is None:  # reading only (report, a detection pass): the rows stand as they are
            return
        whole = all(emitted(r, self.on_error) for r in rows)
        if not whole:  # a dropped (or skipped) image takes its whole sample along: the rows say so
            for r in rows:
                if r["action"] in ("kept", "stripped"):
                    r["action"] = "dropped"
                r["data_out"] = r["sha256_out"] = None
        tar = self._tar()
        if whole:
            for k, (m, data, _) in enumerate(smp.members):
                if data is None:
                    continue
                r = by_member.get(k)
                if r is not None and changed(r):
                    data = _raw(r["data_out"])
                tar.addfile(_info(m, len(data)), _bytes_io(data))
                if r is not None and r["weights"] is not None:
                    w = _weights_json(r["weights"])
                    tar.addfile(_info(m, len(w), wds_key(m.name)[0] + WEIGHTS_SUFFIX), _bytes_io(w))
        smp.members = []

    def _tar(self) -> tarfile.TarFile:
        if self.tar is None:
            self.tar = tarfile.open(fileobj=self._file().f, mode="w", format=tarfile.PAX_FORMAT)
        return self.tar

    def finish(self) -> list[tuple[str, int]]:
        whole = self.same and not self.broken
        if self.out is not None and not whole:
            self._tar()
        if self.tar is not None:
            self.tar.close()  # the end-of-archive blocks; the file stays open
            self.tar = None
        return self._commit(copy_whole=whole)


def _bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


class TarSource(Source):
    """Webdataset ``.tar`` shards; see the module doc."""

    format = "webdataset"
    suffixes = {"image": frozenset({".tar"}), "text": frozenset({".tar"})}
    io_class = _TarIO

    def _infer_kind(self) -> str:
        """image where the first shard's first members include an image, else text."""
        first = self.root if self.root.is_file() else next(
            (self.root / r for r, _ in _walk(self.root) if _suffix(r) == ".tar"), None)
        if first is None:
            return "image"
        try:
            with tarfile.open(first, "r:") as tf:
                for k, m in enumerate(tf):
                    if m.isfile() and "." + wds_key(m.name)[1].rsplit(".", 1)[-1].lower() in IMAGE_EXTS:
                        return "image"
                    if k > 64:
                        break
        except (tarfile.TarError, OSError):
            return "image"
        return "text"


# -- parquet --------------------------------------------------------------------------------------------------
def _pq():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the environment
        raise ValueError("parquet needs pyarrow: pip install pyarrow") from None
    return pa, pq


IMAGE_COLUMN_NAMES = ("image", "img", "jpg", "jpeg", "png", "webp", "bytes", "data")
_CODECS = ("snappy", "gzip", "brotli", "zstd", "lz4", "none", "uncompressed")


class _ParquetIO(_OneFileIO):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.unreadable = False
        self.broken = False
        self.writer = None
        self.pending: list = []  # output record batches not yet written as a row group
        self.pending_rows = 0
        self.rg = None
        self.codec = "snappy"
        self.schema = None
        self.col = None

    def items(self) -> Iterator[Item]:
        from wmark.scrub.scrubber import one_line

        pa, pq = _pq()
        try:
            pf = pq.ParquetFile(self.path)
            schema, meta = pf.schema_arrow, pf.metadata
            if meta.num_row_groups:
                self.rg = meta.row_group(0).num_rows or None
                if meta.num_columns:
                    self.codec = meta.row_group(0).column(0).compression.lower()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            self.unreadable = True
            yield Item(f"{self.rel}/#file", None, error=f"unreadable parquet file ({one_line(exc)})")
            return
        col = self.src._pick_column(schema)  # no such column: a usage error, the run stops
        batches = pf.iter_batches(batch_size=PARQUET_READ_ROWS, use_threads=False)
        self.col, self.schema = col, schema
        row = 0
        while True:
            try:
                rb = next(batches)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001
                self.broken = True
                yield Item(f"{self.rel}/#end", None, error=f"parquet file corrupt after {row} rows ({one_line(exc)})")
                return
            holder = {"batch": rb, "rows": [None] * rb.num_rows, "left": rb.num_rows}
            for i, v in enumerate(rb.column(col).to_pylist()):
                ext = ""
                if isinstance(v, dict):
                    ext = _suffix(str(v.get("path") or ""))
                    v = v.get("bytes")
                err = None if v is not None else f"null value in column {col!r}"
                yield Item(f"{self.rel}/{row}", v, ext, error=err, ref=(holder, i))
                row += 1

    def _out_schema(self):
        pa, _ = _pq()
        schema = self.schema
        if self.weights:
            if WEIGHTS_FIELD in schema.names:
                schema = schema.remove(schema.get_field_index(WEIGHTS_FIELD))
            schema = schema.append(pa.field(WEIGHTS_FIELD, pa.list_(pa.float32())))
        return schema

    def put(self, item: Item, row: dict) -> None:
        if item.ref is None:
            return
        holder, i = item.ref
        holder["rows"][i] = row
        holder["left"] -= 1
        if not same_out(row, self.on_error):
            self.same = False
        if holder["left"] or self.out is None:
            return
        pa, pq = _pq()
        rb, rows = holder["batch"], holder["rows"]
        holder["batch"] = holder["rows"] = None
        keep = [k for k, r in enumerate(rows) if emitted(r, self.on_error)]
        new = rb.take(pa.array(keep, type=pa.int64()))
        cells = {j: rows[k]["data_out"] for j, k in enumerate(keep) if changed(rows[k])}
        cols = list(new.columns)
        names = list(new.schema.names)
        if cells:
            ci = names.index(self.col)
            vals = cols[ci].to_pylist()
            for j, v in cells.items():
                vals[j] = {**vals[j], "bytes": v} if isinstance(vals[j], dict) else v
            cols[ci] = pa.array(vals, type=new.schema.field(ci).type)
        if self.weights:
            if WEIGHTS_FIELD in names:
                k = names.index(WEIGHTS_FIELD)
                del cols[k], names[k]
            cols.append(pa.array([rows[k]["weights"] for k in keep], type=pa.list_(pa.float32())))
        out = pa.RecordBatch.from_arrays(cols, schema=self._out_schema())
        self.pending.append(out)
        self.pending_rows += out.num_rows
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
        pa, pq = _pq()
        if self.writer is None:
            opts: dict[str, Any] = {"compression": self.codec if self.codec in _CODECS else "snappy"}
            self.writer = pq.ParquetWriter(self._file().f, self._out_schema(), **opts)
        rg = self.rg or max(1, self.pending_rows)
        while self.pending and (self.pending_rows >= rg or final):
            t = pa.Table.from_batches(self.pending, schema=self._out_schema())
            take = min(rg, t.num_rows)
            if take:
                self.writer.write_table(t.slice(0, take), row_group_size=rg)
            rest = t.slice(take)
            self.pending = rest.to_batches() if rest.num_rows else []
            self.pending_rows = rest.num_rows

    def finish(self) -> list[tuple[str, int]]:
        if self.unreadable:  # copied as it is, or left out
            return self._commit(copy_whole=True, write_nothing=self.on_error != "copy")
        whole = self.same and not self.broken
        if self.out is not None and self.schema is not None and (not whole or self.writer is not None):
            self._flush(final=True)
            self.writer.close()  # the footer; the file stays open
            self.writer = None
        return self._commit(copy_whole=whole or self.schema is None)


class ParquetSource(Source):
    """Parquet files with an image-bytes or text column; see the module doc."""

    format = "parquet"
    suffixes = {"image": frozenset({".parquet"}), "text": frozenset({".parquet"})}
    io_class = _ParquetIO

    @staticmethod
    def _col_kind(t) -> str | None:
        pa, _ = _pq()
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return "image"
        if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0:
            return "image"
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return "text"
        return None

    def _schema(self):
        _, pq = _pq()
        first = self.root if self.root.is_file() else next(
            (self.root / r for r, _ in _walk(self.root) if _suffix(r) == ".parquet"), None)
        if first is None:
            return None
        return pq.read_schema(first)

    def _infer_kind(self) -> str:
        schema = self._schema()
        if schema is None:
            return "image"
        if self.column:
            if self.column not in schema.names:
                raise ValueError(f"{self.root}: no column {self.column!r} (columns: {', '.join(schema.names)})")
            k = self._col_kind(schema.field(self.column).type)
            if k is None:
                raise ValueError(f"column {self.column!r} is {schema.field(self.column).type}, not image bytes "
                                 "or text")
            return k
        kinds = [self._col_kind(f.type) for f in schema]
        return "image" if "image" in kinds else "text"

    def _pick_column(self, schema) -> str:
        if self.column:
            if self.column not in schema.names:
                raise ValueError(f"no column {self.column!r} (columns: {', '.join(schema.names)})")
            if self._col_kind(schema.field(self.column).type) != self.kind:
                raise ValueError(f"column {self.column!r} is {schema.field(self.column).type}, not {self.kind}")
            return self.column
        fits = [f.name for f in schema if self._col_kind(f.type) == self.kind]
        pref = IMAGE_COLUMN_NAMES if self.kind == "image" else ("text", "content", "document")
        for name in pref:
            if name in fits:
                return name
        if len(fits) == 1:
            return fits[0]
        raise ValueError(f"pass --column: {len(fits)} {self.kind} columns "
                         f"({', '.join(fits) or 'none'}) in {', '.join(schema.names)}")

    def total(self) -> int | None:
        _, pq = _pq()
        try:
            return sum(pq.ParquetFile(self.path(r)).metadata.num_rows for r, _, _ in self._files)
        except Exception:  # noqa: BLE001 - a corrupt file is reported when it is read
            return None

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        schema = self._schema()
        d["column"] = self._pick_column(schema) if schema is not None else self.column
        return d


# -- JSON Lines -----------------------------------------------------------------------------------------------
class _JsonlIO(_OneFileIO):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.tail: list[bytes] = []  # blank lines after the last document

    def items(self) -> Iterator[Item]:
        fld = self.src.column or "text"
        blanks: list[bytes] = []
        with open(self.path, "rb") as f:
            for n, ln in enumerate(f, 1):  # JSON Lines ends lines at LF (a CR before it stays in the line)
                body = ln.rstrip(b"\r\n")
                if not body.strip():
                    blanks.append(ln)
                    continue
                sid = f"{self.rel}/{n}"
                ref = (ln, None, blanks)
                blanks = []
                try:
                    obj = json.loads(body)
                except ValueError as exc:
                    yield Item(sid, body, ".txt", error=f"invalid JSON ({' '.join(str(exc).split())})", ref=ref)
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get(fld), str):
                    what = "not a JSON object" if not isinstance(obj, dict) else (
                        f"no {fld!r} field" if fld not in obj else f"field {fld!r} is not a string")
                    yield Item(sid, body, ".txt", error=what, ref=ref)
                    continue
                yield Item(sid, obj[fld], ".txt", ref=(ln, obj, ref[2]))
        self.tail = blanks

    def put(self, item: Item, row: dict) -> None:
        if not same_out(row, self.on_error):
            self.same = False
        if self.out is None:
            return
        ln, obj, blanks = item.ref
        f = self._file()
        for b in blanks:
            f.write(b)
        if not emitted(row, self.on_error):
            return
        if row["weights"] is not None and obj is not None:
            end = ln[len(ln.rstrip(b"\r\n")):]
            f.write(json.dumps({**obj, WEIGHTS_FIELD: row["weights"]}, ensure_ascii=False).encode("utf-8") + end)
        else:
            f.write(ln)

    def finish(self) -> list[tuple[str, int]]:
        if self.out is not None:
            f = self._file()
            for b in self.tail:
                f.write(b)
        return self._commit(copy_whole=False)  # unchanged lines are the input's bytes already


class JsonlSource(Source):
    """JSON Lines files, one document per line with a text field (``column``, default "text")."""

    format = "jsonl"
    suffixes = {"text": frozenset({".jsonl", ".ndjson"})}
    io_class = _JsonlIO

    def _infer_kind(self) -> str:
        return "text"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "column": self.column or "text"}


# -- choosing a source ------------------------------------------------------------------------------------------
def source_class(fmt: str) -> type[Source]:
    """The Source class registered under ``fmt`` (ValueError listing the formats otherwise)."""
    from wmark._lazy import import_attr

    if fmt not in SOURCES:
        raise ValueError(f"unknown input format {fmt!r}; choose from {', '.join(SOURCES)}")
    return import_attr(SOURCES[fmt])


def infer_format(path: str | os.PathLike[str], kind: str | None = None) -> str:
    """The input format of ``path`` from its suffixes: a file by its own; a folder by the files in
    its tree (ValueError where they fit several formats or none: pass ``--format``)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    classes = {name: source_class(name) for name in SOURCES}

    def formats_of(suffix: str) -> set[str]:
        return {n for n, c in classes.items()
                if any(suffix in s for k, s in c.suffixes.items() if kind is None or k == kind)}

    if p.is_file():
        found = formats_of(_suffix(p.name))
        if len(found) == 1:
            return found.pop()
        raise ValueError(f"{p}: cannot tell the input format from its name; pass --format "
                         f"({', '.join(SOURCES)})")
    seen: dict[str, int] = {}
    for r, _ in _walk(p):
        for f in formats_of(_suffix(r)):
            seen[f] = seen.get(f, 0) + 1
    if not seen:
        raise ValueError(f"{p}: no input files of any known format ({', '.join(SOURCES)})")
    if len(seen) > 1:
        raise ValueError(f"{p} holds files of several formats ({', '.join(f'{k}: {v}' for k, v in sorted(seen.items()))}); "
                         "pass --format")
    return next(iter(seen))


def open_source(path: str | os.PathLike[str], fmt: str | None = None, kind: str | None = None,
                column: str | None = None, chunk_size: int = 256) -> Source:
    """The Source for ``path``: ``fmt`` or the inferred format, ``kind`` or the format's guess."""
    fmt = fmt or infer_format(path, kind)
    return source_class(fmt)(path, kind=kind, column=column, chunk_size=chunk_size)
