"""MNIST for the image loop: the shared test split (10k digits) read from its idx ``.gz`` files and
upsampled to ``size`` x ``size`` grayscale in [0, 1] (bilinear), cached per process.

The shared data set holds only the MNIST *test* split (``../shared/data/mnist``); it is the whole data
set here. :data:`TRAIN_RANGE` / :data:`EVAL_RANGE` split it into the loop's real-data pool and a
held-out evaluation set.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
LABELS_FILE = "t10k-labels-idx1-ubyte.gz"
#: index ranges of the 10k split: real-data pool of the loop, held-out evaluation images
TRAIN_RANGE = (0, 8000)
EVAL_RANGE = (8000, 10000)

_CACHE: dict[tuple[str, int], tuple["torch.Tensor", np.ndarray]] = {}


def mnist_dir(root: str | Path | None = None) -> Path:
    """The MNIST folder: ``root`` if given, else ``shared_data("mnist")``."""
    from wmark.assets import shared_data

    return Path(root) if root is not None else shared_data("mnist")


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def upsample(x28: np.ndarray, size: int) -> "torch.Tensor":
    """uint8 digits ``[N, 28, 28]`` -> float32 ``[N, 1, size, size]`` in [0, 1] (bilinear)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(x28, dtype=np.float32) / 255.0)[:, None]
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


def load_mnist(root: str | Path | None = None, size: int = 64) -> tuple["torch.Tensor", np.ndarray]:
    """All 10k images ``[10000, 1, size, size]`` float32 in [0, 1] and labels ``[10000]`` int64.

    FileNotFoundError (naming the folder) where the shared data is absent."""
    d = mnist_dir(root)
    k = (str(d.resolve()), int(size))
    if k not in _CACHE:
        img, lab = d / IMAGES_FILE, d / LABELS_FILE
        if not img.is_file():
            raise FileNotFoundError(f"MNIST images not found at {img} (the shared data folder; "
                                    "set WMARK_SHARED_DATA)")
        x = _read_idx(img, 16).reshape(-1, 28, 28)
        y = _read_idx(lab, 8).astype(np.int64) if lab.is_file() else np.full(len(x), -1, dtype=np.int64)
        _CACHE[k] = (upsample(x, int(size)), y)
    return _CACHE[k]
