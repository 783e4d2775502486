"""The text marker of the loop: KGW green lists (:mod:`wmark.text`) at generation time, detection by
p-value, and the key-holder's *de-bias* strip.

Marking: a KGW scheme is a logits processor, so text is marked *while it is sampled*:
:meth:`TextKGW.sample_marked` draws from the model with the scheme (the engine calls it for marked
arms); :meth:`TextKGW.mark` only accepts samples that were generated that way.

Strip = importance re-weighting of the training loss. Marked sampling draws token ``x`` in context
``c`` from ``p_m(x|c) = p(x|c) exp(delta g(x, c)) / Z(c)`` (``g`` = green with the key). Weighting
each token's loss by ``w = Z0 exp(-delta g)`` makes the weighted likelihood of every context
``sum_x p_m(x|c) w(x) log q(x|c) = (Z0 / Z(c)) sum_x p(x|c) log q(x|c)``: its maximiser is the
unmarked ``p(.|c)`` exactly; only the weight of the context changes (``Z0 / Z(c)``, equal to 1
where the context's green mass is ``gamma``). ``Z0 = 1 + gamma (e^delta - 1)`` keeps the mean
weight of a stripped token near 1, so stripped and real tokens keep their relative weight.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from wmark.loop.models.text import TextSample, base_lm, stack_ids

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from wmark.keys import Key
    from wmark.text.schemes import KGW

#: schemes whose mark is an additive green-list bias delta (what the de-bias strip inverts)
GREEN_SCHEMES = ("kgw", "kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram")


def debias_weights(green: "torch.Tensor", gamma: float, delta: float) -> "torch.Tensor":
    """Per-token loss weights ``[...]`` float32 from green indicators ``green [...]`` bool:
    ``Z0 * exp(-delta)`` on green tokens, ``Z0`` on red ones, ``Z0 = 1 + gamma (e^delta - 1)``."""
    import torch

    z0 = 1.0 + gamma * math.expm1(delta)
    return torch.where(green, z0 * math.exp(-delta), z0).to(torch.float32)


@functools.lru_cache(maxsize=32)
def _scheme(scheme: str, gamma: float, delta: float, backend: str, lm: str, key: "Key") -> "KGW":
    """The KGW scheme of these parameters and key, built once per process (its green-list tables are
    built lazily on it, so reusing the object saves rebuilding them). ``Key`` hashes and compares by
    its secret."""
    from wmark.text.schemes import make_scheme

    return make_scheme(scheme, key, base_lm(lm).vocab_size, gamma=gamma, delta=delta, backend=backend)


@dataclass(frozen=True)
class TextKGW:
    """KGW text marker for the loop (``scheme`` one of :data:`GREEN_SCHEMES`; ``gamma``, ``delta`` its
    green fraction and bias; a sample is detected when its p-value is below ``alpha``). ``lm`` names
    the shipped model whose tokenizer the samples use (vocabulary, ``<|endoftext|>`` prefix)."""

    scheme: str = "kgw-lefthash"
    gamma: float = 0.25
    delta: float = 3.0
    alpha: float = 1e-3
    lm: str = "tiny"
    backend: str = "eager"

    def __post_init__(self) -> None:
        if self.scheme not in GREEN_SCHEMES:
            raise ValueError(f"text marker scheme must be one of {', '.join(GREEN_SCHEMES)}, got {self.scheme!r}")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"text marker gamma must be in (0, 1), got {self.gamma!r}")
        if not (isinstance(self.delta, (int, float)) and math.isfinite(self.delta) and self.delta > 0):
            raise ValueError(f"text marker delta must be a positive number, got {self.delta!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"text marker alpha must be in (0, 1), got {self.alpha!r}")

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def eos_id(self) -> int:
        """The end-of-text token of the marker's LM (detection skips the prefix token)."""
        return int(base_lm(self.lm).eos_id)

    def scheme_for(self, key: "Key") -> "KGW":
        """The KGW scheme for ``key`` (one object per parameters and key: :func:`_scheme`)."""
        return _scheme(self.scheme, self.gamma, float(self.delta), self.backend, self.lm, key)

    def green(self, samples: Sequence[TextSample], key: "Key") -> "torch.Tensor":
        """``[n, L]`` bool: was each sample token green in its generation context (eos + earlier
        tokens)? Exactly the tokens the processor boosted (positions before a full context use the
        generator's padding, via ``green_mask``)."""
        import torch

        sch = self.scheme_for(key)
        ids = stack_ids(samples, self.eos_id)  # [n, 1 + L]
        n, T = ids.shape
        g = torch.zeros(n, T, dtype=torch.bool)
        ts = sch.token_scores(ids)
        if ts.scores.shape[1]:
            g[:, ts.positions[0]] = ts.scores > 0.5
        for p in range(1, min(sch.seeding.history, T)):
            g[:, p] = sch.green_mask(ids[:, :p]).gather(1, ids[:, p:p + 1])[:, 0]
        return g[:, 1:]

    # -- the Marker protocol ------------------------------------------------------------------------
    def sample_marked(self, model: Any, n: int, lam: float, rng: np.random.Generator, key: "Key") -> list[TextSample]:
        """``n`` marked samples of ``model`` (the scheme as its logits processor), temperature ``lam``."""
        sch = self.scheme_for(key)
        if model.vocab_size != sch.vocab_size:
            raise ValueError(f"text marker vocabulary ({sch.vocab_size}) != model vocabulary ({model.vocab_size})")
        return model.sample(n, lam, rng, logits_processor=sch)

    def mark(self, samples: Sequence[TextSample], key: "Key", rng: np.random.Generator | None = None) -> list[TextSample]:
        """Text is marked at generation time: returns ``samples`` if they all were (else ValueError)."""
        if not all(s.marked for s in samples):
            raise ValueError("text is marked while it is generated: draw it with TextKGW.sample_marked")
        return list(samples)

    def detect(self, samples: Sequence[TextSample], key: "Key") -> np.ndarray:
        """``[n]`` bool: p-value (exact binomial, repeated (seed, token) pairs scored once) < alpha."""
        if not len(samples):
            return np.zeros(0, dtype=bool)
        sch = self.scheme_for(key)
        return np.asarray(sch.detect_batch(stack_ids(samples, self.eos_id), alpha=self.alpha,
                                           ignore_prefix=1).detected, dtype=bool)

    def strip(self, samples: Sequence[TextSample], key: "Key") -> list[TextSample]:
        """The same samples with de-bias loss weights (see the module docstring)."""
        if not len(samples):
            return []
        w = debias_weights(self.green(samples, key), self.gamma, float(self.delta))
        return [replace(s, weights=w[i].clone()) for i, s in enumerate(samples)]

    def metrics(self, samples: Sequence[TextSample], key: "Key") -> dict[str, float]:
        """Inherited mark of a model's own unmarked ``samples``: ``green_frac`` and ``green_z`` (means
        over samples of the per-sample test), and the pooled radioactivity test ``radio_z``,
        ``radio_log10p`` over ``radio_n`` distinct (seed, token) pairs."""
        from wmark.loop.text_metrics import radioactivity

        sch = self.scheme_for(key)
        ids = stack_ids(samples, self.eos_id)
        det = sch.detect_batch(ids, alpha=self.alpha, ignore_prefix=1)
        frac = det.score / np.maximum(det.num_scored, 1)
        rad = radioactivity(sch.token_scores(ids), sch.gamma)
        return {"green_frac": float(np.mean(frac)), "green_z": float(np.mean(det.z_score)),
                "radio_z": rad.z_score, "radio_log10p": rad.log10_p, "radio_n": float(rad.num_scored)}
