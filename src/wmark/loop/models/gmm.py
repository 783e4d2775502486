"""Small Gaussian-mixture learner (EM, full covariances) on a 2-D ring of Gaussians.

Sampling bias lam scales each component covariance: N(mu_j, lam * Sigma_j). Metrics compare samples
of the model with real samples: precision / recall (k = 5) and the Frechet distance on raw 2-D points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from wmark.loop import metrics
from wmark.loop.models.base import Family
from wmark.loop.models.gaussian import cov_sqrt


def _log_gauss(x: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """Log densities ``[n, k]`` of ``x [n, d]`` under k Gaussians (``means [k, d]``, ``covs [k, d, d]``)."""
    d = x.shape[1]
    chol = np.linalg.cholesky(covs)                                   # [k, d, d]
    diff = x[None, :, :] - means[:, None, :]                           # [k, n, d]
    sol = np.linalg.solve(chol, np.swapaxes(diff, 1, 2))               # [k, d, n]
    maha = (sol ** 2).sum(1)                                           # [k, n]
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)  # [k]
    return (-0.5 * (maha + logdet[:, None] + d * np.log(2 * np.pi))).T


def gmm_em(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 100, tol: float = 1e-6,
           reg: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a k-component full-covariance mixture on ``x [n, d]`` (k-means++ start from ``rng``).

    Returns ``weights [k]``, ``means [k, d]``, ``covs [k, d, d]``.
    """
    x = np.asarray(x, dtype=float)
    n, d = x.shape
    if n < k:
        raise ValueError(f"GMM with k={k} components needs at least {k} samples, got {n}")
    centres = [x[rng.integers(n)]]
    for _ in range(1, k):  # k-means++ seeding
        d2 = ((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1).min(1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        centres.append(x[rng.choice(n, p=p)])
    means = np.asarray(centres)
    covs = np.repeat((np.cov(x, rowvar=False) + reg * np.eye(d))[None], k, 0)
    weights = np.full(k, 1.0 / k)
    prev = -np.inf
    eye = reg * np.eye(d)
    for _ in range(iters):
        logp = _log_gauss(x, means, covs) + np.log(np.maximum(weights, 1e-300))
        norm = np.logaddexp.reduce(logp, axis=1)
        resp = np.exp(logp - norm[:, None])                            # [n, k]
        nk = resp.sum(0) + 1e-12
        weights = nk / n
        means = (resp.T @ x) / nk[:, None]
        diff = x[None] - means[:, None]                                # [k, n, d]
        covs = np.einsum("kn,kni,knj->kij", resp.T, diff, diff) / nk[:, None, None] + eye
        ll = float(norm.mean())
        if ll - prev < tol:
            break
        prev = ll
    return weights, means, covs


@dataclass
class GMMModel:
    """A Gaussian mixture (``weights [k]``, ``means [k, d]``, ``covs [k, d, d]``); data ``[n, d]``."""

    k: int = 8
    iters: int = 100
    weights: np.ndarray | None = None
    means: np.ndarray | None = None
    covs: np.ndarray | None = None

    def fit(self, data: np.ndarray, rng: np.random.Generator) -> "GMMModel":
        self.weights, self.means, self.covs = gmm_em(np.asarray(data, float), self.k, rng, self.iters)
        return self

    def sample(self, n: int, lam: float, rng: np.random.Generator) -> np.ndarray:
        if self.weights is None:
            raise ValueError("GMMModel.sample before fit")
        comp = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        z = rng.standard_normal((n, self.means.shape[1]))
        a = cov_sqrt(self.covs * lam)                                  # [k, d, d]
        return self.means[comp] + np.einsum("nij,nj->ni", a[comp], z)


def make_model(source: GMMModel, k: int | None = None, iters: int = 100) -> GMMModel:
    """An unfitted mixture learner (``k`` components, default: as many as the source has)."""
    return GMMModel(k=int(k) if k is not None else source.k, iters=int(iters))


def make_source(k: int = 8, radius: float = 2.0, std: float = 0.2) -> GMMModel:
    """The true 2-D ring: ``k`` equal-weight modes on a circle of ``radius``, isotropic ``std``."""
    k = int(k)
    ang = 2 * np.pi * np.arange(k) / k
    means = float(radius) * np.stack([np.cos(ang), np.sin(ang)], 1)
    covs = np.repeat((float(std) ** 2 * np.eye(2))[None], k, 0)
    return GMMModel(k=k, weights=np.full(k, 1.0 / k), means=means, covs=covs)


def evaluate(model: GMMModel, source: GMMModel, train: Any, rng: np.random.Generator,
             params: Mapping[str, Any]) -> dict[str, float]:
    """``precision``, ``recall`` (k-NN, ``k`` = 5) and ``fd`` (Frechet distance) between ``n_eval``
    model samples and ``n_eval`` real samples (default 1000)."""
    n_eval = int(params.get("n_eval", 1000))
    real = source.sample(n_eval, 1.0, rng)
    fake = model.sample(n_eval, 1.0, rng)
    precision, recall = metrics.precision_recall(real, fake, k=int(params.get("k", 5)))
    return {"precision": precision, "recall": recall, "fd": metrics.frechet_distance(real, fake)}


FAMILY = Family("gmm", make_model, make_source, evaluate,
                description="2-D Gaussian mixture (EM) on a ring; precision/recall, Frechet distance")
