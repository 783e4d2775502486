"""Closed forms for the self-consuming Gaussian and categorical loops, and a vectorised simulator of
the Gaussian loop (thousands of replicates at once) for the theory checks.

Convention (as in :mod:`wmark.loop.config`): the truth is model 0, model t is fitted at generation t;
generation 1 trains on real data, which carry the sampling bias only when ``bias_real``.
"""
from __future__ import annotations

import math

import numpy as np

from wmark.loop.models.gaussian import gaussian_sample


# -- Gaussian, fully synthetic -----------------------------------------------------------------------
def log_var_drift(n: int, unbiased: bool = True) -> float:
    """E[log sigma^2_t - log sigma^2_{t-1}] at lam = 1: E[log(chi^2_{n-1} / m)] with m = n - 1
    (unbiased) or n (MLE) = digamma((n-1)/2) + log 2 - log m."""
    from scipy.special import digamma

    return float(digamma((n - 1) / 2) + math.log(2.0) - math.log(n - 1 if unbiased else n))


def log_var_cdf(x: float, n: int, t: int, unbiased: bool = True) -> float:
    """P(log sigma^2_t <= x) at lam = 1, sigma^2_0 = 1: log sigma^2_t is a sum of t i.i.d.
    log(chi^2_{n-1} / m); inverted exactly from its characteristic function (Gil-Pelaez)."""
    from scipy.integrate import quad
    from scipy.special import loggamma

    k, m = (n - 1) / 2, (n - 1 if unbiased else n)

    def integrand(u: float) -> float:
        logphi = t * (1j * u * math.log(2.0 / m) + loggamma(k + 1j * u) - loggamma(k))
        return float(np.imag(np.exp(logphi - 1j * u * x)) / u)

    val = quad(integrand, 0.0, np.inf, limit=400)[0]
    return 0.5 - val / math.pi


def var_quantile(q: float, n: int, t: int, unbiased: bool = True) -> float:
    """Exact ``q``-quantile of sigma^2_t (lam = 1, sigma^2_0 = 1); ``q = 0.5`` gives the median."""
    from scipy.optimize import brentq

    mu = t * log_var_drift(n, unbiased)
    sd = math.sqrt(t * 2.0 / (n - 1)) + 1.0
    lo, hi = mu - 12 * sd, mu + 12 * sd
    return math.exp(brentq(lambda x: log_var_cdf(x, n, t, unbiased) - q, lo, hi, xtol=1e-10))


def expected_var(t: int, n: int, lam: float = 1.0, unbiased: bool = True, bias_real: bool = False) -> float:
    """E[sigma^2_t] for the fully synthetic loop (sigma^2_0 = 1)."""
    shrink = 1.0 if unbiased else (n - 1) / n
    return (lam ** (t if bias_real else t - 1) if t >= 1 else 1.0) * shrink ** t


def mean_var(t: int, n: int, lam: float = 1.0, bias_real: bool = False) -> float:
    """Var(mu_t), unbiased variance, fully synthetic: (1/n) sum_{s<t} E[sampling variance at step s];
    -> lam / (n (1 - lam)) with ``bias_real``, 1 / (n (1 - lam)) without, as t -> infinity."""
    steps = [(lam ** (s + 1) if bias_real else lam ** s) for s in range(t)]
    return float(sum(steps)) / n


def mean_sq_replace(t: int) -> float:
    """n E[mu_t^2] for replace, lam = 1, unbiased: t."""
    return float(t)


def mean_sq_accumulate(t: int) -> float:
    """n E[mu_t^2] for accumulate (all earlier data kept), lam = 1: sum_{i<=t} 1 / i^2 (-> pi^2/6),
    taking E[sigma^2] = 1 at every step."""
    return float(sum(1.0 / i ** 2 for i in range(1, t + 1)))


def simulate_gaussian_1d(n: int, generations: int, seeds: int, *, lam: float = 1.0, unbiased: bool = True,
                         synthetic: str = "replace", bias_real: bool = False,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``seeds`` replicates of the 1-D fully synthetic loop from N(0, 1), vectorised.

    Returns ``mu [S, T+1]`` and ``var [S, T+1]`` (column 0 = truth). ``accumulate`` fits each
    generation on all data so far (running sums).
    """
    rng = np.random.default_rng(seed)
    mu = np.zeros((seeds, generations + 1))
    var = np.ones((seeds, generations + 1))
    s1 = np.zeros(seeds)
    s2 = np.zeros(seeds)
    count = 0
    for t in range(1, generations + 1):
        lam_t = lam if (t >= 2 or bias_real) else 1.0
        x = gaussian_sample(mu[:, t - 1, None], var[:, t - 1, None, None], n, lam_t, rng)[..., 0]  # [S, n]
        if synthetic == "accumulate":
            s1, s2, count = s1 + x.sum(1), s2 + (x * x).sum(1), count + n
        else:
            s1, s2, count = x.sum(1), (x * x).sum(1), n
        m = s1 / count
        mu[:, t] = m
        var[:, t] = (s2 - count * m * m) / (count - 1 if unbiased else count)
    return mu, var


# -- categorical -------------------------------------------------------------------------------------
def expected_support(probs: np.ndarray, n: int) -> float:
    """E[#distinct categories in n draws] = sum_k 1 - (1 - p_k)^n (support of model 1)."""
    p = np.asarray(probs, dtype=float)
    return float((1.0 - (1.0 - p) ** n).sum())


def expected_support_2(probs: np.ndarray, n: int) -> float:
    """E[support of model 2] = sum_k E_c[1 - (1 - c/n)^n], c ~ Binomial(n, p_k) (exact)."""
    from scipy.stats import binom

    total = 0.0
    for p in np.asarray(probs, dtype=float):
        hi = int(min(n, n * p + 12 * math.sqrt(n * p * (1 - p)) + 20))
        c = np.arange(0, hi + 1)
        total += float((binom.pmf(c, n, p) * (1.0 - (1.0 - c / n) ** n)).sum())
    return total
