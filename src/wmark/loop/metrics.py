"""Pure metric functions of the loop (numpy in, floats out). Shapes in the docstrings.

Gaussian: :func:`gaussian_w2` (closed form). Categorical: :func:`support_size`, :func:`tail_mass`,
:func:`entropy`, :func:`total_variation`. Samples / features (generic — image features reuse them):
:func:`frechet_distance` and :func:`precision_recall` (Kynkaenniemi et al. 2019).
"""
from __future__ import annotations

import math

import numpy as np


# -- Gaussians ---------------------------------------------------------------------------------------
def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix ``[d, d]`` (negative eigenvalues clipped)."""
    ev, vec = np.linalg.eigh(cov)
    return (vec * np.sqrt(np.clip(ev, 0.0, None))) @ vec.T


def gaussian_w2_sq(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between N(mu1, cov1) and N(mu2, cov2).

    ``mu [d]``, ``cov [d, d]``: ||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov2^1/2 cov1 cov2^1/2)^1/2).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(float), np.atleast_1d(mu2).astype(float)
    cov1, cov2 = np.atleast_2d(cov1).astype(float), np.atleast_2d(cov2).astype(float)
    d = cov2.shape[0]
    c = cov2[0, 0]
    if d == 1:  # (mu1 - mu2)^2 + (sigma1 - sigma2)^2
        val = float((mu1[0] - mu2[0]) ** 2 + (math.sqrt(max(cov1[0, 0], 0.0)) - math.sqrt(max(c, 0.0))) ** 2)
        return max(val, 0.0)
    if np.array_equal(cov2, c * np.eye(d)):  # isotropic reference (the usual truth): one eigh
        cross = math.sqrt(max(c, 0.0)) * np.sqrt(np.clip(np.linalg.eigvalsh(cov1), 0.0, None)).sum()
    else:
        s2 = _psd_sqrt(cov2)
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(s2 @ cov1 @ s2), 0.0, None)).sum()
    val = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * cross)
    return max(val, 0.0)


def gaussian_w2(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """2-Wasserstein distance between two Gaussians (``mu [d]``, ``cov [d, d]``)."""
    return float(np.sqrt(gaussian_w2_sq(mu1, cov1, mu2, cov2)))


def mean_cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[f]`` and unbiased covariance ``[f, f]`` of features ``x [n, f]``."""
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance between feature sets ``x [n, f]`` and ``y [m, f]`` (FID convention: the
    *squared* W2 between Gaussians fitted to each)."""
    return gaussian_w2_sq(*mean_cov(x), *mean_cov(y))


# -- precision / recall (k-NN manifolds) -------------------------------------------------------------
def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``[n, m]`` between ``a [n, f]`` and ``b [m, f]``."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def knn_radii(x: np.ndarray, k: int = 5, block: int = 2048) -> np.ndarray:
    """Squared distance of each row of ``x [n, f]`` to its k-th nearest other row: ``[n]``."""
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    if len(x) <= k:
        raise ValueError(f"need more than k={k} samples for k-NN radii, got {len(x)}")
    out = np.empty(len(x))
    for i in range(0, len(x), block):
        d = _sq_dists(x[i:i + block], x)
        out[i:i + block] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself
    return out


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int = 2048) -> float:
    """Fraction of ``points [m, f]`` inside at least one ball (``centres [n, f]``, squared ``radii [n]``)."""
    inside = 0
    for i in range(0, len(points), block):
        d = _sq_dists(points[i:i + block], centres)
        inside += int((d <= radii[None, :]).any(1).sum())
    return inside / max(len(points), 1)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019) of ``fake [m, f]`` against
    ``real [n, f]``: precision = share of fake samples inside the real k-NN manifold, recall = share
    of real samples inside the fake one."""
    real = np.asarray(real, dtype=float).reshape(len(real), -1)
    fake = np.asarray(fake, dtype=float).reshape(len(fake), -1)
    precision = _coverage(fake, real, knn_radii(real, k))
    recall = _coverage(real, fake, knn_radii(fake, k))
    return precision, recall


# -- categorical -------------------------------------------------------------------------------------
def support_size(probs: np.ndarray) -> int:
    """Number of categories with positive probability (``probs [K]``)."""
    return int((np.asarray(probs) > 0).sum())


def entropy(probs: np.ndarray) -> float:
    """Shannon entropy in nats of ``probs [K]``."""
    p = np.asarray(probs, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def tail_mass(probs: np.ndarray, tail: np.ndarray) -> float:
    """Probability mass of ``probs [K]`` on the categories selected by the boolean ``tail [K]``."""
    return float(np.asarray(probs, dtype=float)[np.asarray(tail, dtype=bool)].sum())


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance between ``p [K]`` and ``q [K]``."""
    return float(0.5 * np.abs(np.asarray(p, float) - np.asarray(q, float)).sum())
