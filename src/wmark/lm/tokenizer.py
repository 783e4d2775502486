"""Byte-level BPE tokenizer (``tokenizers`` library) with a small, strict wrapper.

Byte-level means every string round-trips exactly: ``decode(encode(s)) == s``.
"""
from __future__ import annotations

import json
import os
import re
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

#: end-of-text token, appended between documents in training and used to stop generation
EOS_TOKEN = "<|endoftext|>"


class Tokenizer:
    """Thin wrapper around a ``tokenizers.Tokenizer``: ``encode(str) -> list[int]``, ``decode``.

    Build with :func:`train_tokenizer` or :meth:`from_file` (any ``tokenizer.json``).
    """

    def __init__(self, tok: "tokenizers.Tokenizer") -> None:
        import tokenizers

        if not isinstance(tok, tokenizers.Tokenizer):
            raise ValueError(f"expected a tokenizers.Tokenizer, got {type(tok).__name__}")
        self._tok = tok
        self._vocab_size = int(tok.get_vocab_size(with_added_tokens=True))
        eos = tok.token_to_id(EOS_TOKEN)
        self._eos_id: int | None = None if eos is None else int(eos)

    # -- construction / persistence -------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "Tokenizer":
        """Load any ``tokenizer.json`` written by the ``tokenizers`` library."""
        import tokenizers

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {p}")
        try:
            tok = tokenizers.Tokenizer.from_file(str(p))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ValueError(f"not a valid tokenizer.json: {p} ({str(exc).splitlines()[0]})") from None
        return cls(tok)

    @classmethod
    def from_str(cls, json_str: str) -> "Tokenizer":
        """Load from the JSON text of a ``tokenizer.json``."""
        import tokenizers

        return cls(tokenizers.Tokenizer.from_str(json_str))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``tokenizer.json`` (compact, deterministic)."""
        from wmark.assets import write_atomic

        write_atomic(path, self.to_str())

    def to_str(self) -> str:
        """The tokenizer as JSON text."""
        return self._tok.to_str(pretty=False)

    # -- properties ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of token ids (including special tokens)."""
        return self._vocab_size

    @property
    def eos_id(self) -> int | None:
        """Id of ``<|endoftext|>`` (None if the tokenizer has no such token)."""
        return self._eos_id

    @property
    def eos_token(self) -> str:
        return EOS_TOKEN

    @property
    def backend(self) -> "tokenizers.Tokenizer":
        """The wrapped ``tokenizers.Tokenizer``."""
        return self._tok

    def __len__(self) -> int:
        return self._vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self._vocab_size}, eos_id={self._eos_id})"

    # -- encode / decode -------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """``str -> list[int]`` (no special tokens are added)."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects str, got {type(text).__name__}")
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode several strings at once (the same ids as ``encode`` on each)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("encode_batch expects a sequence of str")
        if self._words is not None:
            return self._words.encode(texts)
        return [list(e.ids) for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    @cached_property
    def _words(self) -> "_WordCache | None":
        """The word cache (built on first use), None where the pre-tokenization is not GPT-2's."""
        return _WordCache.build(self._tok)

    def cache_info(self) -> dict[str, int | bool]:
        """The word cache behind ``encode``: ``active`` (False where the tokenizer's pre-tokenization is
        not the GPT-2 byte-level split, so the library encodes every text), ``words`` cached and
        ``characters_probed``, of which ``characters_apart`` send their texts to the library."""
        w = self._words
        return {"active": w is not None, "words": len(w._ids) if w else 0,
                "characters_probed": len(w._same) + len(w._differ) if w else 0,
                "characters_apart": len(w._differ) if w else 0}

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """``list[int] -> str``; also accepts a 1-D tensor / array of ints."""
        ids = _as_id_list(ids, self._vocab_size)
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def id_to_token(self, i: int) -> str:
        """The vocabulary string of one id (byte-level alphabet)."""
        if not isinstance(i, int) or not 0 <= i < self._vocab_size:
            raise ValueError(f"token id must be an int in [0, {self._vocab_size}), got {i!r}")
        return self._tok.id_to_token(i)


#: GPT-2's pre-tokenizer pattern (``ByteLevel(use_regex=True)``) in Python ``re`` terms: letters
#: ``[^\W\d_]`` for ``\p{L}``, digits ``\d`` for ``\p{N}``, the rest ``[^\s\w]`` or ``_``
_SPLIT = re.compile(r"'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")
#: words kept in a word cache before it starts afresh (bounds its memory on an open-ended corpus)
WORD_CACHE_SIZE = 1 << 18


class _WordCache:
    """Byte-level BPE by pre-tokenized word: a text is split with :data:`_SPLIT` in Python and each word's
    ids come from a cache, the library encoding only words not seen before (a word's BPE never depends
    on its neighbours). Exactly the library's ids: it applies only to a tokenizer whose one text
    transformation is the GPT-2 ``ByteLevel`` split (no normalizer), and only to texts whose every
    character was probed to fall in the same class (letter, number, space, other) under both patterns
    (``\p{L}`` and ``[^\W\d_]`` differ on e.g. superscript digits) and that hold no added token; other
    texts go to the library whole. Several times faster than the library's own split on one core."""

    def __init__(self, tok: "tokenizers.Tokenizer", added: list[str]) -> None:
        self._tok = tok
        self._added = added
        self._ids: dict[str, list[int]] = {}
        self._same: set[str] = set()  # characters probed: the same class under both patterns
        self._differ: set[str] = set()

    @classmethod
    def build(cls, tok: "tokenizers.Tokenizer") -> "_WordCache | None":
        """The cache for ``tok``, or None where its pre-tokenization is not the GPT-2 ByteLevel split."""
        cfg = json.loads(tok.to_str())
        pre = cfg.get("pre_tokenizer") or {}
        if (cfg.get("normalizer") is not None or pre.get("type") != "ByteLevel" or not pre.get("use_regex", True)
                or pre.get("add_prefix_space") or (cfg.get("model") or {}).get("dropout")):
            return None
        return cls(tok, [a["content"] for a in cfg.get("added_tokens") or [] if a.get("content")])

    def _probe(self, c: str) -> bool:
        """Whether ``c`` splits alike under both patterns, next to letters, digits, punctuation and space."""
        s = f"a{c}a 1{c}1 !{c}! {c}{c} {c}\n{c}"
        ours = [m.span() for m in _SPLIT.finditer(s)]
        theirs = [span for _, span in self._tok.pre_tokenizer.pre_tokenize_str(s)]
        return ours == theirs

    def _splits_alike(self, text: str) -> bool:
        chars = set(text)
        new = chars - self._same - self._differ
        for c in new:
            (self._same if self._probe(c) else self._differ).add(c)
        return not (chars & self._differ) and not any(a in text for a in self._added)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """``texts -> ids per text``, as ``tokenizers.Tokenizer.encode_batch(texts, add_special_tokens=False)``."""
        if len(self._ids) > WORD_CACHE_SIZE:
            self._ids.clear()
        ids = self._ids
        out: list[list[int] | None] = [None] * len(texts)
        split: dict[int, list[str]] = {}  # texts with a word not in the cache yet
        whole: list[int] = []  # texts the library encodes itself
        for i, t in enumerate(texts):
            if not self._splits_alike(t):
                whole.append(i)
                continue
            ws = _SPLIT.findall(t)
            try:
                out[i] = list(chain.from_iterable(map(ids.__getitem__, ws)))
            except KeyError:
                split[i] = ws
        if split:
            new = list({w for ws in split.values() for w in ws if w not in ids})
            for w, e in zip(new, self._tok.encode_batch_fast(new, add_special_tokens=False)):
                ids[w] = e.ids
            for i, ws in split.items():
                out[i] = list(chain.from_iterable(map(ids.__getitem__, ws)))
        if whole:
            for i, e in zip(whole, self._tok.encode_batch_fast([texts[i] for i in whole], add_special_tokens=False)):
                out[i] = list(e.ids)
        return out  # type: ignore[return-value]


def _as_id_list(ids: Iterable[int], vocab_size: int) -> list[int]:
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"decode expects a sequence of int ids, got {type(ids).__name__}")
    if hasattr(ids, "tolist"):  # torch tensor / numpy array
        if getattr(ids, "ndim", 1) != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got {getattr(ids, 'ndim')}-D")
        ids = ids.tolist()
    try:
        out = list(ids)
    except TypeError:
        raise ValueError(f"decode expects a sequence of int ids, got {type(ids).__name__}") from None
    for i in out:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"token ids must be int, got {type(i).__name__}")
        if not 0 <= i < vocab_size:
            raise ValueError(f"token id {i} out of range [0, {vocab_size})")
    return out


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``texts`` (deterministic for the same input).

    The vocabulary holds the 256 byte symbols, ``<|endoftext|>`` and learned merges.
    """
    from tokenizers import Tokenizer as _Tok
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if not isinstance(vocab_size, int) or vocab_size < 300:
        raise ValueError(f"vocab_size must be an int >= 300, got {vocab_size!r}")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty sequence of str")
    tok = _Tok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(tok)
