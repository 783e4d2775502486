"""Statistical text watermarks. Each scheme is ONE object holding the key and parameters; its
generator (``__call__``, a logits processor) and its detector (``detect``) call the same seeding and
hash functions, so they cannot diverge.

Schemes (registry :data:`SCHEMES`): ``kgw`` (Kirchenbauer et al. 2023; seedings lefthash / selfhash /
minhash / ngram), ``unigram`` (Zhao et al. 2024), ``gumbel`` (Aaronson's EXP rule),
``tournament`` (SynthID-style, Dathathri et al. 2024).
"""
from __future__ import annotations

import math
import sys
import warnings
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from wmark.keys import Key
from wmark.text import hashing, ops
from wmark.text.detect import BatchDetection, DetectionResult, TokenScores, detect_scores, seed_keys
from wmark.text.nulls import BinomialNull, GammaNull, NormalNull
from wmark.text.seeding import Seeding, make_seeding


class TextWatermark(ABC):
    """Base of every text scheme: key + vocabulary + seeding; processor and detector.

    As a processor it is a callable ``(input_ids LongTensor[B, T], scores FloatTensor[B, V]) ->
    FloatTensor[B, V]``, usable in ``transformers``' ``LogitsProcessorList`` and in
    :func:`wmark.lm.generate`. Inputs are never modified in place.
    """

    name: ClassVar[str]

    def __init__(self, key: Key, vocab_size: int, *, seeding: str, context_width: int | None = None,
                 backend: str = "auto") -> None:
        if not isinstance(key, Key):
            raise TypeError(f"key must be a wmark.Key, got {type(key).__name__}")
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
        self._key = key
        self.vocab_size = vocab_size
        self.seeding: Seeding = make_seeding(seeding, context_width)
        self.backend = backend
        self._purpose = f"text/{self.name}/{seeding}"
        # keyed constants: the ngram hash's start / unigram's seed, and the anchor's xor
        self._init, self._anchor = hashing.prf_table(self._subkey("constants"), 2).tolist()
        self._tables: dict[torch.device, dict[str, torch.Tensor]] = {}
        self._caller_checked = False  # the first call looks once at who called (the HF pitfall)

    # ---- description ---------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """Public parameters (never the key)."""
        from wmark.text.names import canonical_name

        return {"scheme": canonical_name(self), "vocab_size": self.vocab_size, "seeding": self.seeding.name,
                "context_width": self.context_width, "hash": hashing.PRF}

    @property
    def context_width(self) -> int:
        """Tokens the seed depends on (for selfhash this counts the candidate itself)."""
        return self.seeding.history + int(self.seeding.self_seeded)

    @property
    def key_fingerprint(self) -> str:
        return self._key.fingerprint

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params.items() if k != "scheme")
        return f"{type(self).__name__}({inner}, key={self._key!r})"

    # ---- tables ---------------------------------------------------------------------------
    def _subkey(self, which: str) -> bytes:
        """The 256-bit PRF subkey of one of this scheme's keyed streams (the key is never cut)."""
        return self._key.derive(f"{self._purpose}/{which}", hashing.SUBKEY_BYTES)

    def _table(self, device: torch.device, which: str) -> torch.Tensor:
        """Keyed per-token tables (PRF outputs, built once per device): ``t [V]`` scores candidates;
        ``u [V + 1]`` hashes context tokens (and selfhash candidates), the sentinel -1 at index V."""
        device = torch.device(device)
        per_dev = self._tables.setdefault(device, {})
        if which not in per_dev:
            if device.type != "cpu":  # one PRF run per scheme: copy the CPU table
                per_dev[which] = self._table(torch.device("cpu"), which).to(device)
            else:
                n = {"t": self.vocab_size, "u": self.vocab_size + 1}[which]
                per_dev[which] = hashing.prf_table(self._subkey({"t": "token", "u": "context"}[which]), n)
        return per_dev[which]

    def _seeds(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Context hashes ``c`` (and anchors ``a``) of validated windows ``[..., history]``."""
        return self.seeding.seeds(window, self._table(window.device, "u"), self._init, self._anchor)

    # ---- generation -----------------------------------------------------------------------
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self._caller_checked:  # the scheme itself in transformers' logits_processor=: warn once
            self._caller_checked = True
            from wmark.text.processor import caller_warning

            message = caller_warning(sys._getframe(1), self, self)
            if message is not None:
                warnings.warn(message, UserWarning, stacklevel=2)
        return self.process(input_ids, scores)

    def process(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Watermarked next-token scores ``[B, V]`` given the sequence so far ``[B, T]``."""
        if scores.dim() != 2:
            raise ValueError(f"scores must be [batch, vocab], got shape {tuple(scores.shape)}")
        if scores.shape[-1] != self.vocab_size:
            raise ValueError(f"scores have {scores.shape[-1]} columns but the scheme's vocab_size is "
                             f"{self.vocab_size}")
        if input_ids.dim() != 2 or input_ids.shape[0] != scores.shape[0]:
            raise ValueError(f"input_ids must be [batch, time] with batch {scores.shape[0]}, got shape "
                             f"{tuple(input_ids.shape)}")
        c, a = self._seeds(self._last_window(input_ids))
        return self._process(scores, c, a)

    def _last_window(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.seeding.history
        window = input_ids[:, input_ids.shape[1] - min(h, input_ids.shape[1]):]
        if window.numel() and (int(window.min()) < 0 or int(window.max()) >= self.vocab_size):
            bad = int(window.max()) if int(window.max()) >= self.vocab_size else int(window.min())
            raise ValueError(f"token id {bad} out of range for vocab_size {self.vocab_size}")
        if window.shape[1] < h:  # sequence start: missing context tokens are the sentinel -1
            pad = torch.full((input_ids.shape[0], h - window.shape[1]), hashing.SENTINEL_ID,
                             dtype=window.dtype, device=window.device)
            window = torch.cat([pad, window], dim=1)
        return window

    @abstractmethod
    def _process(self, scores: torch.Tensor, c: torch.Tensor, a: torch.Tensor | None) -> torch.Tensor:
        """Scheme-specific logits transform given context hashes ``c [B]`` (and anchors ``a``)."""

    def processor(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """A Hugging Face ``LogitsProcessor`` wrapping this scheme (plain callable where
        transformers is not installed)."""
        from wmark.text.processor import make_logits_processor

        return make_logits_processor(self)

    # ---- detection ------------------------------------------------------------------------
    @property
    @abstractmethod
    def null(self) -> BinomialNull | GammaNull | NormalNull:
        """Distribution of one token's score on unmarked text (summed over n tokens)."""

    @abstractmethod
    def _score(self, c: torch.Tensor, a: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """Per-token detection score ``[...]`` float64 for context hashes ``c`` and tokens."""

    def token_scores(self, ids: Any, lengths: Any = None) -> TokenScores:
        """Per-token scores of a sequence ``[T]`` or padded batch ``[B, T]`` (see :class:`TokenScores`).
        Positions without a full context are not scored."""
        from wmark.text.detect import as_batch

        ids, lengths = as_batch(ids, lengths, self.vocab_size)
        h = self.seeding.history
        B, T = ids.shape
        if T <= h:
            empty = torch.zeros(B, 0, dtype=torch.float64)
            return TokenScores(empty, torch.zeros(B, 0, dtype=torch.int64), torch.zeros(B, 0, dtype=torch.bool),
                               torch.zeros(B, 0, dtype=torch.int64), lengths, h)
        windows = ids.unfold(1, h + 1, 1)  # [B, T - h, h + 1]
        ctx, tok = windows[..., :h], windows[..., h]
        c, a = self._seeds(ctx)
        scores = self._score(c, a, tok)
        # self-seeded: the draw's seed is umin(c, u[token]) (detect.seed_keys), one key per draw
        u_tok = self._table(ids.device, "u")[tok] if self.seeding.self_seeded else None
        pos = torch.arange(h, T, device=ids.device)
        valid = pos[None, :] < lengths[:, None]
        return TokenScores(scores.to(torch.float64).masked_fill(~valid, float("nan")),
                           pos.expand(B, -1), valid, seed_keys(c, a, tok, u_tok), lengths, h)

    def detect(self, ids: Any, *, alpha: float = 1e-3, dedup: bool = True, ignore_prefix: int = 0,
               windowed: bool = False, min_window: int = 50) -> DetectionResult:
        """Detect the mark in ONE sequence of token ids ``[T]`` (list, numpy or tensor).

        ``dedup`` ignores repeated (context, token) n-grams; ``ignore_prefix`` skips scoring the
        first tokens (e.g. the prompt; they still serve as context); ``windowed`` also searches
        windows for a marked span (p-value corrected for the windows searched).
        """
        seq = torch.as_tensor(np.asarray(ids) if not torch.is_tensor(ids) else ids)
        if seq.dim() != 1:
            raise ValueError(f"detect() takes one sequence [T]; use detect_batch() for shape {tuple(seq.shape)}")
        return self.detect_batch(seq[None], alpha=alpha, dedup=dedup, ignore_prefix=ignore_prefix,
                                 windowed=windowed, min_window=min_window)[0]

    def detect_batch(self, ids: Any, lengths: Any = None, *, attention_mask: Any = None, pad_id: Any = None,
                     eos_id: Any = None, alpha: float = 1e-3, dedup: bool = True, ignore_prefix: int = 0,
                     windowed: bool = False, min_window: int = 50) -> BatchDetection:
        """Detect the mark in a padded batch ``[B, T]``: ``lengths [B]`` real lengths of right-padded
        rows (default T); ``attention_mask`` (left or right padding; a prompt mask narrower than ids
        covers their first columns), ``pad_id`` / ``eos_id`` (ids never scored, e.g. the pad and EOS
        tokens Hugging Face appends to finished rows): see :func:`wmark.text.detect.real_tokens`."""
        from wmark.text.detect import masked_token_scores

        ts = masked_token_scores(self, ids, lengths, attention_mask=attention_mask, pad_id=pad_id, eos_id=eos_id)
        return detect_scores(ts, self.null, scheme=self.params["scheme"], alpha=alpha, dedup=dedup,
                             ignore_prefix=ignore_prefix, windowed=windowed, min_window=min_window)


# ------------------------------------------------------------------------------------------------
#: default ``lean`` of the green-list schemes: a key's green fraction on human text is gamma + b_k
#: with b_k the key's lean on the draws that recur across texts; over 50 keys its sd was 0.004-0.02
#: (books, code, lists; two tokenizers; bench/README.md, 'FPR per key'), so testing against
#: gamma + 0.01 keeps every key's false-positive rate near or below alpha
DEFAULT_LEAN = 0.01


class KGW(TextWatermark):
    """Green/red list watermark (Kirchenbauer et al. 2023): a keyed fraction ``gamma`` of the
    vocabulary, chosen per context, gets ``+delta``. Detection: exact binomial test on green counts
    against ``gamma + lean``.

    ``lean`` makes the null hold per key, not only on average over keys. One key's lists make the
    draws that recur in every human text (frequent words and word pairs, code idioms, Unigram's one
    list) green in a fraction ``gamma + b_k``, and b_k, fixed by the key, shifts every text's count
    the same way. The test is of the composite null "green fraction <= gamma + lean", at its
    boundary: valid for every key with ``b_k <= lean``, conservative for the rest. ``lean=0`` is the
    exact null over random keys."""

    name = "kgw"

    def __init__(self, key: Key, vocab_size: int, *, gamma: float = 0.25, delta: float = 2.0,
                 seeding: str = "lefthash", context_width: int | None = None, lean: float = DEFAULT_LEAN,
                 backend: str = "auto") -> None:
        if seeding == "unigram" and type(self) is KGW:
            raise ValueError("for one fixed green list use the Unigram scheme, not KGW(seeding='unigram')")
        super().__init__(key, vocab_size, seeding=seeding, context_width=context_width, backend=backend)
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        if not math.isfinite(delta) or delta < 0:
            raise ValueError(f"delta must be finite and >= 0, got {delta}")
        if not (math.isfinite(lean) and 0.0 <= lean < 1.0 - gamma):
            raise ValueError(f"lean must be in [0, 1 - gamma), got {lean}")
        self.gamma = float(gamma)
        self.delta = float(delta)
        self.lean = float(lean)
        self.threshold = hashing.threshold_for(self.gamma)

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "gamma": self.gamma, "delta": self.delta, "lean": self.lean}

    @property
    def null(self) -> BinomialNull:
        return BinomialNull(self.gamma + self.lean)

    def _uv(self, device):
        return self._table(device, "u")[: self.vocab_size] if self.seeding.self_seeded else None

    def _process(self, scores, c, a):
        t = self._table(scores.device, "t")
        return ops.kgw_bias_dispatch(scores, c, t, self.threshold, self.delta, self._uv(scores.device), a,
                                     backend=self.backend)

    def _score(self, c, a, tokens):
        t = self._table(tokens.device, "t")[tokens]
        u = self._uv(tokens.device)
        return ops.green_from_seed(c, t, self.threshold, None if u is None else u[tokens], a).to(torch.float64)

    def green_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Green list of the next token for each row, ``[B, V]`` bool (what ``process`` boosts)."""
        c, a = self._seeds(self._last_window(input_ids))
        return ops.kgw_green(c, self._table(c.device, "t"), self.threshold, self._uv(c.device), a)


class Unigram(KGW):
    """Unigram watermark (Zhao et al. 2024): ONE fixed keyed green list, robust to edits.
    Generation adds a cached ``[V]`` bias (the one-pass floor).

    ``block``: the list is balanced within blocks of ``block`` consecutive token ids, exactly
    ``gamma * block`` green in each (the keyed smallest hashes of the block); ids past the last full
    block are green with probability ``gamma`` each. Tokenizers number tokens roughly by frequency
    (BPE merge order), so every frequency band of the vocabulary is green in the fraction ``gamma``
    under every key: the frequent tokens that recur in every human text cannot lean green under one
    key, which is what makes one fixed list's false-positive rate hold per key and not only on
    average over keys. Each token is still green with probability ``gamma`` over keys, and tokens
    of one block are negatively correlated, so the binomial tail stays valid (conservative).
    Default: the smallest block in 2..64 with ``gamma * block`` whole (4 for gamma = 0.25);
    ``block=1`` (or a gamma no such block fits) keeps the unbalanced list of the ``round(gamma * V)``
    smallest hashes."""

    name = "unigram"

    def __init__(self, key: Key, vocab_size: int, *, gamma: float = 0.25, delta: float = 2.0,
                 block: int | None = None, lean: float = DEFAULT_LEAN, backend: str = "auto") -> None:
        super().__init__(key, vocab_size, gamma=gamma, delta=delta, seeding="unigram", lean=lean, backend=backend)
        if block is None:
            block = next((m for m in range(2, 65) if abs(self.gamma * m - round(self.gamma * m)) < 1e-9
                          and 0 < round(self.gamma * m) < m), 1)
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"block must be an int >= 1, got {block!r}")
        if block > 1 and abs(self.gamma * block - round(self.gamma * block)) > 1e-9:
            raise ValueError(f"gamma * block must be a whole number, got {self.gamma} * {block}")
        self.block = block
        if block == 1:
            if not 0 < round(self.gamma * vocab_size) < vocab_size:
                raise ValueError(f"gamma * vocab_size must round to 1..{vocab_size - 1}")
            self.gamma = round(self.gamma * vocab_size) / vocab_size  # the exact list fraction

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "block": self.block}

    def green_list(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The fixed green list, ``[V]`` bool."""
        per_dev = self._tables.setdefault(torch.device(device), {})
        if "green" not in per_dev:
            h = hashing.to_u32(self._table(device, "t"))
            V, m = self.vocab_size, self.block
            green = torch.zeros(V, dtype=torch.bool, device=device)
            if m == 1:
                green[torch.argsort(h, stable=True)[: round(self.gamma * V)]] = True
            else:
                full = V // m * m
                ranks = torch.argsort(torch.argsort(h[:full].view(-1, m), dim=1, stable=True), dim=1)
                green[:full] = (ranks < round(self.gamma * m)).reshape(-1)
                green[full:] = h[full:] < self.threshold
            per_dev["green"] = green
        return per_dev["green"]

    def green_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.green_list(input_ids.device)[None, :].expand(input_ids.shape[0], -1)

    def _process(self, scores, c, a):
        per_dev = self._tables.setdefault(scores.device, {})
        key = f"bias/{scores.dtype}"
        if key not in per_dev:
            per_dev[key] = self.green_list(scores.device).to(scores.dtype) * self.delta
        return scores + per_dev[key]

    def _score(self, c, a, tokens):
        return self.green_list(tokens.device)[tokens].to(torch.float64)


class Gumbel(TextWatermark):
    """Gumbel / EXP watermark (Aaronson 2023): next token ``argmax_v r_v^(1/p_v)`` with keyed
    uniforms ``r`` seeded by the context. Distortion-free per step, deterministic given the context.
    Detection: ``S = sum -log(1 - r)`` is Gamma(n, 1) on unmarked text."""

    name = "gumbel"

    def __init__(self, key: Key, vocab_size: int, *, seeding: str = "ngram", context_width: int | None = None,
                 backend: str = "auto") -> None:
        super().__init__(key, vocab_size, seeding=seeding, context_width=context_width, backend=backend)
        if self.seeding.self_seeded:
            raise ValueError("gumbel needs a context-only seeding (not selfhash)")

    @property
    def null(self) -> GammaNull:
        return GammaNull()

    def _process(self, scores, c, a):
        t = self._table(scores.device, "t")
        return ops.one_hot_logits(ops.gumbel_argmax_dispatch(scores, c, t, self.backend), scores)

    def _score(self, c, a, tokens):
        r = hashing.uniform23(hashing.mix32(c ^ self._table(tokens.device, "t")[tokens]), torch.float64)
        return -torch.log1p(-r)


class Tournament(TextWatermark):
    """SynthID-style tournament sampling (Dathathri et al. 2024): ``num_layers`` keyed binary
    g-values per (context, token); the exact tournament distribution (2 candidates per match) is
    computed over the ``top_k`` candidates. Detection: mean g (exact binomial) or weighted mean
    (normal tail, weights decreasing linearly from 10 to 1 over layers)."""

    name = "tournament"

    def __init__(self, key: Key, vocab_size: int, *, num_layers: int = 30, top_k: int | None = 40,
                 score: str = "mean", seeding: str = "ngram", context_width: int | None = None,
                 backend: str = "auto") -> None:
        super().__init__(key, vocab_size, seeding=seeding, context_width=context_width, backend=backend)
        if not 1 <= num_layers <= 32:
            raise ValueError(f"num_layers must be in 1..32 (one 32-bit hash gives the g-values), got {num_layers}")
        if top_k is not None and top_k < 2:
            raise ValueError(f"top_k must be >= 2 or None, got {top_k}")
        if score not in ("mean", "weighted"):
            raise ValueError(f"score must be 'mean' or 'weighted', got {score!r}")
        if self.seeding.self_seeded:
            raise ValueError("tournament needs a context-only seeding (not selfhash)")
        self.num_layers = int(num_layers)
        self.top_k = top_k
        self.score = score
        self.weights = torch.linspace(10.0, 1.0, self.num_layers, dtype=torch.float64)

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "num_layers": self.num_layers, "top_k": self.top_k, "score": self.score}

    @property
    def null(self) -> BinomialNull | NormalNull:
        if self.score == "mean":
            return BinomialNull(0.5, trials=self.num_layers)
        w = self.weights
        return NormalNull(mean=float(w.sum()) / 2, var=float((w * w).sum()) / 4)

    def _process(self, scores, c, a):
        k = self.vocab_size if self.top_k is None else min(self.top_k, self.vocab_size)
        vals, idx = torch.topk(scores.float(), k, dim=-1)
        probs = torch.softmax(vals, dim=-1)
        x = hashing.mix32(c[:, None] ^ self._table(scores.device, "t")[idx])
        p = ops.tournament_probs(probs, x, self.num_layers)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, idx, torch.log(p).to(scores.dtype))

    def _score(self, c, a, tokens):
        x = hashing.mix32(c ^ self._table(tokens.device, "t")[tokens])
        bits = torch.stack([(x >> l) & 1 for l in range(self.num_layers)], dim=-1).to(torch.float64)
        if self.score == "mean":
            return bits.sum(-1)
        return (bits * self.weights.to(bits.device)).sum(-1)


# ------------------------------------------------------------------------------------------------
#: name -> (class, fixed keyword arguments)
SCHEMES: dict[str, tuple[type[TextWatermark], dict[str, Any]]] = {
    "kgw": (KGW, {"seeding": "selfhash"}),  # an alias of kgw-selfhash (names.ALIASES)
    "kgw-lefthash": (KGW, {"seeding": "lefthash"}),
    "kgw-selfhash": (KGW, {"seeding": "selfhash"}),
    "kgw-minhash": (KGW, {"seeding": "minhash"}),
    "unigram": (Unigram, {}),
    "gumbel": (Gumbel, {}),
    "tournament": (Tournament, {}),
}


def make_scheme(name: str, key: Key, vocab_size: int, **params: Any) -> TextWatermark:
    """Build a scheme from the registry, e.g. ``make_scheme("kgw-selfhash", key, 50257, gamma=0.25)``."""
    if name not in SCHEMES:
        raise ValueError(f"unknown text scheme {name!r}; choose from {sorted(SCHEMES)}")
    cls, fixed = SCHEMES[name]
    return cls(key, vocab_size, **{**params, **fixed})
