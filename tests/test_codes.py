"""Keyed Reed-Solomon payload code."""
from __future__ import annotations

import numpy as np
import pytest

from wmark.codes import PayloadCode, codeword_pvalue, parse_payload
from wmark.keys import Key


@pytest.fixture(scope="module")
def code():
    return PayloadCode()


def test_sizes(code):
    assert code.n_bits == 128 and code.k_bits == 48


def test_round_trip(code, demo_key):
    bits = code.encode("0102030405ff", demo_key)
    assert bits.shape == (128,) and set(np.unique(bits)) <= {0, 1}
    r = code.decode(bits, demo_key)
    assert r.ok and r.payload == bytes.fromhex("0102030405ff") and r.agree == 128 and r.n_corrected == 0
    assert r.p_value < 1e-20


def test_corrects_errors_and_erasures(code, demo_key):
    bits = code.encode(b"abcdef", demo_key)
    rng = np.random.default_rng(1)
    for _ in range(20):
        noisy = bits.copy()
        idx = rng.choice(128, 5, replace=False)
        noisy[idx] ^= 1
        conf = np.ones(128)
        conf[idx] = 0.01
        r = code.decode(noisy, demo_key, conf)
        assert r.payload == b"abcdef" and r.agree == 123


def test_scramble_is_keyed_and_invertible(code, demo_key):
    k2 = Key.from_passphrase("another key")
    cw = np.random.default_rng(0).integers(0, 2, 128).astype(np.uint8)
    s1, s2 = code.scramble(cw, demo_key), code.scramble(cw, k2)
    assert (code.descramble(s1, demo_key) == cw).all()
    assert 30 < (s1 != s2).sum() < 98
    assert not (code.permutation(demo_key) == code.permutation(k2)).all()


def test_wrong_key_cannot_read(code, demo_key):
    k2 = Key.from_passphrase("another key")
    r = code.decode(code.encode("0102030405ff", demo_key), k2, np.ones(128))
    assert r.payload != bytes.fromhex("0102030405ff")
    assert r.p_value > 1e-3


def test_null_pvalue_valid_on_random_words(code, demo_key):
    rng = np.random.default_rng(0)
    ps = np.array([code.decode(rng.integers(0, 2, 128), demo_key, rng.random(128)).p_value for _ in range(300)])
    assert (ps < 0.01).mean() <= 0.01 + 1e-9
    assert codeword_pvalue(128, 128, 48) == pytest.approx(2.0 ** -80)


@pytest.mark.parametrize("bad", ["zz", "01" * 7, -1, 2 ** 48, 1.5])
def test_bad_payload(bad):
    with pytest.raises(ValueError):
        parse_payload(bad, 6)


def test_payload_forms():
    assert parse_payload(None, 6) == bytes(6)
    assert parse_payload(258, 6) == bytes([0, 0, 0, 0, 1, 2])
    assert parse_payload("0x0102", 6) == bytes([0, 0, 0, 0, 1, 2])
    assert parse_payload(b"abcdef", 6) == b"abcdef"

