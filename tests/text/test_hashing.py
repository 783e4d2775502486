import hashlib

import numpy as np
import pytest
import torch

from wmark.text import hashing

SUBKEY = bytes(range(32))


def to_i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


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
    x = torch.tensor([to_i32(v) for v in vals], dtype=torch.int32)
    got = hashing.to_u32(hashing.mix32(x)).tolist()
    assert got == [_ref_mix(v) for v in vals]


def test_mix32_is_a_bijection_on_a_slice():
    x = torch.arange(0, 1 << 20, dtype=torch.int32)
    assert torch.unique(hashing.mix32(x)).numel() == x.numel()


def test_lt_u32_and_umin_use_unsigned_order():
    a = torch.tensor([to_i32(v) for v in [5, 2**31 + 5, 2**32 - 1]], dtype=torch.int32)
    assert hashing.lt_u32(a, 2**31).tolist() == [True, False, False]
    assert hashing.lt_u32(a, 2**32 - 1).tolist() == [True, True, False]
    b = torch.tensor([to_i32(2**31)] * 3, dtype=torch.int32)
    assert hashing.to_u32(hashing.umin(a, b)).tolist() == [5, 2**31, 2**31]


def test_threshold_fraction_of_hashes():
    h = hashing.prf_table(SUBKEY, 200_000)
    for gamma in (0.1, 0.25, 0.5, 0.9):
        frac = hashing.lt_u32(h, hashing.threshold_for(gamma)).double().mean().item()
        assert abs(frac - gamma) < 4 * np.sqrt(gamma * (1 - gamma) / h.numel())
    with pytest.raises(ValueError, match="fraction"):
        hashing.threshold_for(1.0)


def test_uniform23_strictly_inside_unit_interval_and_uniform():
    h = hashing.prf_table(SUBKEY, 100_000)
    u = hashing.uniform23(h, torch.float64)
    assert float(u.min()) > 0 and float(u.max()) < 1
    from scipy.stats import kstest

    assert kstest(u.numpy(), "uniform").pvalue > 1e-3
    extremes = torch.tensor([0, -1], dtype=torch.int32)  # uint32 0 and 2**32 - 1
    e = hashing.uniform23(extremes, torch.float32)
    assert 0 < float(e[0]) and float(e[1]) < 1


def test_context_hash_order_sensitive_and_min_order_free():
    w = hashing.prf_table(SUBKEY, 4)[torch.tensor([[1, 2, 3], [3, 2, 1]])]
    ch = hashing.context_hash(w, 9)
    cm = hashing.context_min(w, 9)
    assert ch[0] != ch[1]
    assert cm[0] == cm[1]
    assert hashing.context_hash(w, 10)[0] != ch[0]  # the (keyed) start value enters


# ---- the keyed PRF: keyed BLAKE2b (RFC 7693) in counter mode ----------------------------------------
def _expected(subkey: bytes, index: int) -> int:
    """Value ``index`` of the stream, computed independently with hashlib."""
    block = hashlib.blake2b((index // 16).to_bytes(8, "little"), key=subkey, digest_size=64,
                            person=b"wmark/text/prf").digest()
    return int.from_bytes(block[4 * (index % 16): 4 * (index % 16) + 4], "little")


def test_prf_table_known_answers():
    n = 1000
    got = hashing.to_u32(hashing.prf_table(SUBKEY, n)).tolist()
    for i in (0, 1, 15, 16, 17, 500, n - 1):
        assert got[i] == _expected(SUBKEY, i)
    # a fixed answer pins the construction itself (key, person tag, counter encoding, word order)
    assert got[0] == int.from_bytes(hashlib.blake2b(bytes(8), key=SUBKEY, digest_size=64,
                                                    person=b"wmark/text/prf").digest()[:4], "little")
    assert hashing.prf_table(SUBKEY, 17).tolist() == hashing.prf_table(SUBKEY, n)[:17].tolist()  # a prefix
    assert hashing.prf_table(SUBKEY, 0).shape == (0,)
    assert hashing.prf_table(SUBKEY, 5).dtype == torch.int32


@pytest.mark.parametrize("byte", [0, 15, 31])
def test_every_key_byte_changes_about_half_the_table_bits(byte):
    other = bytearray(SUBKEY)
    other[byte] ^= 0x80 if byte != 31 else 0x01  # one bit (the last bit of the last byte too)
    a, b = hashing.prf_table(SUBKEY, 4096), hashing.prf_table(bytes(other), 4096)
    x = hashing.to_u32(a ^ b)
    bits = sum(int(((x >> k) & 1).sum()) for k in range(32))
    assert abs(bits / (32 * 4096) - 0.5) < 0.01  # 131072 bits: sd 0.0014


def test_prf_table_refuses_short_subkeys():
    for bad in (bytes(8), bytes(16), bytes(31), bytes(64), "x" * 32):
        with pytest.raises(ValueError, match="32 bytes"):
            hashing.prf_table(bad, 10)


def test_mix32_in_place_equals_the_new_tensor_form():
    x = torch.cat([hashing.prf_table(SUBKEY, 50_000),
                   torch.tensor([0, -1, -(2**31), 2**31 - 1], dtype=torch.int32)]).reshape(-1, 4)
    want = hashing.mix32(x)
    y = x.clone()
    assert hashing.mix32(y, out=y, scratch=torch.empty_like(y)) is y and torch.equal(y, want)
    before, out = x.clone(), torch.empty_like(x)
    assert torch.equal(hashing.mix32(x, out=out), want) and torch.equal(x, before)  # the input untouched


def test_uniform23_in_place_bits_equal_the_conversion():
    h = torch.cat([hashing.prf_table(SUBKEY, 100_000), torch.arange(-600, 600, dtype=torch.int32),
                   torch.tensor([-(2**31), 2**31 - 1, -512, 511, 512], dtype=torch.int32)])
    want = hashing.uniform23(h, torch.float32)
    got = hashing.uniform23(h.clone(), inplace=True)
    assert got.dtype == torch.float32 and torch.equal(got.view(torch.int32), want.view(torch.int32))
    with pytest.raises(ValueError, match="float32 only"):
        hashing.uniform23(h.clone(), torch.float64, inplace=True)
