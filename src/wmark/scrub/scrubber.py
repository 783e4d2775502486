"""The scrubber: one batch of samples in, their manifest rows and output bytes out.

:class:`Scrubber` is the unit of work every engine runs: the local engine calls it in-process or in
worker processes, Ray Data can run it as ``ds.map_batches(Scrubber, fn_constructor_kwargs={...},
batch_size=...)``, and ``datasets.Dataset.map(Scrubber(...), batched=True)`` works too. It is a plain
picklable object holding settings only; the image model, text scheme and tokenizer load on the first
call, once per instance (per worker, per Ray actor).

A batch is a dict of equal-length columns (lists, numpy arrays or pandas-like sequences):

    id        str    the sample's name (its suffix is the format hint where ``ext`` is absent)
    data      bytes  image file bytes, or text (str, or UTF-8 bytes)
    ext       str    optional: the sample's file suffix (".jpg"); ``id``'s suffix otherwise
    error     str    optional: a reader's reason why the sample is bad (it becomes an error row)
    p_value   float  optional (pass 2 of an FDR scrub): the p-value pass 1 found; no re-detection
    payload   str    optional, with p_value: the payload pass 1 read (hex)
    sha256_in str    optional, with p_value: pass 1's digest; a sample that changed is an error

The result holds the :data:`MANIFEST_COLUMNS` (one manifest row per sample, see
:mod:`wmark.scrub.pipeline`) plus ``data_out`` (what goes to the output: the input object itself
where the sample is unchanged, new bytes where it was stripped, None where it is left out) and
``weights`` (text strip: per-token de-bias loss weights, else None). With ``echo_unchanged=False``
(what the engines use between processes) an unchanged sample's ``data_out`` is an empty bytes / str
instead of the input, so the bytes do not travel back; ``sha256_out == sha256_in`` tells it apart.
"""
from __future__ import annotations

import io
import math
from itertools import chain
from typing import Any, Mapping, Sequence

from wmark.assets import sha256_bytes

#: the manifest's columns, in order
MANIFEST_COLUMNS: tuple[str, ...] = ("id", "kind", "p_value", "detected", "payload", "action", "sha256_in",
                                     "sha256_out", "p_after", "error")
#: what :meth:`Scrubber.__call__` returns: the manifest columns, the output object and text weights
OUTPUT_COLUMNS: tuple[str, ...] = MANIFEST_COLUMNS + ("data_out", "weights")

KINDS = ("image", "text")
ACTIONS = ("report", "drop", "strip")
ON_ERROR = ("copy", "skip")

#: a sample larger than this many bytes is an error row (before anything is decoded)
DEFAULT_MAX_BYTES = 256 << 20
#: default JPEG / WebP quality of a stripped image written back in its lossy input format
DEFAULT_QUALITY = 95
#: at most this many tokens (batch x padded length) in one text detection batch
TEXT_BATCH_TOKENS = 1 << 20
#: TIFF compressions kept for a stripped TIFF (lossless ones; anything else is written uncompressed)
_LOSSLESS_TIFF = ("raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits")


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message (the type too where it is not a ValueError / OSError),
    at most 300 characters."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, (ValueError, OSError)):
        msg = f"{type(exc).__name__}: {msg}"
    return msg if len(msg) <= 300 else msg[:297] + "..."


def _value(v: Any) -> Any:
    """A batch cell as a plain Python value (numpy scalars, NaN -> None)."""
    if v is None:
        return None
    item = getattr(v, "item", None)
    if item is not None and not isinstance(v, (bytes, str)):
        try:
            v = item()
        except (ValueError, TypeError):
            pass
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _column(batch: Mapping[str, Any], name: str, n: int) -> list | None:
    if name not in batch:
        return None
    col = [_value(v) for v in batch[name]]
    if len(col) != n:
        raise ValueError(f"batch column {name!r} has {len(col)} values, expected {n}")
    return col


def _bytes_of(data: Any) -> bytes:
    """The bytes a sample's digest is taken over: image bytes as given, text as UTF-8."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise ValueError(f"sample data must be bytes or str, got {type(data).__name__}")


def _suffix(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""


class Scrubber:
    """Detect, decide and act on one batch of samples (see the module doc for the columns).

    ``key`` the :class:`wmark.keys.Key`; ``kind`` "image" or "text"; ``action`` "report" (rows
    only), "drop" (marked samples get no output) or "strip" (images: the key-holder strip, written in
    the input's format and re-detected into ``p_after``; text: kept unchanged, with per-token
    de-bias weights for KGW / Unigram schemes, else kept and only flagged ``detected``).

    The decision: marked when ``p < alpha``, or, given ``cutoff`` (a Benjamini–Hochberg cutoff from
    :func:`wmark.scrub.decide.bh_cutoff`), when ``p <= cutoff``. ``on_error``: "copy" passes a bad
    sample through unchanged, "skip" leaves it out. ``jpeg_quality``: quality of stripped JPEG /
    WebP images. ``max_bytes`` / ``max_pixels``: bigger samples are error rows. Image: ``model``
    (shipped weights name), ``device``. Text: ``scheme`` and ``scheme_params`` (as ``wmark text
    detect``), ``tokenizer`` (a tokenizer.json path; default the built-in LM's), ``vocab_size``,
    ``min_window`` (windowed detection finds a marked passage inside a longer document).
    ``threads``: torch CPU threads to pin on the first call (None: leave them). ``id_column`` /
    ``data_column`` name the batch's columns (e.g. "path" / "bytes" for Ray's ``read_binary_files``).
    ``echo_unchanged``: False gives an empty placeholder as the ``data_out`` of unchanged samples.
    """

    def __init__(self, key, kind: str = "image", action: str = "report", *, alpha: float | None = 1e-3,
                 cutoff: float | None = None, on_error: str = "copy", jpeg_quality: int = DEFAULT_QUALITY,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int | None = None, model: str = "default",
                 device: str | None = None, scheme: str = "kgw-selfhash", scheme_params: Mapping[str, Any] | None = None,
                 tokenizer: str | None = None, vocab_size: int | None = None, min_window: int = 50,
                 threads: int | None = None, id_column: str = "id", data_column: str = "data",
                 echo_unchanged: bool = True) -> None:
        from wmark.image.io import check_key
        from wmark.scrub.decide import check_level

        check_key(key)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        if cutoff is not None:
            alpha = None
            cutoff = float(cutoff)
        elif alpha is None:
            raise ValueError("give alpha or a cutoff")
        else:
            alpha = check_level(alpha, "alpha")
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        if int(max_bytes) < 0:
            raise ValueError(f"max_bytes must be >= 0 (0: no limit), got {max_bytes}")
        self.key = key
        self.kind = kind
        self.action = action
        self.alpha = alpha
        self.cutoff = cutoff
        self.on_error = on_error
        self.jpeg_quality = int(jpeg_quality)
        self.max_bytes = int(max_bytes)
        self.max_pixels = max_pixels
        self.model = model
        self.device = device
        self.scheme = scheme
        self.scheme_params = dict(scheme_params or {})
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.min_window = int(min_window)
        self.threads = threads
        self.id_column = id_column
        self.data_column = data_column
        self.echo_unchanged = bool(echo_unchanged)
        self._state: dict[str, Any] = {}

    # -- pickling: settings only; what loads lazily is rebuilt on the other side ----------------------
    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_state"] = {}
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)

    def __repr__(self) -> str:
        rule = f"alpha={self.alpha}" if self.alpha is not None else f"cutoff={self.cutoff:.3g}"
        return f"Scrubber(kind={self.kind!r}, action={self.action!r}, {rule}, key={self.key!r})"

    def settings(self) -> dict[str, Any]:
        """The settings that change rows or outputs (JSON-ready; the key as its fingerprint)."""
        out = {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k not in ("key", "threads",
                                                                                            "device", "echo_unchanged")}
        out["key"] = self.key.fingerprint
        return out

    # -- lazily loaded ----------------------------------------------------------------------------------
    def _setup(self) -> None:
        if self._state.get("ready"):
            return
        if self.threads is not None:
            from wmark.runtime.threads import set_threads

            set_threads(self.threads)
        self._state["ready"] = True

    def image_model(self):
        """The image watermarker (loaded on first use, once per instance)."""
        m = self._state.get("model")
        if m is None:
            from wmark.image.model import load

            m = self._state["model"] = load(self.model, self.device)
        return m

    def text_scheme(self):
        """(scheme, tokenizer) for text (built on first use, once per instance)."""
        st = self._state.get("text")
        if st is None:
            from wmark.text import make_scheme
            from wmark.text.names import resolve

            if self.tokenizer:
                from wmark.lm import Tokenizer

                tok = Tokenizer.from_file(self.tokenizer)
            else:
                from wmark.lm import load_tokenizer

                tok = load_tokenizer()
            try:
                sch = make_scheme(resolve(self.scheme), self.key, self.vocab_size or tok.vocab_size,
                                  **self.scheme_params)
            except TypeError as exc:  # a parameter this scheme does not take
                raise ValueError(f"scheme {self.scheme!r}: {exc}") from None
            st = self._state["text"] = (sch, tok)
        return st

    def decode(self, data: bytes, ext: str = ""):
        """Image bytes -> what :func:`wmark.image.io.load_bytes` gives (PIL image or Image16), with its
        one-line ImageError for anything bad (zero bytes, truncated, undecodable, too large); decoded
        in memory (``ext`` is a hint only: the format is read from the bytes)."""
        from wmark.image import io as imio

        try:
            return imio.load_bytes(data, "sample", max_pixels=self.max_pixels)
        except ValueError as exc:
            msg = str(exc)
            raise imio.ImageError(msg[len("sample: "):] if msg.startswith("sample: ") else msg) from None

    # -- the batch ----------------------------------------------------------------------------------------
    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """Process one batch (see the module doc); rows in the batch's order."""
        self._setup()
        if self.id_column not in batch or self.data_column not in batch:
            raise ValueError(f"a batch needs the columns {self.id_column!r} and {self.data_column!r}; got "
                             f"{', '.join(map(repr, batch))}")
        ids = [str(_value(v)) for v in batch[self.id_column]]
        n = len(ids)
        data = _column(batch, self.data_column, n)
        exts = _column(batch, "ext", n) or [_suffix(i) for i in ids]
        reader_err = _column(batch, "error", n) or [None] * n
        prior_p = _column(batch, "p_value", n)
        prior_payload = _column(batch, "payload", n) or [None] * n
        prior_sha = _column(batch, "sha256_in", n) or [None] * n
        rows = [dict.fromkeys(OUTPUT_COLUMNS) for _ in range(n)]
        todo: list[int] = []  # samples that get a decision
        for i in range(n):
            r = rows[i]
            r.update(id=ids[i], kind=self.kind)
            try:
                raw = _bytes_of(data[i]) if data[i] is not None else None
                r["sha256_in"] = None if raw is None else sha256_bytes(raw)
                if reader_err[i]:
                    raise ValueError(str(reader_err[i]))
                if raw is None:
                    raise ValueError("no data")
                if prior_sha[i] is not None and prior_sha[i] != r["sha256_in"]:
                    raise ValueError("changed since the detection pass (sha256 differs)")
                if self.max_bytes and len(raw) > self.max_bytes:
                    raise ValueError(f"{len(raw)} bytes exceeds the sample limit of {self.max_bytes} bytes")
                if self.kind == "image" and len(raw) == 0:
                    raise ValueError("empty file (0 bytes), not an image")
            except Exception as exc:  # noqa: BLE001 - a bad sample is a row, never the end of the run
                r["error"] = one_line(exc)
                continue
            if prior_p is not None:
                r["p_value"], r["payload"] = prior_p[i], prior_payload[i]
                if r["p_value"] is None:
                    r["error"] = "no p-value from the detection pass"
                    continue
            todo.append(i)
        work = self._images if self.kind == "image" else self._texts
        work(rows, todo, data, exts, detect=prior_p is None)
        for r, d in zip(rows, data):
            self._finish(r, d)
        return {c: [r[c] for r in rows] for c in OUTPUT_COLUMNS}

    def marked(self, p_value: float | None) -> bool | None:
        """The decision for one p-value (None: not tested)."""
        from wmark.scrub.decide import is_marked

        return is_marked(p_value, alpha=self.alpha, cutoff=self.cutoff)

    def _finish(self, r: dict, data: Any) -> None:
        """Action, output and its digest of one row whose detection (and strip) is done."""
        r["detected"] = self.marked(r["p_value"])
        if r["error"] is not None:
            r["action"] = "error"
            keep = self.action != "report" and self.on_error == "copy" and data is not None
            r["data_out"] = data if keep else None
        elif r["action"] is None:  # not stripped: kept or dropped
            dropped = self.action == "drop" and r["detected"]
            r["action"] = "dropped" if dropped else "kept"
            r["data_out"] = data if self.action != "report" and not dropped else None
        if r["data_out"] is None:
            r["sha256_out"] = None
        elif r["data_out"] is data:
            r["sha256_out"] = r["sha256_in"]
            if not self.echo_unchanged:
                r["data_out"] = data[:0]  # the caller has the input: an empty placeholder of its type
        else:
            r["sha256_out"] = sha256_bytes(_bytes_of(r["data_out"]))

    # -- images -------------------------------------------------------------------------------------------
    def _images(self, rows: list[dict], todo: list[int], data: list, exts: list, detect: bool) -> None:
        imgs: dict[int, Any] = {}
        need = todo if detect else [i for i in todo if self.action == "strip" and self.marked(rows[i]["p_value"])]
        for i in need:
            try:
                imgs[i] = self.decode(bytes(data[i]), exts[i] or "")
            except Exception as exc:  # noqa: BLE001
                rows[i]["error"] = one_line(exc)
        if detect:
            ok = [i for i in todo if i in imgs]
            for i, d in zip(ok, self._detect_images([imgs[i] for i in ok], [rows[i] for i in ok])):
                if d is not None:
                    rows[i]["p_value"], rows[i]["payload"] = float(d.p_value), d.payload_hex
        if self.action != "strip":
            return
        for i in todo:
            r = rows[i]
            if r["error"] is not None or not self.marked(r["p_value"]) or i not in imgs:
                continue
            try:
                self._strip_one(r, imgs[i], bytes(data[i]), exts[i] or "")
            except Exception as exc:  # noqa: BLE001
                r["error"] = one_line(exc)

    def _detect_images(self, imgs: list, rows: list[dict]) -> list:
        """Detections of decoded images, batched; an image the batch call fails on is retried alone
        and becomes an error row."""
        if not imgs:
            return []
        model = self.image_model()
        a = self.alpha if self.alpha is not None else 1e-3
        try:
            return list(model.detect(list(imgs), self.key, alpha=a))
        except Exception:  # noqa: BLE001 - find the sample that fails
            out = []
            for img, r in zip(imgs, rows):
                try:
                    out.append(model.detect([img], self.key, alpha=a)[0])
                except Exception as exc:  # noqa: BLE001
                    r["error"] = one_line(exc)
                    out.append(None)
            return out

    def _strip_one(self, r: dict, img: Any, raw: bytes, ext: str) -> None:
        model = self.image_model()
        res = model.strip(img, self.key, r["payload"])
        r["action"] = "stripped"
        if not res.removed[0]:  # no payload read where the strip looks: unchanged, and still marked
            r["data_out"], r["p_after"] = raw, r["p_value"]
            return
        out = encode_like(res.images, raw, self.jpeg_quality)
        after = model.detect([self.decode(out, ext)], self.key)[0]
        r["data_out"], r["p_after"] = out, float(after.p_value)

    # -- text -----------------------------------------------------------------------------------------------
    def _texts(self, rows: list[dict], todo: list[int], data: list, exts: list, detect: bool) -> None:
        texts: dict[int, str] = {}
        for i in todo:
            try:
                d = data[i]
                texts[i] = d if isinstance(d, str) else bytes(d).decode("utf-8")
            except UnicodeDecodeError as exc:
                rows[i]["error"] = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        need = [i for i in todo if i in texts and (detect or (self.action == "strip" and self.marked(rows[i]["p_value"])))]
        if not need:
            return
        sch, tok = self.text_scheme()
        ids = dict(zip(need, tok.encode_batch([texts[i] for i in need])))
        if detect:
            for i in need:
                if not ids[i]:
                    rows[i]["error"] = "no tokens to score (empty text)"
            for i, p in self._detect_texts(sch, [(i, ids[i]) for i in need if ids[i]]):
                rows[i]["p_value"] = p
        if self.action != "strip" or not green_scheme(sch):
            return
        for i in need:
            r = rows[i]
            if r["error"] is None and self.marked(r["p_value"]):
                try:
                    r["weights"] = debias(sch, ids[i])
                    r["action"], r["data_out"] = "stripped", data[i]
                except Exception as exc:  # noqa: BLE001
                    r["error"] = one_line(exc)

    def _detect_texts(self, sch, items: list[tuple[int, list[int]]]):
        """(index, p-value) per tokenized text: windowed detection (the best window's p-value,
        corrected for the windows searched, which include the whole text); batched by length."""
        import numpy as np
        import torch

        a = self.alpha if self.alpha is not None else 1e-3
        order = sorted(items, key=lambda t: len(t[1]))
        batches: list[list[tuple[int, list[int]]]] = [[]]
        for it in order:
            cur = batches[-1]
            if cur and (len(cur) + 1) * len(it[1]) > TEXT_BATCH_TOKENS:
                batches.append([])
            batches[-1].append(it)
        for b in batches:
            if not b:
                continue
            lens = np.array([len(t[1]) for t in b], dtype=np.int64)
            flat = np.fromiter(chain.from_iterable(t[1] for t in b), dtype=np.int64, count=int(lens.sum()))
            ids = np.zeros((len(b), int(lens.max())), dtype=np.int64)
            ids[np.arange(ids.shape[1]) < lens[:, None]] = flat  # row-major: each text left-aligned
            ids, lengths = torch.from_numpy(ids), torch.from_numpy(lens)
            if self.device:
                ids, lengths = ids.to(self.device), lengths.to(self.device)
            det = sch.detect_batch(ids, lengths, alpha=a, windowed=True, min_window=self.min_window)
            for j, (i, _) in enumerate(b):
                w = det.windows[j]
                p = float(w.p_value_corrected) if w is not None else float(det.p_value[j])
                yield i, min(1.0, max(0.0, p))


# -- text de-bias --------------------------------------------------------------------------------------------
def green_scheme(sch) -> bool:
    """Whether the scheme's mark is an additive green-list bias (KGW, Unigram): what de-bias inverts."""
    from wmark.text.schemes import KGW

    return isinstance(sch, KGW)


def debias(sch, ids: Sequence[int]) -> list[float]:
    """Per-token de-bias loss weights ``[T]`` of a document's token ids under a KGW / Unigram scheme
    (the weights the loop's strip arm trains with, :func:`wmark.loop.text_marker.debias_weights`):
    green tokens ``Z0 e^-delta``, red ones ``Z0``; 1.0 for the first tokens, which lack a full context
    in the document (the text they were generated after is not known)."""
    import torch

    from wmark.loop.text_marker import debias_weights

    t = torch.as_tensor(list(ids), dtype=torch.long)
    w = torch.ones(len(t), dtype=torch.float32)
    ts = sch.token_scores(t)
    if ts.scores.shape[1]:
        green = ts.scores[0] > 0.5
        w[ts.positions[0]] = debias_weights(green, float(sch.gamma), float(sch.delta))
    return [float(x) for x in w.tolist()]


# -- stripped images back in their input's format -------------------------------------------------------------
def _carried(img) -> dict:
    """The metadata PIL writes back (ICC profile, EXIF, DPI) from an image's info."""
    info = getattr(img, "info", {}) or {}
    return {k: info[k] for k in ("icc_profile", "exif", "dpi") if info.get(k)}


def encode_like(img, original: bytes, quality: int = DEFAULT_QUALITY) -> bytes:
    """A stripped image encoded in the format of ``original`` (its input bytes): PNG stays PNG (the
    bit depth and metadata kept, :func:`wmark.image.io.png_bytes`), JPEG and WebP are re-encoded at
    ``quality``, TIFF keeps a lossless compression, BMP / PPM / PGM are rewritten as they were.
    ICC profile, EXIF and DPI travel. ValueError for a format or mode that cannot be written back."""
    from PIL import Image

    from wmark.image import io as imio

    with Image.open(io.BytesIO(original)) as src:
        fmt, compression = src.format, src.info.get("compression")
    if fmt == "PNG":
        return imio.png_bytes(img)
    if isinstance(img, imio.Image16):
        raise ValueError(f"a stripped 16-bit colour image cannot be written back as {fmt} (only PNG)")
    opts: dict[str, Any] = _carried(img)
    if fmt in ("JPEG", "MPO"):
        fmt, opts = "JPEG", {**opts, "quality": quality}
    elif fmt == "WEBP":
        opts = {**opts, "quality": quality}
    elif fmt == "TIFF":
        opts = {**opts, "compression": compression if compression in _LOSSLESS_TIFF else "raw"}
    elif fmt in ("BMP", "PPM"):
        opts = {k: v for k, v in opts.items() if k == "dpi"}
    else:
        raise ValueError(f"a stripped image cannot be written back as {fmt}")
    buf = io.BytesIO()
    img.save(buf, format=fmt, **opts)
    return buf.getvalue()
