import numpy as np
import pytest
import torch

from wmark.text import hashing


def _ref_mix(x: int) -> int:
    """uint32 reference in plain Python integers."""
    m = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x045D9F3B) & m
    x ^= x >> 16
    x = (x * 0x045D9F3B) & m
    return x ^ (x >> 16)


def test_mix32_matches_python_uint32_reference():
    vals = [0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1, 0xDEADBEEF]
    x = torch.tensor([hashing.to_i32(v) for v in vals], dtype=torch.int32)
    got = hashing.to_u32(hashing.mix32(x)).tolist()
    assert got == [_ref_mix(v) for v in vals]


def test_mix32_is_a_bijection_on_a_slice():
    x = torch.arange(0, 1 << 20, dtype=torch.int32)
    assert torch.unique(hashing.mix32(x)).numel() == x.numel()


def test_lt_u32_and_umin_use_unsigned_order():
    a = torch.tensor([hashing.to_i32(v) for v in [5, 2**31 + 5, 2**32 - 1]], dtype=torch.int32)
    assert hashing.lt_u32(a, 2**31).tolist() == [True, False, False]
    assert hashing.lt_u32(a, 2**32 - 1).tolist() == [True, True, False]
    b = torch.tensor([hashing.to_i32(2**31)] * 3, dtype=torch.int32)
    assert hashing.to_u32(hashing.umin(a, b)).tolist() == [5, 2**31, 2**31]


def test_threshold_fraction_of_hashes():
    h = hashing.token_table(42, 200_000)
    for gamma in (0.1, 0.25, 0.5, 0.9):
        frac = hashing.lt_u32(h, hashing.threshold_for(gamma)).double().mean().item()
        assert abs(frac - gamma) < 4 * np.sqrt(gamma * (1 - gamma) / h.numel())
    with pytest.raises(ValueError, match="fraction"):
        hashing.threshold_for(1.0)


def test_uniform23_strictly_inside_unit_interval_and_uniform():
    h = hashing.token_table(7, 100_000)
    u = hashing.uniform23(h, torch.float64)
    assert float(u.min()) > 0 and float(u.max()) < 1
    from scipy.stats import kstest

    assert kstest(u.numpy(), "uniform").pvalue > 1e-3
    extremes = torch.tensor([0, -1], dtype=torch.int32)  # uint32 0 and 2**32 - 1
    e = hashing.uniform23(extremes, torch.float32)
    assert 0 < float(e[0]) and float(e[1]) < 1


def test_context_hash_order_sensitive_and_min_order_free():
    w = hashing.hash_tokens(torch.tensor([[1, 2, 3], [3, 2, 1]]), 9)
    ch = hashing.context_hash(w, 9)
    cm = hashing.context_min(w, 9)
    assert ch[0] != ch[1]
    assert cm[0] == cm[1]


def test_table_gather_equals_direct_hash():
    ids = torch.randint(0, 1000, (5, 7))
    assert torch.equal(hashing.token_table(11, 1000)[ids], hashing.hash_tokens(ids, 11))
