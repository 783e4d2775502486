"""Detection statistics shared by every text scheme: dedup, global test, windowed (WinMax-style) search.

A scheme turns token ids into per-token scores (:class:`TokenScores`); :func:`detect_scores` sums
them over the scored positions and reads the p-value off the scheme's null distribution.
:class:`StreamingDetection` runs the same test on a sequence fed in pieces (long files).

Repeated draws. A position's draw is identified by its (seed, token) key; equal keys are
the same pseudorandom draw. A p-value's guarantee is over the key, but a user holds ONE key, and
draws that recur across documents (frequent n-grams: ", and", the line break of hard-wrapped text,
code idioms; for a min-hash seeding every n-gram whose min-hash anchor is a frequent token) have a
green-ness fixed by that key, which shifts every document's score the same way: a per-key bias
whose variance over keys is about ``sum_j P_j**2 / n`` (``P_j``: the chance that draw ``j`` is
scored in a text). Frequent draws are exactly the ones that repeat inside a text, so the default
``repeats="drop"`` scores only the draws that occur ONCE among the scored positions (every copy of a
repeated draw is left out), which turns ``P_j = 1 - exp(-m_j)`` (first occurrence, ``m_j`` the
draw's expected count in a text) into ``m_j exp(-m_j)``: frequent draws no longer count. Which
positions are scored depends only on the token ids and the context table (never on the scoring
table), so the scored draws are distinct and their null stays the exact Binomial / Gamma one
(``repeats="first"``: score each key's first occurrence instead).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wmark.stats import bonferroni


@dataclass(frozen=True)
class TokenScores:
    """Per-position scores of a padded batch.

    ``scores [B, L]`` float64 score of the token at ``positions[b, i]`` (NaN where not valid);
    ``positions [B, L]`` its index in the input sequence; ``valid [B, L]`` bool, scored: inside the
    real length (with a padding mask: a real token after ``history`` real ones, see
    :func:`masked_token_scores`); ``keys [B, L]`` int64 identity of (seed, token) — two positions with equal keys get
    the same pseudorandom draw, so only the first is an independent trial (dedup);
    ``lengths [B]``; ``history`` context tokens before the first scored position.
    """

    scores: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor
    keys: torch.Tensor
    lengths: torch.Tensor
    history: int


@dataclass(frozen=True)
class WindowResult:
    """Best window found by the windowed search (token indices ``[start, end)`` of the input)."""

    start: int
    end: int
    num_scored: int
    score: float
    z_score: float
    p_value: float  #: uncorrected p-value of this window
    p_value_corrected: float  #: Bonferroni-corrected for ``num_windows`` windows searched
    num_windows: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of every field (plain ints and floats)."""
        return {"start": int(self.start), "end": int(self.end), "p_value": float(self.p_value),
                "p_value_corrected": float(self.p_value_corrected), "z_score": float(self.z_score),
                "num_scored": int(self.num_scored), "score": float(self.score), "num_windows": int(self.num_windows)}


@dataclass(frozen=True)
class DetectionResult:
    """Detection of one sequence.

    ``score``: green count (KGW, Unigram), sum of -log(1-r) (Gumbel) or sum of g-values
    (tournament) over the ``num_scored`` scored tokens; ``z_score`` its standardised value;
    ``p_value`` the exact tail under "not marked with this key"; ``detected``: the p-value (the
    window's corrected one when ``window`` is set) is below ``alpha``.
    """

    scheme: str
    num_tokens: int
    num_scored: int
    score: float
    z_score: float
    p_value: float
    alpha: float
    detected: bool
    window: WindowResult | None = None

    @property
    def mean_score(self) -> float:
        """Score per scored token (the green fraction for KGW / Unigram)."""
        return self.score / self.num_scored if self.num_scored else float("nan")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of every field (plain bools, ints, floats); ``window`` only when set."""
        out: dict[str, Any] = {"detected": bool(self.detected), "p_value": float(self.p_value),
                               "z_score": float(self.z_score), "num_scored": int(self.num_scored),
                               "num_tokens": int(self.num_tokens), "score": float(self.score),
                               "scheme": self.scheme, "alpha": float(self.alpha)}
        if self.window is not None:
            out["window"] = self.window.to_json()
        return out


@dataclass(frozen=True)
class BatchDetection:
    """Detection of a padded batch: numpy arrays ``[B]`` per field; ``batch[i]`` is a
    :class:`DetectionResult`."""

    scheme: str
    num_tokens: np.ndarray
    num_scored: np.ndarray
    score: np.ndarray
    z_score: np.ndarray
    p_value: np.ndarray
    alpha: float
    detected: np.ndarray
    windows: tuple[WindowResult | None, ...]

    def __len__(self) -> int:
        return len(self.p_value)

    def __getitem__(self, i: int) -> DetectionResult:
        return DetectionResult(self.scheme, int(self.num_tokens[i]), int(self.num_scored[i]),
                               float(self.score[i]), float(self.z_score[i]), float(self.p_value[i]),
                               self.alpha, bool(self.detected[i]), self.windows[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def to_json(self) -> list[dict[str, Any]]:
        """One :meth:`DetectionResult.to_json` dict per row."""
        return [r.to_json() for r in self]


def _as_ids(ids: Any) -> torch.Tensor:
    """Token ids ``[T]`` or ``[B, T]`` (list, numpy, tensor) -> LongTensor ``[B, T]`` (shape and dtype checked)."""
    if torch.is_tensor(ids):
        t = ids
    else:
        try:
            t = torch.as_tensor(np.asarray(ids))
        except (ValueError, TypeError):
            raise ValueError("token ids must be a rectangular array of integers") from None
    if t.numel() == 0:
        raise ValueError("no tokens to score (empty text)")
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"token ids must be integers, got {t.dtype}")
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2:
        raise ValueError(f"token ids must be [T] or [B, T], got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def _as_lengths(lengths: Any, B: int, T: int, device: torch.device) -> torch.Tensor:
    if lengths is None:
        return torch.full((B,), T, dtype=torch.int64, device=device)
    lens = torch.as_tensor(lengths, dtype=torch.int64, device=device).reshape(-1)
    if lens.shape[0] != B or bool((lens < 0).any()) or bool((lens > T).any()):
        raise ValueError(f"lengths must be {B} values in [0, {T}]")
    return lens


def as_batch(ids: Any, lengths: Any, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate token ids ``[T]`` or ``[B, T]`` (list, numpy, tensor) -> (LongTensor [B, T], lengths [B]).
    ``lengths``: the real length of each right-padded row (default T); ids past it are not checked.
    For left padding, padding inside a row and pad / EOS tokens see :func:`real_tokens`."""
    t = _as_ids(ids)
    B, T = t.shape
    lens = _as_lengths(lengths, B, T, t.device)
    if B == 0 or int(lens.max()) == 0:
        raise ValueError("no tokens to score (empty text)")
    if bool((lens == T).all()):
        lo, hi = int(t.min()), int(t.max())
    else:
        inside = torch.arange(T, device=t.device)[None, :] < lens[:, None]
        lo, hi = int(torch.where(inside, t, 0).min()), int(torch.where(inside, t, 0).max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"token id {lo if lo < 0 else hi} out of range for vocab_size {vocab_size}")
    return t, lens


def _token_ids(value: Any, what: str) -> list[int]:
    if value is None:
        return []
    vals = [value] if isinstance(value, (int, np.integer)) else list(value)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        raise ValueError(f"{what} must be a token id or a list of token ids, got {value!r}")
    return [int(v) for v in vals]


def real_tokens(ids: Any, lengths: Any = None, *, attention_mask: Any = None, pad_id: Any = None,
                eos_id: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which tokens of a padded batch are text: -> (ids LongTensor ``[B, T]``, real ``[B, T]`` bool).

    A token is real where it is inside ``lengths`` (right padding), where ``attention_mask`` is
    non-zero (left or right padding; a mask narrower than ``ids``, e.g. the prompt mask given to
    ``generate()``, covers the first columns and the rest counts as real) and where it is neither
    ``pad_id`` nor ``eos_id`` (a token id or a list of them: Hugging Face fills finished rows with
    the pad token, often the EOS token)."""
    t = _as_ids(ids)
    B, T = t.shape
    real = torch.arange(T, device=t.device)[None, :] < _as_lengths(lengths, B, T, t.device)[:, None]
    if attention_mask is not None:
        m = attention_mask if torch.is_tensor(attention_mask) else torch.as_tensor(np.asarray(attention_mask))
        if m.dim() == 1:
            m = m[None]
        if m.dim() != 2 or m.shape[0] != B or m.shape[1] > T:
            raise ValueError(f"attention_mask must be [B, P] with B = {B} and P <= {T} (the ids' shape), got "
                             f"shape {tuple(m.shape)}")
        m = (m != 0).to(t.device)
        if m.shape[1] < T:
            m = torch.cat([m, torch.ones(B, T - m.shape[1], dtype=torch.bool, device=t.device)], dim=1)
        real &= m
    for tok in _token_ids(pad_id, "pad_id") + _token_ids(eos_id, "eos_id"):
        real &= t != tok
    return t, real


def masked_token_scores(scheme: Any, ids: Any, lengths: Any = None, *, attention_mask: Any = None,
                        pad_id: Any = None, eos_id: Any = None) -> TokenScores:
    """``scheme.token_scores`` of a batch with padding anywhere: a position is scored only where its
    token and the ``history`` context tokens before it are all real (:func:`real_tokens`), so a
    left-padded row scores exactly as the same row unpadded, and pad / EOS tokens never count.
    ``lengths`` of the result: the number of real tokens per row."""
    if attention_mask is None and pad_id is None and eos_id is None:
        return scheme.token_scores(ids, lengths)
    t, real = real_tokens(ids, lengths, attention_mask=attention_mask, pad_id=pad_id, eos_id=eos_id)
    if not bool(real.any()):
        raise ValueError("no tokens to score (every token is padding)")
    # padding may hold any id (even out of range): it is never scored nor read as context
    ts = scheme.token_scores(torch.where(real, t, torch.zeros_like(t)))
    h = ts.history
    if ts.scores.shape[1] == 0:
        return TokenScores(ts.scores, ts.positions, ts.valid, ts.keys, real.sum(1), h)
    ctx_real = real.unfold(1, h + 1, 1).all(-1)  # [B, T - h]: token at position h + i and its context
    valid = ts.valid & ctx_real
    return TokenScores(ts.scores.masked_fill(~valid, float("nan")), ts.positions, valid, ts.keys, real.sum(1), h)


#: repeat rules of :func:`detect_scores` / :class:`StreamingDetection` (``dedup=True``)
REPEATS = ("drop", "first")
#: named detectors for benchmarks (keyword arguments of :func:`detect_scores`): ``baseline`` scores the
#: first occurrence of each draw, ``default`` is what ``scheme.detect`` uses
VARIANTS: dict[str, dict[str, Any]] = {"baseline": {"repeats": "first"}, "default": {"repeats": "drop"}}


def seed_keys(c: torch.Tensor, a: torch.Tensor | None, tokens: torch.Tensor,
              u: torch.Tensor | None = None) -> torch.Tensor:
    """int64 identity ``[...]`` of a draw: ``uint32(seed) * 2**31 + token`` with ``seed = c``
    (context-seeded), or for a self-seeded scheme ``umin(c, u) ^ mix32(a)`` where ``u`` is the
    candidate's context-table value: the min-hash seed the draw really uses, so one draw has one key
    whichever earlier context tokens lost the min-hash (without ``u``: ``c ^ mix32(a)``, finer).
    Equal keys mean identical draws."""
    from wmark.text import hashing

    seed = c if u is None else hashing.umin(c, u)
    if a is not None:
        seed = seed ^ hashing.mix32(a)
    return hashing.to_u32(seed) * (1 << 31) + tokens.to(torch.int64)


def _check_repeats(repeats: str) -> None:
    if repeats not in REPEATS:
        raise ValueError(f"repeats must be one of {', '.join(REPEATS)}, got {repeats!r}")


def _sorted_keys(keys: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's keys sorted stably (invalid positions last, as int64 max): (``same [B, L - 1]``:
    the sorted key equals the next one, ``idx [B, L]``: the sort's permutation)."""
    k = keys.masked_fill(~valid, torch.iinfo(torch.int64).max)
    sk, idx = torch.sort(k, dim=1, stable=True)  # equal keys keep position order
    return sk[:, 1:] == sk[:, :-1], idx


def once_only(keys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: valid positions whose key occurs exactly once among the valid positions of
    its row (every copy of a repeated key is False). One batched sort per row."""
    same, idx = _sorted_keys(keys, valid)
    dup = torch.zeros_like(valid)
    dup[:, 1:] |= same
    dup[:, :-1] |= same
    return torch.empty_like(valid).scatter_(1, idx, ~dup) & valid


def first_occurrence(keys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: valid positions whose key has not occurred earlier (among valid) in its row.
    One batched stable sort per row; invalid positions sort last and are never first."""
    same, idx = _sorted_keys(keys, valid)
    first_sorted = torch.ones_like(valid)
    first_sorted[:, 1:] = ~same
    return torch.empty_like(valid).scatter_(1, idx, first_sorted) & valid


def window_lengths(n: int, min_window: int) -> list[int]:
    """Window sizes searched for ``n`` scored tokens: geometric (ratio sqrt 2) from ``min_window``,
    always including ``n`` itself (the global test)."""
    sizes, size = [], float(max(1, min_window))
    while size < n:
        sizes.append(int(round(size)))
        size *= 2 ** 0.5
    sizes.append(n)
    return sorted(set(sizes))


def window_layout(n: int, min_window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every window searched over ``n`` scored tokens, in the order sizes then starts: ``starts [W]``,
    ``sizes [W]`` and the index in them where each size's windows begin ``[S]``. Windows of each size
    in :func:`window_lengths` start every ``max(1, size // 4)`` tokens, plus the one ending at ``n``."""
    sz = np.asarray(window_lengths(n, min_window), dtype=np.int64)
    step = np.maximum(1, sz // 4)
    count = (n - sz) // step + 1
    per = count + ((count - 1) * step != n - sz)
    first = np.zeros(len(sz), dtype=np.int64)
    np.cumsum(per[:-1], out=first[1:])
    g = np.repeat(np.arange(len(sz)), per)
    k = np.arange(int(per.sum())) - first[g]
    return np.where(k < count[g], k * step[g], n - sz[g]), sz[g], first


def window_search(s: np.ndarray, pos: np.ndarray, null, min_window: int) -> WindowResult:
    """Best window over the kept per-token scores ``s [n]`` (at input positions ``pos [n]``) among
    :func:`window_layout`'s. A null's p-value falls as the score rises at a fixed size, so only each
    size's largest sum is tested; the Bonferroni factor counts every window."""
    n = len(s)
    cs = np.empty(n + 1, dtype=np.float64)  # prefix sums, filled in place (no second copy)
    cs[0] = 0.0
    np.cumsum(s, out=cs[1:])
    starts, sizes, first = window_layout(n, min_window)
    sums = cs[starts + sizes] - cs[starts]
    best = np.maximum.reduceat(sums, first)  # per size
    hits = np.flatnonzero(sums == np.repeat(best, np.diff(np.append(first, len(sums)))))
    at = hits[np.searchsorted(hits, first)]  # per size, its first window with that sum
    pv = np.asarray(null.p_value(best, sizes[first]), dtype=np.float64).reshape(-1)
    j = int(np.argmin(pv))  # the first size with the smallest p; in it, the first window with the largest sum
    i = int(at[j])
    p, start, size, score = float(pv[j]), int(starts[i]), int(sizes[i]), float(sums[i])
    return WindowResult(start=int(pos[start]), end=int(pos[start + size - 1]) + 1, num_scored=size,
                        score=score, z_score=float(null.z(score, size)), p_value=p,
                        p_value_corrected=float(bonferroni(p, len(starts))), num_windows=len(starts))


def scored_positions(ts: TokenScores, *, dedup: bool = True, repeats: str = "drop",
                     ignore_prefix: int = 0) -> torch.Tensor:
    """``[B, L]`` bool: the positions the test scores. Valid positions at or after ``ignore_prefix``;
    with ``dedup`` and ``repeats="drop"`` only those whose draw occurs once among them, with
    ``repeats="first"`` the first occurrence of each draw (see the module docstring)."""
    _check_repeats(repeats)
    keep = ts.valid & (ts.positions >= ignore_prefix)
    if dedup and keep.any():
        keep = keep & (once_only if repeats == "drop" else first_occurrence)(ts.keys, keep)
    return keep


def detect_scores(ts: TokenScores, null, *, scheme: str, alpha: float = 1e-3, dedup: bool = True,
                  ignore_prefix: int = 0, windowed: bool = False, min_window: int = 50,
                  repeats: str = "drop") -> BatchDetection:
    """Global (and optionally windowed) test on per-token scores at :func:`scored_positions`."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if ignore_prefix < 0:
        raise ValueError(f"ignore_prefix must be >= 0, got {ignore_prefix}")
    keep = scored_positions(ts, dedup=dedup, repeats=repeats, ignore_prefix=ignore_prefix)
    vals = torch.where(keep, ts.scores, torch.zeros_like(ts.scores))
    n = keep.sum(1).cpu().numpy()
    s = vals.sum(1).cpu().numpy()
    p, z = _global_test(null, s, n)
    windows: list[WindowResult | None] = [None] * len(n)
    decide = p.copy()
    if windowed:
        km, sc, ps = keep.cpu().numpy(), ts.scores.cpu().numpy(), ts.positions.cpu().numpy()
        for b in range(len(n)):
            if n[b] == 0:
                continue
            m = km[b]
            windows[b] = window_search(sc[b][m], ps[b][m], null, min_window)
            decide[b] = windows[b].p_value_corrected
    return BatchDetection(scheme=scheme, num_tokens=ts.lengths.cpu().numpy(), num_scored=n, score=s,
                          z_score=z, p_value=p, alpha=alpha, detected=decide < alpha, windows=tuple(windows))


def _global_test(null, s: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p-values, z-scores) ``[B]`` of score sums ``s [B]`` over ``n [B]`` tokens."""
    return (np.asarray(null.p_value(s, n), dtype=np.float64).reshape(-1),
            np.asarray(null.z(s, n), dtype=np.float64).reshape(-1))


class StreamingDetection:
    """The test of :func:`detect_scores` on ONE sequence fed in pieces, in memory bounded by the
    statistics (not by the sequence).

    ``feed(ids)`` appends token ids; the scheme's context window (the last ``history`` tokens) is
    carried over, so every position is scored exactly as in ``scheme.detect(all_ids)``. Scores are
    summed per piece: identical for the count schemes (KGW, Unigram, tournament ``mean``), equal up
    to float64 rounding (relative 1e-12) for the real-valued ones (Gumbel, tournament ``weighted``).

    State (``dedup``): the keys already seen; with ``repeats="first"`` 8 bytes per distinct kept
    key (and, with ``windowed``, the kept scores and positions: 12 bytes per scored token, as much
    again for the window search at the end); with ``repeats="drop"`` (a draw seen twice is dropped
    even after its first copy was fed) 25 bytes per distinct key: its key, first score, first
    position and whether it repeated. Without ``dedup`` (and ``windowed``) it is constant.
    """

    def __init__(self, scheme: Any, *, dedup: bool = True, ignore_prefix: int = 0, windowed: bool = False,
                 repeats: str = "drop") -> None:
        if ignore_prefix < 0:
            raise ValueError(f"ignore_prefix must be >= 0, got {ignore_prefix}")
        _check_repeats(repeats)
        self.scheme = scheme
        self.dedup = dedup
        self.repeats = repeats
        self.ignore_prefix = int(ignore_prefix)
        self.windowed = windowed
        self.history: int = scheme.seeding.history
        self.num_tokens = 0
        self.num_scored = 0
        self.score = 0.0
        self._tail = np.zeros(0, dtype=np.int64)  # the last min(history, num_tokens) ids
        self._seen = np.zeros(0, dtype=np.int64)  # sorted keys of the kept (or, "drop": all valid) positions
        self._drop = dedup and repeats == "drop"
        if self._drop:  # per seen key (in the order of _seen): first score, first position, repeated
            self._first_score = np.zeros(0, dtype=np.float64)
            self._first_pos = np.zeros(0, dtype=np.int64)
            self._repeated = np.zeros(0, dtype=bool)
        self._kept_scores: list[np.ndarray] = []  # per piece, windowed only
        self._kept_pos: list[np.ndarray] = []  # int32 while positions fit

    def feed(self, ids: Any) -> None:
        """Score the next token ids ``[T]`` (list, numpy or tensor) of the sequence."""
        new = ids.cpu().numpy() if torch.is_tensor(ids) else np.asarray(ids)
        new = new.astype(np.int64, copy=False).reshape(-1)
        if new.size == 0:
            return
        seq = np.concatenate([self._tail, new])
        offset = self.num_tokens - len(self._tail)  # input position of seq[0]
        ts = self.scheme.token_scores(torch.from_numpy(seq))  # validates ids; scores positions >= history
        self.num_tokens += int(new.size)
        self._tail = seq[len(seq) - min(self.history, len(seq)):].copy()
        if ts.scores.shape[1] == 0:
            return
        pos = ts.positions[0] + offset
        keep = ts.valid[0] & (pos >= self.ignore_prefix)
        if self._drop:
            self._feed_drop(ts, pos, keep)
            return
        if self.dedup and bool(keep.any()):
            keep &= first_occurrence(ts.keys, keep[None])[0]
            where = torch.nonzero(keep).reshape(-1).numpy()
            keys = ts.keys[0].numpy()[where]  # distinct within the piece
            order = np.argsort(keys)
            sk = keys[order]
            at = np.searchsorted(self._seen, sk)  # sorted queries: one pass over the seen keys
            fresh = np.ones(len(sk), dtype=bool)
            if len(self._seen):
                fresh = self._seen[np.minimum(at, len(self._seen) - 1)] != sk
            self._seen = np.insert(self._seen, at[fresh], sk[fresh])
            keep = torch.zeros_like(keep)
            keep[torch.from_numpy(where[order[fresh]])] = True
        vals = ts.scores[0][keep]
        self.num_scored += int(vals.numel())
        self.score += float(vals.sum())
        if self.windowed and vals.numel():
            p = pos[keep].numpy()
            self._kept_scores.append(vals.numpy())
            self._kept_pos.append(p.astype(np.int32) if self.num_tokens < 2**31 else p.copy())

    def _feed_drop(self, ts: TokenScores, pos: torch.Tensor, keep: torch.Tensor) -> None:
        """``repeats="drop"``: merge the piece's keys into the seen ones, marking repeats."""
        where = torch.nonzero(keep).reshape(-1).numpy()
        if not len(where):
            return
        keys = ts.keys[0].numpy()[where]
        order = np.argsort(keys, kind="stable")  # equal keys keep position order
        sk = keys[order]
        first = np.ones(len(sk), dtype=bool)
        first[1:] = sk[1:] != sk[:-1]
        starts = np.flatnonzero(first)
        uk = sk[starts]
        rep_in_piece = np.diff(np.append(starts, len(sk))) > 1
        src = where[order[starts]]  # the first position of each distinct key of the piece
        at = np.searchsorted(self._seen, uk)
        old = np.zeros(len(uk), dtype=bool)
        if len(self._seen):
            old = self._seen[np.minimum(at, len(self._seen) - 1)] == uk
        self._repeated[at[old]] = True
        fresh = ~old
        self._seen = np.insert(self._seen, at[fresh], uk[fresh])
        self._first_score = np.insert(self._first_score, at[fresh], ts.scores[0].numpy()[src[fresh]])
        self._first_pos = np.insert(self._first_pos, at[fresh], pos.numpy()[src[fresh]])
        self._repeated = np.insert(self._repeated, at[fresh], rep_in_piece[fresh])

    def _totals(self) -> None:
        """``repeats="drop"``: num_scored and score of the keys seen once (in position order)."""
        once = ~self._repeated
        order = np.argsort(self._first_pos[once], kind="stable")
        scores = self._first_score[once][order]
        self.num_scored = int(len(scores))
        self.score = float(scores.sum()) if len(scores) else 0.0
        if self.windowed:
            self._kept_scores = [scores]
            self._kept_pos = [self._first_pos[once][order]]

    def result(self, *, alpha: float = 1e-3, min_window: int = 50) -> DetectionResult:
        """The detection of everything fed so far (as :meth:`TextWatermark.detect` would give)."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if self.num_tokens == 0:
            raise ValueError("no tokens to score (empty text)")
        if self._drop:
            self._totals()
        null = self.scheme.null
        n, s = np.array([self.num_scored], dtype=np.int64), np.array([self.score], dtype=np.float64)
        p, z = _global_test(null, s, n)
        window, decide = None, float(p[0])
        if self.windowed and self.num_scored:
            scores = np.concatenate(self._kept_scores)
            self._kept_scores = [scores]  # keep the joined array, drop the pieces
            positions = np.concatenate(self._kept_pos)
            self._kept_pos = [positions]
            window = window_search(scores, positions, null, min_window)
            decide = window.p_value_corrected
        return DetectionResult(self.scheme.params["scheme"], self.num_tokens, self.num_scored, self.score, float(z[0]),
                               float(p[0]), alpha, decide < alpha, window)
