"""The watermark side of the loop: the :class:`Marker` protocol, a registry, and a *toy* marker.

A marker marks samples with a key, detects marked samples (boolean mask ``[n]``) and strips the mark
with the key. The image and text packages implement the real ones and add a line to :data:`MARKERS`.

:class:`ToyDither` is a **toy for tests and the Gaussian demo, not the product's watermark**: it
moves each coordinate of continuous data inside a keyed lattice cell by less than ``delta`` and
is exactly invertible with the key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from wmark._lazy import import_attr

if TYPE_CHECKING:  # pragma: no cover
    from wmark.keys import Key


@runtime_checkable
class Marker(Protocol):
    """Keyed mark / detect / strip on a sample set (numpy array, tensor or list; length ``n``)."""

    def mark(self, samples: Any, key: "Key", rng: np.random.Generator) -> Any:
        """Marked copies of ``samples`` (same type and length)."""

    def detect(self, samples: Any, key: "Key") -> np.ndarray:
        """Boolean mask ``[n]``: which samples carry the mark."""

    def strip(self, samples: Any, key: "Key") -> Any:
        """``samples`` with the mark removed using the key (same type and length)."""


#: marker name -> "module:class" (constructed with the config's ``marker_params``)
MARKERS: dict[str, str] = {
    "toy-dither": "wmark.loop.markers:ToyDither",
    "text-kgw": "wmark.loop.text_marker:TextKGW",
    "image-wm": "wmark.loop.image_marker:ImageWM",
}


def marker_names() -> list[str]:
    """Registered marker names."""
    return sorted(MARKERS)


def get_marker(name: str, **params: Any) -> Marker:
    """Build the marker called ``name`` with ``params``; ValueError for unknown names."""
    spec = MARKERS.get(name)
    if spec is None:
        raise ValueError(f"unknown marker {name!r} (known: {', '.join(marker_names())})")
    return import_attr(spec)(**params)


@dataclass(frozen=True)
class ToyDither:
    """TOY marker for continuous data ``[n]`` or ``[n, d]`` — exercises the loop's policies in tests.

    Per coordinate, a keyed lattice of spacing ``delta`` (keyed offset ``u``) splits the line into
    cells; ``mark`` squeezes the position ``f`` in its cell into the keyed sub-interval
    ``[a, a + width)`` (moving the value by less than ``delta``), ``detect`` checks that every
    coordinate lies in its sub-interval (false-positive rate ``width ** d``), ``strip`` inverts the
    squeeze exactly. Not robust, not secret in any useful sense: not the product's watermark.
    """

    delta: float = 0.5
    width: float = 0.1

    def __post_init__(self) -> None:
        if not (self.delta > 0 and 0 < self.width < 0.5):
            raise ValueError("toy-dither needs delta > 0 and 0 < width < 0.5")

    def _params(self, key: "Key", d: int) -> tuple[np.ndarray, np.ndarray]:
        """Keyed lattice offsets ``u [d]`` and sub-interval starts ``a [d]``, drawn on every call
        (tens of microseconds: nothing to cache)."""
        rng = np.random.default_rng(key.seed("wmark/loop/toy-dither"))
        u = rng.uniform(0.0, self.delta, size=d)
        a = 0.05 + rng.uniform(0.0, 0.9 - self.width, size=d)
        return u, a

    def _cells(self, x: np.ndarray, key: "Key") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x2 = np.asarray(x, dtype=float).reshape(len(x), -1)
        u, a = self._params(key, x2.shape[1])
        y = (x2 - u) / self.delta
        c = np.floor(y)
        return c, y - c, u, a

    def mark(self, samples: np.ndarray, key: "Key", rng: np.random.Generator | None = None) -> np.ndarray:
        c, f, u, a = self._cells(samples, key)
        out = u + self.delta * (c + a + self.width * f)
        return out.reshape(np.shape(samples))

    def detect(self, samples: np.ndarray, key: "Key") -> np.ndarray:
        _, f, _, a = self._cells(samples, key)
        eps = 1e-9
        return ((f >= a - eps) & (f < a + self.width + eps)).all(1)

    def strip(self, samples: np.ndarray, key: "Key") -> np.ndarray:
        c, f, u, a = self._cells(samples, key)
        g = np.clip((f - a) / self.width, 0.0, 1.0 - 1e-12)
        return (u + self.delta * (c + g)).reshape(np.shape(samples))
