"""Image quality: PSNR and SSIM on luma, for numpy arrays or CPU tensors of equal shape."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from wmark.assets import LUMA


def psnr(a: Any, b: Any, peak: float = 255.0, cap: float | None = None) -> float:
    """PSNR in dB of two images of the same shape on a ``peak`` scale (255 for uint8, 1 for [0, 1]
    floats); NaN if shapes differ; identical images give ``cap`` (inf without one), and no value
    exceeds ``cap``."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        return float("nan")
    mse = float(np.mean((x - y) ** 2))
    top = math.inf if cap is None else cap
    if mse <= peak ** 2 * 10 ** (-top / 10):
        return top
    return 10 * math.log10(peak ** 2 / mse)


def _gray(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) @ np.array(LUMA) if a.ndim == 3 else a.astype(np.float64)


def ssim_luma(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM on luma (Rec. 601) of two uint8 images ``[H, W, 3]`` or ``[H, W]`` (skimage, 7x7 window;
    NaN if shapes differ)."""
    if a.shape != b.shape:
        return float("nan")
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_gray(a), _gray(b), data_range=255.0))
