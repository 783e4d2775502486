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


@pytest.fixture
def checkpoint_round_trip():
    """``f(obj) -> obj`` through a checkpoint's encoding, ``torch.save`` and ``torch.load(weights_only=True)``."""
    import io

    torch = pytest.importorskip("torch")
    from wmark.loop.state import decode, encode

    def round_trip(obj):
        buf = io.BytesIO()
        torch.save(encode(obj), buf)
        buf.seek(0)
        return decode(torch.load(buf, weights_only=True))

    return round_trip
