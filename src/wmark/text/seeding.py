"""Context seeding: how the last ``h`` tokens become a per-position seed (a registry by name).

A seeding turns a window of previous tokens ``[..., history]`` (each token read from the scheme's
keyed context table ``u``, a :func:`~wmark.text.hashing.prf_table`) into an int32 context hash ``c``
(and, when *self-seeded*, an anchor hash ``a``; the candidate token then joins the min-hash through
the same table ``u``). Generator and detector both call :meth:`Seeding.seeds`, so they cannot diverge.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from wmark.text import hashing


@dataclass(frozen=True)
class Seeding:
    """A seeding rule. ``history``: previous tokens it reads; ``self_seeded``: the candidate token
    itself enters the seed (selfhash), so green lists must be computed per candidate."""

    name: str
    history: int
    self_seeded: bool
    _fn: Callable[[torch.Tensor, int], torch.Tensor]

    def seeds(self, window: torch.Tensor, table: torch.Tensor, init: int, anchor: int
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``window [..., history]`` token ids in [0, V) or :data:`~wmark.text.hashing.SENTINEL_ID`
        (-1, before the start; callers validate the ids) -> (``c [...]`` int32, ``a [...]`` int32
        anchor hash or None). ``table [V + 1]`` int32: the keyed value of each token id, the
        sentinel's at index V; ``init`` / ``anchor``: keyed int32 constants (the ngram hash's start
        and unigram's constant seed / the anchor's xor)."""
        if window.shape[-1] != self.history:
            raise ValueError(f"{self.name} needs {self.history} context tokens, got {window.shape[-1]}")
        hx = table[torch.where(window == hashing.SENTINEL_ID, table.shape[0] - 1, window)]
        c = self._fn(hx, init)
        a = None
        if self.self_seeded and self.history:
            a = hashing.mix32(hx[..., -1] ^ anchor)
        return c, a


def _constant(hx: torch.Tensor, init: int) -> torch.Tensor:
    return torch.full(hx.shape[:-1], init, dtype=torch.int32, device=hx.device)


def _left(hx: torch.Tensor, init: int) -> torch.Tensor:
    return hx[..., -1]


def make_seeding(name: str, context_width: int | None = None) -> Seeding:
    """Build a seeding by name: ``unigram`` (h=0, one fixed green list), ``lefthash`` (h=1),
    ``minhash`` (min-hash of the previous h tokens, default 4), ``selfhash`` (anchored min-hash
    over h tokens *including the candidate*, default h=4), ``ngram`` (order-sensitive hash of the
    previous h tokens, default 4)."""
    if name not in SEEDINGS:
        raise ValueError(f"unknown seeding {name!r}; choose from {sorted(SEEDINGS)}")
    default_h, factory = SEEDINGS[name]
    h = default_h if context_width is None else int(context_width)
    if name in ("unigram",) and h != 0:
        raise ValueError("unigram seeding has context_width 0")
    if name == "lefthash" and h != 1:
        raise ValueError("lefthash seeding has context_width 1 (use 'ngram' or 'minhash' for more)")
    if name != "unigram" and h < 1:
        raise ValueError(f"{name} needs context_width >= 1, got {h}")
    return factory(h)


SEEDINGS: dict[str, tuple[int, Callable[[int], Seeding]]] = {
    "unigram": (0, lambda h: Seeding("unigram", 0, False, _constant)),
    "lefthash": (1, lambda h: Seeding("lefthash", 1, False, _left)),
    "minhash": (4, lambda h: Seeding("minhash", h, False, hashing.context_min)),
    # selfhash: the window of h tokens includes the candidate, so h - 1 previous tokens are read
    "selfhash": (4, lambda h: Seeding("selfhash", h - 1, True, hashing.context_min)),
    "ngram": (4, lambda h: Seeding("ngram", h, False, hashing.context_hash)),
}
