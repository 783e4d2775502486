"""Categorical learner on Zipf data; sampling bias lam is a temperature on the fitted probabilities
(p_lam proportional to p ** (1 / lam); lam < 1 sharpens). Zero-probability categories stay zero, so
the support never grows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from wmark.loop import metrics
from wmark.loop.models.base import Family


def zipf_probs(k: int, exponent: float) -> np.ndarray:
    """Zipf probabilities ``[k]``: p_i proportional to i ** -exponent, i = 1..k."""
    p = np.arange(1, int(k) + 1, dtype=float) ** -float(exponent)
    return p / p.sum()


def temper(probs: np.ndarray, lam: float) -> np.ndarray:
    """Temperature ``lam`` applied to ``probs [..., K]`` (renormalised on the last axis)."""
    if lam == 1.0:
        return probs
    with np.errstate(divide="ignore"):
        logp = np.log(probs) / lam
    logp -= logp.max(-1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(-1, keepdims=True)


def counts_to_samples(counts: np.ndarray) -> np.ndarray:
    """Category indices ``[n]`` (sorted) from ``counts [K]``."""
    return np.repeat(np.arange(len(counts)), counts)


@dataclass
class CategoricalModel:
    """A categorical distribution ``probs [K]``; data are category indices ``[n]`` (int)."""

    k: int
    probs: np.ndarray | None = None

    def fit(self, data: np.ndarray, rng: np.random.Generator | None = None) -> "CategoricalModel":
        counts = np.bincount(np.asarray(data, dtype=np.int64), minlength=self.k)
        if len(counts) > self.k:
            raise ValueError(f"category index out of range (K={self.k})")
        self.probs = counts / counts.sum()
        return self

    def sample(self, n: int, lam: float, rng: np.random.Generator) -> np.ndarray:
        if self.probs is None:
            raise ValueError("CategoricalModel.sample before fit")
        return counts_to_samples(rng.multinomial(n, temper(self.probs, lam)))


def make_model(source: CategoricalModel) -> CategoricalModel:
    """An unfitted categorical learner over the source's categories."""
    return CategoricalModel(k=source.k)


def make_source(k: int = 1000, exponent: float = 1.1) -> CategoricalModel:
    """Zipf(``exponent``) over ``k`` categories."""
    return CategoricalModel(k=int(k), probs=zipf_probs(k, exponent))


def evaluate(model: CategoricalModel, source: CategoricalModel, train: Any, rng: np.random.Generator,
             params: Mapping[str, Any]) -> dict[str, float]:
    """``support`` (categories with p > 0), ``tail_mass`` (mass outside the true top
    ``head_frac`` = 10% of categories), ``entropy`` (nats) and ``tv`` to the truth."""
    head = max(1, int(round(float(params.get("head_frac", 0.1)) * source.k)))
    tail = np.argsort(-source.probs, kind="stable")[head:]
    mask = np.zeros(source.k, dtype=bool)
    mask[tail] = True
    return {
        "support": float(metrics.support_size(model.probs)),
        "tail_mass": metrics.tail_mass(model.probs, mask),
        "entropy": metrics.entropy(model.probs),
        "tv": metrics.total_variation(model.probs, source.probs),
    }


FAMILY = Family("categorical", make_model, make_source, evaluate,
                description="categorical on Zipf data; lam = temperature")
