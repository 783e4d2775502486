"""The generative-model protocol of the loop, the family registry entry, and sample-set operations.

A *family* bundles what the engine needs for one kind of data: a learner (``make_model``), the real
data (``make_source``: anything with ``sample(n, lam, rng)``, usually the true model itself) and an
``evaluate`` function giving the per-generation metrics. Image and text families plug in by adding
one line to :data:`wmark.loop.models.FAMILIES` (or calling :func:`wmark.loop.models.register_family`).

Samples are whatever a family uses — a numpy array ``[n, ...]``, a torch tensor ``[n, ...]`` or a
list of ``n`` items (token sequences); :func:`concat`, :func:`take`, :func:`put` and :func:`size`
work on all three.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

Samples = Any  # np.ndarray [n, ...] | torch.Tensor [n, ...] | list (length n)


@runtime_checkable
class GenerativeModel(Protocol):
    """What the loop trains each generation.

    ``fit`` may warm-start from the current state (deep models fine-tune) and returns the model;
    ``sample(n, lam, rng)`` draws ``n`` samples with sampling bias ``lam`` (1 = unbiased; Gaussians:
    N(mu, lam * Sigma); categorical: temperature; deep models: temperature or guidance).

    Checkpoints never pickle: a model is a dataclass listed in :data:`wmark.loop.state.STATE_CLASSES`
    (or added with :func:`wmark.loop.state.register_state_class`) whose fields hold numbers,
    strings, numpy arrays, torch tensors and dicts / lists / tuples of these; fields named ``_...``
    are caches, not stored, rebuilt from their defaults.
    """

    def fit(self, data: Samples, rng: np.random.Generator) -> "GenerativeModel": ...

    def sample(self, n: int, lam: float, rng: np.random.Generator) -> Samples: ...


class Source(Protocol):
    """Real data: ``sample(n, lam, rng)`` (``lam`` is 1 unless the config asks for biased real draws)."""

    def sample(self, n: int, lam: float, rng: np.random.Generator) -> Samples: ...


Evaluate = Callable[[GenerativeModel, Source, "Samples | None", np.random.Generator, Mapping[str, Any]],
                    dict[str, float]]


@dataclass(frozen=True)
class Family:
    """One registry entry: learner, real data and metrics for a kind of data.

    ``make_model(source, **model_params)`` -> a fresh, unfitted model; ``make_source(**data_params)`` -> the
    real-data source; ``evaluate(model, source, train, rng, eval_params)`` -> ``{metric: float}``
    (``train`` is None at t = 0, where ``model`` is the source itself when ``source_is_model``).
    """

    name: str
    make_model: Callable[..., GenerativeModel]
    make_source: Callable[..., Source]
    evaluate: Evaluate
    description: str = ""
    source_is_model: bool = True


# -- sample-set operations (numpy, torch, list) ------------------------------------------------------
def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def size(samples: Samples) -> int:
    """Number of samples (first axis / list length)."""
    return int(samples.shape[0]) if hasattr(samples, "shape") else len(samples)


def concat(parts: Sequence[Samples]) -> Samples:
    """Concatenate sample sets along the first axis (all parts of one type)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ValueError("nothing to concatenate")
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    if _is_torch(first):
        import torch

        return torch.cat(list(parts), dim=0)
    out: list = []
    for p in parts:
        out.extend(p)
    return out


def take(samples: Samples, mask: np.ndarray) -> Samples:
    """Samples where the boolean ``mask [n]`` is True (order kept)."""
    mask = np.asarray(mask, dtype=bool)
    if isinstance(samples, np.ndarray):
        return samples[mask]
    if _is_torch(samples):
        import torch

        return samples[torch.as_tensor(mask, device=samples.device)]
    return [s for s, m in zip(samples, mask) if m]


def put(samples: Samples, mask: np.ndarray, values: Samples) -> Samples:
    """A copy of ``samples`` with the rows where ``mask [n]`` is True replaced by ``values``."""
    mask = np.asarray(mask, dtype=bool)
    if isinstance(samples, np.ndarray):
        out = samples.copy()
        out[mask] = values
        return out
    if _is_torch(samples):
        import torch

        out = samples.clone()
        out[torch.as_tensor(mask, device=samples.device)] = values
        return out
    it = iter(values)
    return [next(it) if m else s for s, m in zip(samples, mask)]
