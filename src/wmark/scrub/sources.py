"""Where a scrub's samples come from and where its outputs go: one class per input format, each
reading its input in *units* (the commit unit of a run) and writing each unit's output in the same
format and layout under the output folder.

    folder      a folder tree of images (recursive; ``wmark.assets.IMAGE_EXTS``), or of ``.txt`` files
                for text; unit = ``chunk_size`` files in path order; sample id = the relative path;
                output = the same relative path under OUT (stripped text: a ``NAME.wmark_weights.json``
                sidecar beside it)
    webdataset  ``.tar`` shards (a file or a folder tree of them); a sample = the consecutive members
                sharing a key (the member path up to the first dot of its file name, as webdataset
                groups them); its image is the first member with an image suffix (text: ``.txt``);
                the other members travel with it. unit = one shard; id = ``SHARD/KEY``; output = the
                shard rebuilt (members of dropped samples left out; a stripped image replaces its
                member; stripped text adds a ``KEY.wmark_weights.json`` member)
    parquet     ``.parquet`` files with an image-bytes column (binary, or a struct with a ``bytes``
                field as Hugging Face writes them) or a text column; unit = one file; id =
                ``FILE/ROW`` (0-based); output = the file with dropped rows left out, stripped cells
                replaced and, for stripped text, a ``wmark_weights`` list column
    jsonl       JSON Lines with a text field; unit = one file; id = ``FILE/LINE`` (1-based); output =
                the file with dropped lines left out and a ``wmark_weights`` field on stripped ones

Unchanged samples are copied byte for byte (lines, members and cells as read); a unit where nothing
changed is copied whole. Every output file is written with :func:`wmark.assets.write_atomic`.

The registry :data:`SOURCES` maps a format name to its class (``"module:attr"``); :func:`infer_format`
picks one from the input's suffixes; :func:`open_source` builds it.
"""
from __future__ import annotations

import copy
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

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


@dataclass
class Item:
    """One sample as read: ``id``, ``data`` (image bytes or text), ``ext`` (format hint), ``error``
    (why the reader could not make a sample of it) and ``ref`` (what the source needs to write it)."""

    id: str
    data: bytes | str | None
    ext: str = ""
    error: str | None = None
    ref: Any = None


@dataclass
class Read:
    """What :meth:`Source.read` gives for one unit: its ``items`` and ``ctx``, what the source keeps
    to write the unit back (raw bytes, the table, the lines)."""

    unit: "Unit"
    items: list[Item]
    ctx: Any = None


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
        if not self._files:
            want = ", ".join(sorted(self.suffixes[self.kind]))
            raise ValueError(f"{self.root}: no {self.format} input files ({want})")

    # -- listing --------------------------------------------------------------------------------------
    def _infer_kind(self) -> str:
        return next(iter(self.suffixes))

    def _list(self) -> list[tuple[str, int, int]]:
        """(relative path, size, mtime_ns) of the input files, in order."""
        want = self.suffixes[self.kind]
        if self.root.is_file():
            st = self.root.stat()
            return [(self.root.name, st.st_size, st.st_mtime_ns)] if _suffix(self.root.name) in want else []
        return sorted((r, st.st_size, st.st_mtime_ns) for r, st in _walk(self.root) if _suffix(r) in want)

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

    # -- reading and writing ----------------------------------------------------------------------------
    def read(self, unit: Unit) -> Read:  # pragma: no cover - interface
        """The unit's samples, in order (a sample the reader cannot make is an Item with ``error``)."""
        raise NotImplementedError

    def write(self, read: Read, rows: Sequence[dict], out: Path, on_error: str
              ) -> list[tuple[str, int]]:  # pragma: no cover - interface
        """Write the unit's output under ``out`` from its scrubbed ``rows`` (one per item, with
        ``data_out``, ``action`` and ``weights``); returns (relative path, size) per file written."""
        raise NotImplementedError

    @staticmethod
    def _emit(row: dict, on_error: str) -> bool:
        """Whether a sample goes to the output: it has an output, or it is a bad sample to copy."""
        return row["data_out"] is not None or (row["action"] == "error" and on_error == "copy")

    @staticmethod
    def _changed(row: dict) -> bool:
        """Whether a sample's output differs from its input (by digest: the row may have come back
        from another process, so object identity says nothing)."""
        return row["data_out"] is not None and row["sha256_out"] != row["sha256_in"]

    @staticmethod
    def _unchanged(items: Sequence[Item], rows: Sequence[dict], on_error: str) -> bool:
        """Every sample goes out exactly as it came in."""
        return all(Source._emit(r, on_error) and not Source._changed(r) and r["weights"] is None
                   for r in rows)

    def _put(self, out: Path, rel: str, data: bytes) -> tuple[str, int]:
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dst, data)
        return rel, len(data)


# -- folder tree ---------------------------------------------------------------------------------------------
class FolderSource(Source):
    """A folder tree of image files (or ``.txt`` files for text); see the module doc."""

    format = "folder"
    suffixes = {"image": frozenset(IMAGE_EXTS), "text": TEXT_EXTS}

    def _infer_kind(self) -> str:
        if self.root.is_file():
            return "text" if _suffix(self.root.name) in TEXT_EXTS else "image"
        for r, _ in _walk(self.root):
            if _suffix(r) in IMAGE_EXTS:
                return "image"
        return "text"

    def units(self) -> list[Unit]:
        n = self.chunk_size
        out = []
        for i in range(0, len(self._files), n):
            files = self._files[i:i + n]
            out.append(Unit(len(out), f"{files[0][0]} .. ({len(files)} files)", tuple(f[0] for f in files),
                            sum(f[1] for f in files)))
        return out

    def total(self) -> int:
        return len(self._files)

    def read(self, unit: Unit) -> Read:
        items = []
        for rel in unit.files:
            try:
                items.append(Item(rel, self.path(rel).read_bytes(), _suffix(rel)))
            except OSError as exc:
                items.append(Item(rel, None, _suffix(rel), error=f"cannot read ({exc.strerror or exc})"))
        return Read(unit, items)

    def write(self, read, rows, out, on_error):
        written = []
        for it, r in zip(read.items, rows):
            if not self._emit(r, on_error):
                continue
            data = r["data_out"] if self._changed(r) else it.data
            if data is None:  # unreadable: nothing to copy
                continue
            written.append(self._put(out, it.id, data if isinstance(data, bytes) else data.encode("utf-8")))
            if r["weights"] is not None:
                written.append(self._put(out, it.id + WEIGHTS_SUFFIX, _weights_json(r["weights"])))
        return written


def _weights_json(w: Sequence[float]) -> bytes:
    return (json.dumps(list(w), separators=(",", ":")) + "\n").encode("utf-8")


# -- webdataset tar shards ------------------------------------------------------------------------------------
def wds_key(name: str) -> tuple[str, str]:
    """(key, extension) of a webdataset member: ``dir/abc.seg.jpg`` -> (``dir/abc``, ``seg.jpg``)."""
    d, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{d}/{stem}" if d else stem), ext


class TarSource(Source):
    """Webdataset ``.tar`` shards; see the module doc."""

    format = "webdataset"
    suffixes = {"image": frozenset({".tar"}), "text": frozenset({".tar"})}

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

    def _main(self, ext: str) -> bool:
        last = "." + ext.rsplit(".", 1)[-1].lower()
        return last in (IMAGE_EXTS if self.kind == "image" else TEXT_EXTS)

    def read(self, unit: Unit) -> Read:
        rel = unit.files[0]
        raw = self.path(rel).read_bytes()
        groups: list[tuple[str, list[list]]] = []  # (key, [[TarInfo, bytes | None, error], ...])
        problem = None
        try:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    key, _ = wds_key(m.name)
                    if not groups or groups[-1][0] != key:
                        groups.append((key, []))
                    try:
                        f = tf.extractfile(m)
                        data = f.read() if f is not None else b""
                        if len(data) != m.size:
                            raise tarfile.ReadError("unexpected end of data")
                        groups[-1][1].append([m, data, None])
                    except (tarfile.TarError, OSError, EOFError) as exc:
                        groups[-1][1].append([m, None, f"member {m.name}: {exc}"])
                        problem = f"shard truncated or corrupt at member {m.name} ({exc})"
                        break
        except (tarfile.TarError, OSError, EOFError) as exc:
            n = sum(len(g[1]) for g in groups)
            problem = f"shard truncated or corrupt after {n} members ({exc})"
        items = []
        for key, members in groups:
            main = next((j for j, (m, _, _) in enumerate(members) if self._main(wds_key(m.name)[1])), None)
            sid = f"{rel}/{key}"
            bad = next((e for _, _, e in members if e), None)
            if main is None:
                found = ", ".join(wds_key(m.name)[1] for m, _, _ in members)
                items.append(Item(sid, None, error=bad or f"no {self.kind} member in the sample ({found})",
                                  ref=(members, None)))
                continue
            m, data, _ = members[main]
            ext = "." + wds_key(m.name)[1].rsplit(".", 1)[-1].lower()
            items.append(Item(sid, data, ext, error=bad, ref=(members, main)))
        if problem:
            items.append(Item(f"{rel}/#end", None, error=problem, ref=None))
        return Read(unit, items, raw)

    def write(self, read, rows, out, on_error):
        rel = read.unit.files[0]
        if self._unchanged(read.items, rows, on_error) and all(it.ref is not None for it in read.items):
            return [self._put(out, rel, read.ctx)]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for it, r in zip(read.items, rows):
                if it.ref is None or not self._emit(r, on_error):
                    continue
                members, main = it.ref
                for j, (m, data, _) in enumerate(members):
                    if data is None:
                        continue
                    if j == main and self._changed(r):
                        data = _raw(r["data_out"])
                    tf.addfile(_info(m, len(data)), io.BytesIO(data))
                    if j == main and r["weights"] is not None:
                        w = _weights_json(r["weights"])
                        tf.addfile(_info(m, len(w), wds_key(m.name)[0] + WEIGHTS_SUFFIX), io.BytesIO(w))
        return [self._put(out, rel, buf.getvalue())]


def _raw(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _info(m: tarfile.TarInfo, size: int, name: str | None = None) -> tarfile.TarInfo:
    """A copy of a member's header for ``size`` bytes of data (and another name)."""
    info = copy.copy(m)
    info.pax_headers = dict(m.pax_headers)
    info.size = size
    if name is not None:
        info.name = name
    return info


# -- parquet --------------------------------------------------------------------------------------------------
def _pq():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the environment
        raise ValueError("parquet needs pyarrow: pip install pyarrow") from None
    return pa, pq


IMAGE_COLUMN_NAMES = ("image", "img", "jpg", "jpeg", "png", "webp", "bytes", "data")


class ParquetSource(Source):
    """Parquet files with an image-bytes or text column; see the module doc."""

    format = "parquet"
    suffixes = {"image": frozenset({".parquet"}), "text": frozenset({".parquet"})}

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

    def read(self, unit: Unit) -> Read:
        pa, pq = _pq()
        rel = unit.files[0]
        raw = self.path(rel).read_bytes()
        try:
            pf = pq.ParquetFile(io.BytesIO(raw))
            table = pf.read()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            from wmark.scrub.scrubber import one_line

            return Read(unit, [Item(f"{rel}/#file", None, error=f"unreadable parquet file ({one_line(exc)})")],
                        (raw, None, None, None, None))
        col = self._pick_column(table.schema)
        items = []
        for i, v in enumerate(table.column(col).to_pylist()):
            sid, ext = f"{rel}/{i}", ""
            if isinstance(v, dict):
                ext = _suffix(str(v.get("path") or ""))
                v = v.get("bytes")
            items.append(Item(sid, v, ext, error=None if v is not None else f"null value in column {col!r}", ref=i))
        meta = pf.metadata
        codec, rg = "snappy", None
        if meta.num_row_groups:
            rg = meta.row_group(0).num_rows
            if meta.num_columns:
                codec = meta.row_group(0).column(0).compression.lower()
        return Read(unit, items, (raw, table, col, codec, rg))

    def write(self, read, rows, out, on_error):
        pa, pq = _pq()
        rel = read.unit.files[0]
        raw, table, col, codec, rg = read.ctx
        if table is None:  # unreadable: copied as it is, or left out
            return [self._put(out, rel, raw)] if on_error == "copy" else []
        if self._unchanged(read.items, rows, on_error):
            return [self._put(out, rel, raw)]
        keep = [i for i, r in enumerate(rows) if self._emit(r, on_error)]
        new = table.take(pa.array(keep, type=pa.int64()))
        changed = {j: rows[i]["data_out"] for j, i in enumerate(keep) if self._changed(rows[i])}
        if changed:
            ci = new.schema.get_field_index(col)
            fld = new.schema.field(ci)
            vals = new.column(ci).to_pylist()
            for j, v in changed.items():
                vals[j] = {**vals[j], "bytes": v} if isinstance(vals[j], dict) else v
            new = new.set_column(ci, fld, pa.array(vals, type=fld.type))
        if any(rows[i]["weights"] is not None for i in keep):
            w = pa.array([rows[i]["weights"] for i in keep], type=pa.list_(pa.float32()))
            if WEIGHTS_FIELD in new.schema.names:
                new = new.drop_columns([WEIGHTS_FIELD])
            new = new.append_column(WEIGHTS_FIELD, w)
        known = ("snappy", "gzip", "brotli", "zstd", "lz4", "none", "uncompressed")
        opts: dict[str, Any] = {"compression": codec if codec in known else "snappy"}
        if rg:
            opts["row_group_size"] = rg
        buf = io.BytesIO()
        pq.write_table(new, buf, **opts)
        return [self._put(out, rel, buf.getvalue())]


# -- JSON Lines -----------------------------------------------------------------------------------------------
class JsonlSource(Source):
    """JSON Lines files, one document per line with a text field (``column``, default "text")."""

    format = "jsonl"
    suffixes = {"text": frozenset({".jsonl", ".ndjson"})}

    def _infer_kind(self) -> str:
        return "text"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "column": self.column or "text"}

    def read(self, unit: Unit) -> Read:
        rel = unit.files[0]
        raw = self.path(rel).read_bytes()
        fld = self.column or "text"
        parts = raw.split(b"\n")  # JSON Lines ends lines at LF (a CR before it stays in the line)
        lines = [ln + b"\n" for ln in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        items = []
        for n, ln in enumerate(lines, 1):
            body = ln.rstrip(b"\r\n")
            if not body.strip():
                continue
            sid = f"{rel}/{n}"
            try:
                obj = json.loads(body)
            except ValueError as exc:
                items.append(Item(sid, body, ".txt", error=f"invalid JSON ({' '.join(str(exc).split())})", ref=(n - 1, None)))
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get(fld), str):
                what = "not a JSON object" if not isinstance(obj, dict) else (
                    f"no {fld!r} field" if fld not in obj else f"field {fld!r} is not a string")
                items.append(Item(sid, body, ".txt", error=what, ref=(n - 1, None)))
                continue
            items.append(Item(sid, obj[fld], ".txt", ref=(n - 1, obj)))
        return Read(unit, items, (raw, lines))

    def write(self, read, rows, out, on_error):
        rel = read.unit.files[0]
        raw, lines = read.ctx
        if self._unchanged(read.items, rows, on_error):
            return [self._put(out, rel, raw)]
        by_line = {it.ref[0]: (it, r) for it, r in zip(read.items, rows)}
        parts = []
        for k, ln in enumerate(lines):
            if k not in by_line:  # a blank line: copied
                parts.append(ln)
                continue
            it, r = by_line[k]
            if not self._emit(r, on_error):
                continue
            if r["weights"] is not None and it.ref[1] is not None:
                end = ln[len(ln.rstrip(b"\r\n")):]
                obj = {**it.ref[1], WEIGHTS_FIELD: r["weights"]}
                parts.append(json.dumps(obj, ensure_ascii=False).encode("utf-8") + end)
            else:
                parts.append(ln)
        return [self._put(out, rel, b"".join(parts))]


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
