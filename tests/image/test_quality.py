"""wmark.image.quality: PSNR closed forms, caps and shapes."""
from __future__ import annotations

import math

import numpy as np
import torch

from wmark.image.quality import psnr, ssim_luma


def test_psnr_closed_form():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10  # mse = 100 / 48
    assert psnr(a, b) == math.log10(255.0 ** 2 / (100 / 48)) * 10
    assert psnr(a, a) == math.inf and psnr(a, a, cap=100.0) == 100.0
    assert math.isnan(psnr(a, b[:2]))
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    assert psnr(x, x + 0.01, peak=1.0) == 40.0 or abs(psnr(x, x + 0.01, peak=1.0) - 40.0) < 1e-9


def test_ssim_luma():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert ssim_luma(a, a) == 1.0
    assert ssim_luma(a, 255 - a) < 0.1
    assert math.isnan(ssim_luma(a, a[:16]))
