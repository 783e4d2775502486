"""The image marker of the loop: the product's image watermarker (:mod:`wmark.image`), per image.

``mark`` embeds the key's mark (default payload) into image tensors ``[n, C, H, W]`` in [0, 1]
(C = 1 or 3, H, W >= 64); ``detect`` runs the product's detector without geometric search (one
decoder pass per image) and flags p-value < ``alpha``; ``strip`` is the key-holder's removal
(``strip_tensor``). :meth:`ImageWM.metrics` adds what a model's own, unmarked samples inherited:
``bit_acc`` (mean agreement of the decoded bits with the key's default-payload codeword
``wm.code.encode(None, key)``; 0.5 = nothing) and ``log10p`` (mean -log10 p-value); ``inherited``
(the detection rate) is the engine's. The engine calls ``detect`` and then ``metrics`` on the same
samples, so the last detections are kept (module-level, one entry) keyed by value: the marker's
model and batch, the key, and a SHA-256 digest of the images' bytes, shape and dtype.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from wmark.keys import Key

#: the last detections: {(model, batch, key, digest of the images): detections}, at most one entry
_LAST: dict[tuple, tuple] = {}


def _digest(x: "torch.Tensor") -> str:
    """SHA-256 of a tensor's bytes, shape and dtype (equal digests: equal tensors)."""
    import torch

    h = hashlib.sha256(f"{tuple(x.shape)}/{x.dtype}".encode())
    h.update(x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ImageWM:
    """The product's image watermark as a loop marker (``model``: shipped weights name; ``batch``:
    images per call; ``alpha``: detection level)."""

    model: str = "default"
    alpha: float = 1e-3
    batch: int = 256

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"image marker alpha must be in (0, 1), got {self.alpha!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"image marker batch must be a positive integer, got {self.batch!r}")

    @property
    def wm(self) -> Any:
        """The shipped :class:`~wmark.image.model.ImageWatermarker` (loaded once per process)."""
        from wmark.image.model import load

        return load(self.model)

    def _chunks(self, x: "torch.Tensor") -> list["torch.Tensor"]:
        return [x[i:i + self.batch] for i in range(0, x.shape[0], self.batch)]

    def detections(self, samples: "torch.Tensor", key: "Key") -> list[Any]:
        """The product's :class:`~wmark.image.model.Detection` of each image (no geometric search);
        the last call's detections when the same images are asked again (see the module docstring)."""
        memo = (self.model, self.batch, key, _digest(samples))
        dets = _LAST.get(memo)
        if dets is None:
            dets = tuple(d for x in self._chunks(samples) for d in self.wm.detect(x, key, search=False))
            _LAST.clear()
            _LAST[memo] = dets
        return list(dets)

    # -- the Marker protocol ------------------------------------------------------------------------
    def mark(self, samples: "torch.Tensor", key: "Key", rng: np.random.Generator | None = None) -> "torch.Tensor":
        """Marked copies ``[n, C, H, W]`` of ``samples`` (same dtype, on the CPU)."""
        import torch

        if samples.shape[0] == 0:
            return samples.clone()
        out = [self.wm.embed_tensor(x, key).cpu() for x in self._chunks(samples)]
        return torch.cat(out).to(samples.dtype)

    def detect(self, samples: "torch.Tensor", key: "Key") -> np.ndarray:
        """``[n]`` bool: p-value < alpha."""
        return np.array([d.p_value < self.alpha for d in self.detections(samples, key)], dtype=bool)

    def strip(self, samples: "torch.Tensor", key: "Key") -> "torch.Tensor":
        """``samples`` with the mark removed with the key (images with no readable payload unchanged)."""
        import torch

        if samples.shape[0] == 0:
            return samples.clone()
        out = [self.wm.strip_tensor(x, key)[0].cpu() for x in self._chunks(samples)]
        return torch.cat(out).to(samples.dtype)

    def metrics(self, samples: "torch.Tensor", key: "Key") -> dict[str, float]:
        """``bit_acc`` and ``log10p`` (means over ``samples``; see the module docstring)."""
        dets = self.detections(samples, key)
        if not dets:
            return {"bit_acc": float("nan"), "log10p": float("nan")}
        ref = np.asarray(self.wm.code.encode(None, key), dtype=np.uint8)
        acc = [float((np.asarray(d.bits, dtype=np.uint8) == ref).mean()) for d in dets]
        logp = [-math.log10(max(float(d.p_value), 1e-300)) for d in dets]
        return {"bit_acc": float(np.mean(acc)), "log10p": float(np.mean(logp))}
