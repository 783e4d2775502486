"""Fixtures of the loop tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is faster (and kinder to shared, loaded CPUs)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
