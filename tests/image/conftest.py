"""Fixtures of the image tests: the shipped model and a few training photos (never Kodak)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def wm():
    """The shipped image watermarker (``wmark.image.load()``), one per test module."""
    from wmark.image import load

    return load()


@pytest.fixture(scope="module")
def photos(shared_data):
    """The first four BSDS training photos as uint8 arrays [321, 481, 3] or [481, 321, 3]."""
    from PIL import Image

    paths = sorted((shared_data / "train").glob("bsds_*.jpg"))[:4]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
