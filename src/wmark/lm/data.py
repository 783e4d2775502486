"""Training text for the built-in LM: the shared corpus, Gutenberg boilerplate stripped, split.

The corpus is ``tinyshakespeare.txt``, ``pg1342.txt`` (Pride and Prejudice) and ``pg84.txt``
(Frankenstein) from ``<shared>/data/text``. The last ``val_fraction`` of each text (cut at a line
break) is held out for validation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CORPUS_FILES: tuple[str, ...] = ("tinyshakespeare.txt", "pg1342.txt", "pg84.txt")


@dataclass(frozen=True)
class Corpus:
    """Train / validation texts by file name (same keys, same order as ``CORPUS_FILES``)."""

    train: dict[str, str]
    val: dict[str, str]


def strip_gutenberg(text: str) -> str:
    """Keep only the text between the ``*** START OF`` and ``*** END OF`` marker lines.

    Text without the markers is returned unchanged (apart from a BOM and CRLF normalisation).
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be str, got {type(text).__name__}")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    start = next((i for i, ln in enumerate(lines) if ln.startswith("*** START OF")), None)
    end = next((i for i, ln in enumerate(lines) if ln.startswith("*** END OF")), None)
    if start is None and end is None:
        return text
    if start is None or end is None or end <= start:
        raise ValueError("malformed Project Gutenberg text: START/END markers missing or out of order")
    return "\n".join(lines[start + 1 : end]).strip("\n") + "\n"


def split_text(text: str, val_fraction: float = 0.05) -> tuple[str, str]:
    """Split ``text`` into (train, val): val is the last ``val_fraction``, cut at a line break."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(len(text) * (1.0 - val_fraction))
    nl = text.find("\n", cut)
    cut = nl + 1 if nl != -1 else cut
    return text[:cut], text[cut:]


def default_text_dir() -> Path:
    """Where the shared corpus lives: ``shared_data("text")`` (see :func:`wmark.assets.shared_data`)."""
    from wmark.assets import shared_data

    return shared_data("text")


def load_corpus(text_dir: str | os.PathLike[str] | None = None, val_fraction: float = 0.05) -> Corpus:
    """Read, clean and split the three corpus texts from ``text_dir`` (default :func:`default_text_dir`)."""
    d = Path(text_dir) if text_dir is not None else default_text_dir()
    missing = [f for f in CORPUS_FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"corpus files not found in {d}: {', '.join(missing)}")
    train: dict[str, str] = {}
    val: dict[str, str] = {}
    for f in CORPUS_FILES:
        text = strip_gutenberg((d / f).read_text(encoding="utf-8"))
        train[f], val[f] = split_text(text, val_fraction)
    return Corpus(train=train, val=val)
