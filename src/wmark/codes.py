"""Payload <-> keyed codeword bits: Reed-Solomon parity (``reedsolo``) plus keyed scrambling.

A payload of ``data_bytes`` bytes (default 6 = 48 bits) gets ``parity_bytes`` Reed-Solomon parity
bytes (default 10), giving an ``n_bits``-bit codeword (default 128). The codeword bits are then
permuted and XOR-ed with a key-derived stream (``Key.derive("image/code/...")``), so the carried bits
look uniform to anyone without the key: another key neither reads the payload nor forges a codeword.

Null model for the p-value: without the mark (or under another key) the descrambled bits are taken as
uniform iid. Whatever procedure picks a codeword ``c`` (RS decoding, erasures, ...), by the union bound
over the ``2**(8*data_bytes)`` codewords::

    P[ exists c : agree(bits, c) >= a ]  <=  2**k * P[Binomial(n, 1/2) >= a]

so ``codeword_pvalue`` is a valid (conservative) p-value for "these bits carry a codeword under this
key". With a known payload the factor ``2**k`` drops (``known_payload_pvalue``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from wmark.keys import Key

__all__ = ["PayloadCode", "DecodeResult", "parse_payload", "codeword_pvalue", "known_payload_pvalue"]


def parse_payload(payload: bytes | str | int | None, nbytes: int) -> bytes:
    """Normalise a payload (bytes, hex string, non-negative int or None = zeros) to ``nbytes`` bytes."""
    if payload is None:
        return bytes(nbytes)
    if isinstance(payload, (bytes, bytearray)):
        raw = bytes(payload)
    elif isinstance(payload, str):
        text = payload.strip().lower().removeprefix("0x")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"payload must be hex (up to {2 * nbytes} hex digits), got {payload!r}") from None
        raw = raw.rjust(nbytes, b"\0") if len(raw) <= nbytes else raw
    elif isinstance(payload, (int, np.integer)) and not isinstance(payload, bool):
        if payload < 0 or payload >= 1 << (8 * nbytes):
            raise ValueError(f"payload integer must be in [0, 2**{8 * nbytes})")
        raw = int(payload).to_bytes(nbytes, "big")
    else:
        raise ValueError(f"payload must be bytes, hex str or int, got {type(payload).__name__}")
    if len(raw) != nbytes:
        raise ValueError(f"payload must be {nbytes} bytes ({8 * nbytes} bits), got {len(raw)}")
    return raw


def bytes_to_bits(b: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(b, dtype=np.uint8))


def bits_to_bytes(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


def _stream(key: "Key", label: str, nbytes: int) -> bytes:
    """``nbytes`` key-derived bytes for ``label`` (counter mode over ``Key.derive``)."""
    blocks = [key.derive(f"{label}/{i}", 64) for i in range(math.ceil(nbytes / 64))]
    return b"".join(blocks)[:nbytes]


def codeword_pvalue(agree, n: int, k_bits: int):
    """Union-bound p-value ``min(1, 2**k_bits * P[Bin(n, 1/2) >= agree])`` (numpy, broadcasts)."""
    from wmark.stats import binom_sf, bonferroni

    return bonferroni(binom_sf(np.asarray(agree), n, 0.5), 2.0 ** k_bits)


def known_payload_pvalue(agree, n: int):
    """Exact p-value ``P[Bin(n, 1/2) >= agree]`` against one known codeword."""
    from wmark.stats import binom_sf

    return np.asarray(binom_sf(np.asarray(agree), n, 0.5), dtype=np.float64)


@dataclass(frozen=True)
class DecodeResult:
    """Outcome of decoding one word of carried bits.

    ``payload`` is None where RS decoding failed; ``n_corrected`` counts corrected bytes;
    ``agree`` is the number of carried bits (of ``n``) that match the chosen codeword;
    ``p_value`` is the union-bound p-value (1.0 when decoding failed)."""

    payload: bytes | None
    ok: bool
    n_corrected: int
    agree: int
    n: int
    p_value: float
    codeword: np.ndarray | None  # [n] carried (scrambled) bits of the chosen codeword, uint8


@dataclass(frozen=True)
class PayloadCode:
    """Keyed Reed-Solomon code: ``data_bytes`` payload bytes + ``parity_bytes`` parity bytes."""

    data_bytes: int = 6
    parity_bytes: int = 10
    purpose: str = "image/code"

    def __post_init__(self) -> None:
        if self.data_bytes < 1 or self.parity_bytes < 2 or self.data_bytes + self.parity_bytes > 255:
            raise ValueError("need data_bytes >= 1, parity_bytes >= 2, total <= 255")

    @property
    def n_bits(self) -> int:
        """Number of carried bits (codeword length)."""
        return 8 * (self.data_bytes + self.parity_bytes)

    @property
    def k_bits(self) -> int:
        """Number of payload bits."""
        return 8 * self.data_bytes

    def _codec(self):
        import reedsolo

        return reedsolo.RSCodec(self.parity_bytes, nsize=self.data_bytes + self.parity_bytes)

    # -- keyed scrambling ---------------------------------------------------------------------
    def keystream(self, key: "Key") -> np.ndarray:
        """[n_bits] uint8 key-derived XOR stream."""
        return bytes_to_bits(_stream(key, f"{self.purpose}/xor/{self.n_bits}", (self.n_bits + 7) // 8))[: self.n_bits]

    def permutation(self, key: "Key") -> np.ndarray:
        """[n_bits] int64 key-derived permutation (codeword bit i goes to carried position perm[i])."""
        words = np.frombuffer(_stream(key, f"{self.purpose}/perm/{self.n_bits}", 4 * self.n_bits), dtype="<u4")
        return np.argsort(words, kind="stable").astype(np.int64)

    def scramble(self, code_bits: np.ndarray, key: "Key") -> np.ndarray:
        """Codeword bits [..., n] -> carried bits [..., n] (permute, then XOR)."""
        code_bits = np.asarray(code_bits, dtype=np.uint8)
        out = np.empty_like(code_bits)
        out[..., self.permutation(key)] = code_bits
        return out ^ self.keystream(key)

    def descramble(self, carried: np.ndarray, key: "Key") -> np.ndarray:
        """Carried bits [..., n] -> codeword bits [..., n] (inverse of :meth:`scramble`)."""
        carried = np.asarray(carried, dtype=np.uint8) ^ self.keystream(key)
        return carried[..., self.permutation(key)]

    # -- encode / decode ------------------------------------------------------------------------
    def encode(self, payload: bytes | str | int | None, key: "Key") -> np.ndarray:
        """Payload -> [n_bits] uint8 carried bits (RS-encode, permute, XOR with the key stream)."""
        data = parse_payload(payload, self.data_bytes)
        cw = bytes(self._codec().encode(data))
        return self.scramble(bytes_to_bits(cw), key)

    def decode(self, carried: np.ndarray, key: "Key", confidence: np.ndarray | None = None) -> DecodeResult:
        """Decode one word of carried bits [n_bits] (0/1).

        ``confidence`` [n_bits] (e.g. |logit|) enables erasure decoding: where plain decoding
        fails, the least confident bytes are erased (2, 4, ... up to ``parity_bytes - 2``) and the
        candidate that agrees with most carried bits wins."""
        import reedsolo

        carried = (np.asarray(carried).reshape(-1) > 0).astype(np.uint8)
        if carried.size != self.n_bits:
            raise ValueError(f"expected {self.n_bits} bits, got {carried.size}")
        code_bits = self.descramble(carried, key)
        word = bytearray(bits_to_bytes(code_bits))
        codec = self._codec()
        candidates: list[tuple[bytes, int]] = []

        def attempt(erase: list[int] | None) -> None:
            try:
                msg, _, errata = codec.decode(word, erase_pos=erase or None)
            except (reedsolo.ReedSolomonError, ValueError, IndexError, ZeroDivisionError):
                return
            candidates.append((bytes(msg), len(errata)))

        attempt(None)
        if confidence is not None:
            conf_code = np.asarray(confidence, dtype=np.float64).reshape(-1)
            conf_code = conf_code[self.permutation(key)]  # codeword order
            byte_conf = conf_code.reshape(-1, 8).min(axis=1)
            order = [int(i) for i in np.argsort(byte_conf, kind="stable")]
            for e in range(2, self.parity_bytes - 1, 2):
                attempt(sorted(order[:e]))
        best: tuple[int, bytes, int, np.ndarray] | None = None
        for msg, nfix in candidates:
            cw_carried = self.scramble(bytes_to_bits(bytes(codec.encode(msg))), key)
            agree = int((cw_carried == carried).sum())
            if best is None or agree > best[0]:
                best = (agree, msg, nfix, cw_carried)
        if best is None:
            return DecodeResult(None, False, 0, 0, self.n_bits, 1.0, None)
        agree, msg, nfix, cw = best
        p = float(codeword_pvalue(agree, self.n_bits, self.k_bits))
        return DecodeResult(msg, True, nfix, agree, self.n_bits, p, cw)
