"""Text files in bounded memory: a size limit, incremental UTF-8 reading cut at safe seams, and
streaming detection (:func:`detect_file`).

A file is read ``chunk_bytes`` at a time, decoded as strict UTF-8 with universal newlines (as
``Path.read_text`` does) and cut where a word character or visible ASCII character is followed by a
space or newline. Byte-level BPE with the GPT-2 split regex (the built-in tokenizer; also GPT-2's
own) never joins a non-space character and the whitespace after it into one pre-token, and it has
no normaliser or prefix space, so tokenizing the pieces one by one gives exactly the ids of the
whole text (:func:`seams_exact` checks a tokenizer for this). Text with no such seam in
``max_carry`` characters is cut anyway (counted in :attr:`TextChunks.forced_cuts`; the tokens at
that cut may differ). Other tokenizers may tokenize differently at the seams (one seam per
``chunk_bytes``; ``wmark text detect`` then warns with their number).

Limits: ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`, environment :data:`MAX_BYTES_ENV`,
0 = none) refuses larger inputs with a one-line :class:`TextTooLarge`. Memory is then what
``tokenizers`` needs for ``ENCODE_GROUP`` pieces (about 500 bytes per token, ~150 MB per MiB of
text, which is why whole-file tokenization of 50 MiB needed 7.7 GB) plus the state of
:class:`~wmark.text.detect.StreamingDetection` (at most 8 bytes per distinct scored n-gram).
"""
from __future__ import annotations

import codecs
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import IO, Any, Iterator

from wmark.text.detect import DetectionResult, StreamingDetection

#: default limit on the bytes of one text input
DEFAULT_MAX_BYTES = 64 * 2**20
#: environment variable overriding :data:`DEFAULT_MAX_BYTES` (bytes, or with a K / M / G suffix)
MAX_BYTES_ENV = "WMARK_MAX_TEXT_BYTES"
#: bytes read, decoded and tokenized at a time
CHUNK_BYTES = 2**18
#: pieces tokenized together (``encode_batch`` spreads them over the CPU cores)
ENCODE_GROUP = max(1, min(4, os.cpu_count() or 1))

# a safe seam lies between the two characters of a match (see the module docstring)
_SEAM = re.compile(r"[\w!-~][ \n]")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


class TextTooLarge(ValueError):
    """A text input above the byte limit."""


def parse_size(text: str | int) -> int:
    """Bytes from ``"67108864"``, ``"64M"``, ``"64MiB"``, ``"1g"`` (binary units); ``0`` means no limit."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
        if not m:
            raise ValueError(f"not a size in bytes: {text!r} (e.g. 67108864, 64M, 1G; 0 = no limit)")
        value = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if value < 0:
        raise ValueError(f"a size in bytes must be >= 0, got {value}")
    return value


def max_text_bytes(value: str | int | None = None) -> int:
    """The byte limit: ``value`` if given, else ``$WMARK_MAX_TEXT_BYTES``, else :data:`DEFAULT_MAX_BYTES`."""
    if value is not None:
        return parse_size(value)
    env = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not env:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(env)
    except ValueError as exc:
        raise ValueError(f"{MAX_BYTES_ENV}: {exc}") from None


def format_size(n: int) -> str:
    """``67108864 -> "64 MiB"``; small sizes in bytes."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def seams_exact(tokenizer: Any) -> bool:
    """True where cutting text at the seams of :class:`TextChunks` cannot change the token ids:
    byte-level BPE with the GPT-2 regex, no prefix space, no normaliser, no pre-tokenizer sequence."""
    backend = getattr(tokenizer, "backend", tokenizer)
    try:
        spec = json.loads(backend.to_str())
    except Exception:  # not a tokenizers.Tokenizer: nothing known
        return False
    pre = spec.get("pre_tokenizer") or {}
    return (spec.get("normalizer") is None and pre.get("type") == "ByteLevel" and bool(pre.get("use_regex", True))
            and not pre.get("add_prefix_space", False) and (spec.get("model") or {}).get("type") == "BPE"
            and not (spec.get("model") or {}).get("dropout"))


class TextChunks:
    """Iterate over the UTF-8 text of a binary stream in pieces ending at safe seams.

    ``max_bytes`` (0: none) raises :class:`TextTooLarge` once more bytes than that are read;
    invalid UTF-8 raises ValueError naming the byte offset. ``bytes_read``, ``chunks`` and
    ``forced_cuts`` (pieces cut where no seam was found within ``max_carry`` characters) describe
    the stream after iteration."""

    def __init__(self, f: IO[bytes], *, chunk_bytes: int = CHUNK_BYTES, max_bytes: int = 0,
                 max_carry: int | None = None) -> None:
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        self.f = f
        self.chunk_bytes = int(chunk_bytes)
        self.max_bytes = int(max_bytes)
        self.max_carry = int(max_carry or 4 * chunk_bytes)
        self.bytes_read = 0
        self.chunks = 0
        self.forced_cuts = 0

    def __iter__(self) -> Iterator[str]:
        dec = codecs.getincrementaldecoder("utf-8")("strict")
        carry, searched, cr = "", 0, ""  # text not yet yielded; its prefix known to hold no seam; a held-back "\r"
        while True:
            data = self.f.read(self.chunk_bytes)
            pending = dec.getstate()[0]
            start = self.bytes_read - len(pending)  # stream offset of pending + data
            self.bytes_read += len(data)
            if self.max_bytes and self.bytes_read > self.max_bytes:
                raise TextTooLarge(f"more than {self.max_bytes} bytes: above the text size limit of "
                                   f"{format_size(self.max_bytes)} (raise it with --max-bytes or {MAX_BYTES_ENV})")
            final = not data
            try:
                s = dec.decode(data, final=final)
            except UnicodeDecodeError as exc:
                bad = (pending + data)[exc.start]
                raise ValueError(f"not UTF-8 text (byte 0x{bad:02x} at offset {start + exc.start})") from None
            s = cr + s
            cr = "\r" if s.endswith("\r") and not final else ""  # it may be the start of "\r\n"
            if cr:
                s = s[:-1]
            text = carry + s.replace("\r\n", "\n").replace("\r", "\n")
            if final:
                if text:
                    self.chunks += 1
                    yield text
                return
            cut = _last_seam(text, max(0, searched - 1))
            if cut <= 0:
                if len(text) < self.max_carry:
                    carry, searched = text, len(text)
                    continue
                cut = len(text)
                self.forced_cuts += 1
            self.chunks += 1
            yield text[:cut]
            carry = text[cut:]
            searched = 0


def _last_seam(text: str, lo: int) -> int:
    """Index of the last safe seam of ``text`` at or after ``lo + 1`` (a cut before ``text[i]``), or -1.
    Searches backwards from the end in growing windows (a seam is usually a few characters away)."""
    end, step = len(text), 4096
    while end > lo:
        begin = max(lo, end - step)
        last = None
        for last in _SEAM.finditer(text, begin, min(len(text), end + 1)):
            pass
        if last is not None:
            return last.start() + 1
        end, step = begin, step * 4
    return -1


def open_text(path: str | os.PathLike[str], max_bytes: int) -> IO[bytes]:
    """Open a text input for reading bytes (``"-"``: stdin), refusing with a one-line ValueError
    (naming the file) a folder, a missing or unreadable file, an empty one, or one above ``max_bytes``."""
    name = str(path)
    if name == "-":
        return sys.stdin.buffer
    p = Path(path)
    try:
        f = open(p, "rb")
    except IsADirectoryError:
        raise ValueError(f"{name}: is a directory (give text files)") from None
    except FileNotFoundError:
        raise ValueError(f"{name}: no such file") from None
    except PermissionError:
        raise ValueError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ValueError(f"{name}: cannot open ({exc.strerror or exc})") from None
    st = os.fstat(f.fileno())
    if stat.S_ISDIR(st.st_mode):  # pragma: no cover - open() refuses folders on POSIX
        f.close()
        raise ValueError(f"{name}: is a directory (give text files)")
    if stat.S_ISREG(st.st_mode):
        if st.st_size == 0:
            f.close()
            raise ValueError(f"{name}: empty file (0 bytes)")
        if max_bytes and st.st_size > max_bytes:
            f.close()
            size = format_size(st.st_size) + (f" ({st.st_size} bytes)" if st.st_size >= 1024 else "")
            raise TextTooLarge(f"{name}: {size} is above the text size "
                               f"limit of {format_size(max_bytes)} (raise it with --max-bytes or {MAX_BYTES_ENV})")
    return f


def detect_stream(scheme: Any, tokenizer: Any, f: IO[bytes], *, alpha: float = 1e-3, dedup: bool = True,
                  ignore_prefix: int = 0, windowed: bool = False, min_window: int = 50,
                  max_bytes: int = 0, chunk_bytes: int | None = None) -> tuple[DetectionResult, TextChunks]:
    """Detect the mark in the UTF-8 text of a binary stream, read and scored ``chunk_bytes``
    (default :data:`CHUNK_BYTES`) at a time. Returns the result (as
    ``scheme.detect(tokenizer.encode(text))``; see :class:`~wmark.text.detect.StreamingDetection`)
    and the reader (chunks, forced cuts)."""
    det = StreamingDetection(scheme, dedup=dedup, ignore_prefix=ignore_prefix, windowed=windowed)
    chunks = TextChunks(f, chunk_bytes=chunk_bytes or CHUNK_BYTES, max_bytes=max_bytes)
    group: list[str] = []
    for piece in chunks:
        group.append(piece)
        if len(group) >= ENCODE_GROUP:
            _feed(det, tokenizer, group)
            group = []
    _feed(det, tokenizer, group)
    return det.result(alpha=alpha, min_window=min_window), chunks


def _feed(det: StreamingDetection, tokenizer: Any, pieces: list[str]) -> None:
    """Tokenize ``pieces`` (in parallel where the tokenizer has ``encode_batch``) and feed them in order."""
    if not pieces:
        return
    from wmark.lm.tokenizer import Tokenizer

    fast = getattr(tokenizer.backend, "encode_batch_fast", None) if type(tokenizer) is Tokenizer else None
    if fast is not None:  # the same ids as Tokenizer.encode, without offsets (faster, lighter)
        encoded = [e.ids for e in fast(pieces, add_special_tokens=False)]
    elif len(pieces) > 1 and hasattr(tokenizer, "encode_batch"):
        encoded = tokenizer.encode_batch(pieces)
    else:
        encoded = [tokenizer.encode(p) for p in pieces]
    for ids in encoded:
        det.feed(ids)


def detect_file(scheme: Any, tokenizer: Any, path: str | os.PathLike[str], *, max_bytes: int | None = None,
                **kw: Any) -> tuple[DetectionResult, TextChunks]:
    """:func:`detect_stream` on a file (``"-"``: stdin) under the byte limit :func:`max_text_bytes`
    (``max_bytes``); every failure is a one-line ValueError starting with the path."""
    limit = max_text_bytes(max_bytes)
    name = str(path)
    f = open_text(path, limit)
    try:
        return detect_stream(scheme, tokenizer, f, max_bytes=limit, **kw)
    except OSError as exc:
        raise ValueError(f"{name}: read error ({exc.strerror or exc})") from None
    except ValueError as exc:
        msg = str(exc)
        cls = TextTooLarge if isinstance(exc, TextTooLarge) else ValueError
        raise cls(msg if msg.startswith(f"{name}:") else f"{name}: {msg}") from None
    finally:
        if f is not sys.stdin.buffer:
            f.close()
