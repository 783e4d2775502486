"""d-dimensional Gaussian learner (MLE or unbiased covariance); sampling bias: N(mu, lam * Sigma).

The pure functions :func:`gaussian_fit` and :func:`gaussian_sample` take any leading batch axes, so
:mod:`wmark.loop.theory` runs thousands of replicates with the very same code the engine uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from wmark.loop import metrics
from wmark.loop.models.base import Family


def gaussian_fit(x: np.ndarray, unbiased: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[..., d]`` and covariance ``[..., d, d]`` of ``x [..., n, d]`` (ddof 1 if unbiased)."""
    x = np.asarray(x, dtype=float)
    n = x.shape[-2]
    if n < 2 and unbiased:
        raise ValueError(f"unbiased covariance needs at least 2 samples, got {n}")
    mu = x.mean(-2)
    xc = x - mu[..., None, :]
    cov = (np.swapaxes(xc, -1, -2) @ xc) / (n - 1 if unbiased else n)
    return mu, cov


def cov_sqrt(cov: np.ndarray) -> np.ndarray:
    """A matrix ``A [..., d, d]`` with ``A A^T = cov``: Cholesky where positive definite, else
    eigen-based (singular covariances, e.g. fewer samples than dimensions)."""
    if cov.shape[-1] == 1:
        return np.sqrt(np.clip(cov, 0.0, None))
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        pass
    ev, vec = np.linalg.eigh(cov)
    return vec * np.sqrt(np.clip(ev, 0.0, None))[..., None, :]


def gaussian_sample(mu: np.ndarray, cov: np.ndarray, n: int, lam: float,
                    rng: np.random.Generator) -> np.ndarray:
    """``n`` draws from N(mu, lam * cov) per batch entry: ``mu [..., d]``, ``cov [..., d, d]`` ->
    ``[..., n, d]``."""
    mu = np.asarray(mu, dtype=float)
    z = rng.standard_normal((*mu.shape[:-1], n, mu.shape[-1]))
    a = cov_sqrt(np.asarray(cov, dtype=float) * lam)
    return mu[..., None, :] + z @ np.swapaxes(a, -1, -2)


@dataclass
class GaussianModel:
    """A Gaussian N(mean [d], cov [d, d]); ``fit`` takes samples ``[n, d]`` (or ``[n]`` for d = 1)."""

    d: int = 1
    unbiased: bool = True
    mean: np.ndarray | None = None
    cov: np.ndarray | None = None

    def fit(self, data: np.ndarray, rng: np.random.Generator | None = None) -> "GaussianModel":
        x = np.asarray(data, dtype=float).reshape(len(data), self.d)
        self.mean, self.cov = gaussian_fit(x, self.unbiased)
        return self

    def sample(self, n: int, lam: float, rng: np.random.Generator) -> np.ndarray:
        if self.mean is None:
            raise ValueError("GaussianModel.sample before fit")
        return gaussian_sample(self.mean, self.cov, n, lam, rng)


@dataclass
class KDEModel:
    """A Gaussian kernel density estimate (memorises its training set ``[n, d]``; bandwidth ``h``).

    It can learn fine structure such as a watermark, so the loop's ``inherited`` metric moves.
    Sampling bias ``lam`` scales the whole covariance: x = m + sqrt(lam) (x_i - m + h z).
    """

    d: int = 1
    bandwidth: float = 0.01
    data: np.ndarray | None = None

    def fit(self, data: np.ndarray, rng: np.random.Generator | None = None) -> "KDEModel":
        self.data = np.asarray(data, dtype=float).reshape(len(data), self.d).copy()
        return self

    @property
    def mean(self) -> np.ndarray:
        """Mean ``[d]`` of the estimate."""
        return self.data.mean(0)

    @property
    def cov(self) -> np.ndarray:
        """Covariance ``[d, d]`` of the estimate (data covariance + h^2 I)."""
        return gaussian_fit(self.data, unbiased=False)[1] + self.bandwidth ** 2 * np.eye(self.d)

    def sample(self, n: int, lam: float, rng: np.random.Generator) -> np.ndarray:
        if self.data is None:
            raise ValueError("KDEModel.sample before fit")
        x = self.data[rng.integers(len(self.data), size=n)]
        x = x + self.bandwidth * rng.standard_normal((n, self.d))
        if lam != 1.0:
            m = self.mean
            x = m + np.sqrt(lam) * (x - m)
        return x


#: learner kind -> constructor(d, **params)
KINDS = {
    "gaussian": lambda d, unbiased=True: GaussianModel(d=d, unbiased=bool(unbiased)),
    "kde": lambda d, bandwidth=0.01: KDEModel(d=d, bandwidth=float(bandwidth)),
}


def make_model(source: GaussianModel, kind: str = "gaussian", **params: Any) -> GaussianModel | KDEModel:
    """An unfitted learner in the source's dimension: ``kind`` "gaussian" (``unbiased``: ddof 1,
    else MLE) or "kde" (``bandwidth``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown gaussian-family model kind {kind!r} (known: {', '.join(KINDS)})")
    try:
        return KINDS[kind](source.d, **params)
    except TypeError:
        raise ValueError(f"bad parameters for model kind {kind!r}: {sorted(params)}") from None


def make_source(d: int = 1, mean: float = 0.0, var: float = 1.0) -> GaussianModel:
    """The true distribution N(mean * 1, var * I) in ``d`` dimensions."""
    d = int(d)
    return GaussianModel(d=d, mean=np.full(d, float(mean)), cov=np.eye(d) * float(var))


def evaluate(model: GaussianModel | KDEModel, source: GaussianModel, train: Any, rng: np.random.Generator,
             params: Mapping[str, Any]) -> dict[str, float]:
    """``mu`` (first coordinate of the mean), ``mu_norm2`` (||mu - mu_true||^2), ``var`` (tr Sigma / d),
    ``log_var`` and ``w2`` (closed-form W2 to the true distribution)."""
    var = float(np.trace(model.cov)) / model.d
    return {
        "mu": float(model.mean[0]),
        "mu_norm2": float(((model.mean - source.mean) ** 2).sum()),
        "var": var,
        "log_var": float(np.log(var)) if var > 0 else float("-inf"),
        "w2": metrics.gaussian_w2(model.mean, model.cov, source.mean, source.cov),
    }


FAMILY = Family("gaussian", make_model, make_source, evaluate,
                description="d-D Gaussian data; Gaussian (MLE / unbiased) or KDE learner; lam scales the covariance")
