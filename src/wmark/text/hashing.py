"""Keyed hashing of token ids: a keyed PRF for the key material, a public mixer to combine.

**Keyed part (the secret).** Every keyed value is an output of keyed BLAKE2b (RFC 7693), the PRF
:func:`prf_table` (named :data:`PRF`): a 32-byte (256-bit) subkey from
``Key.derive(purpose, 32)`` drives a counter-mode stream, block ``i`` = ``BLAKE2b-512(i as 8 bytes
little-endian, key=subkey, person=b"wmark/text/prf")``, read as 16 little-endian uint32 values each.
A scheme's per-token tables (``t[v]``, ``u[v]``) and its constants are the first values of such
streams: the key is never cut to a 32- or 64-bit seed, so it cannot be brute-forced.

**Public part (no secret).** Per (context, candidate) the scheme combines table values with the
public mixer :func:`mix32`: the two-round multiply-xorshift finaliser ``x ^= x >>> 16;
x *= 0x45d9f3b`` (twice) and a last xorshift (full 32-bit avalanche).

Semantics are uint32 arithmetic. Values are carried in ``int32`` tensors with two's-complement
wrap-around (what torch's CPU and CUDA integer kernels, ``torch.compile``d C++ and Triton all do);
right shifts are made logical by masking. No ``torch.Generator`` is involved, so green lists are
bit-identical across devices, dtypes and batch positions.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

#: The keyed PRF of every text scheme (its ``params["hash"]``).
PRF = "blake2b-256"
SUBKEY_BYTES = 32  # 256-bit subkeys
_PRF_PERSON = b"wmark/text/prf"  # BLAKE2b personalisation: domain-separates these streams

MUL = 0x045D9F3B  # odd multiplier
SENTINEL_ID = -1  # a missing context token (before the start of the sequence)
_INT32_MIN = -(2**31)
_INPLACE_MIN = 1 << 14  # mix32 rounds in place (one scratch buffer) from this many elements


def to_u32(x: torch.Tensor) -> torch.Tensor:
    """int32 tensor -> int64 tensor of the same bits read as unsigned, in [0, 2**32)."""
    return x.to(torch.int64) & 0xFFFFFFFF


def mix32(x: torch.Tensor, *, out: torch.Tensor | None = None, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Bijective avalanche mix of int32-held uint32 values, any shape -> same shape, int32: a new
    tensor, or ``out`` (int32, x's shape, may be ``x`` itself) overwritten; ``scratch`` (int32, x's
    shape) is the one buffer the rounds reuse. With both given nothing is allocated (at [B, V] each
    pass is memory-bound and a fresh buffer costs as much as a pass)."""
    if out is None and x.numel() < _INPLACE_MIN:  # small: fewest operations (each costs its dispatch)
        for i in range(3):
            if i:
                x = x * MUL
            x = x ^ ((x >> 16) & 0xFFFF)
        return x
    if out is None:
        s = x >> 16
        s &= 0xFFFF
        x = x ^ s
    else:
        if out is not x:
            out.copy_(x)
        x, s = out, torch.empty_like(out) if scratch is None else scratch
        _xorshift16(x, s)
    for _ in range(2):
        x *= MUL
        _xorshift16(x, s)
    return x


def _xorshift16(x: torch.Tensor, s: torch.Tensor) -> None:
    """``x ^= x >>> 16`` in place, through the buffer ``s`` (the logical shift is the arithmetic one, masked)."""
    s.copy_(x)
    s >>= 16
    s &= 0xFFFF
    x ^= s


def lt_u32(x: torch.Tensor, threshold: int) -> torch.Tensor:
    """``uint32(x) < threshold`` for int32-held x and an int threshold in [0, 2**32)."""
    return (x ^ _INT32_MIN) < (threshold + _INT32_MIN)


def threshold_for(fraction: float) -> int:
    """uint32 threshold t with P[uint32 hash < t] = fraction (to 2**-32); fraction in (0, 1)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    return min(int(round(fraction * 2**32)), 2**32 - 1)


def prf_table(subkey: bytes, n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The first ``n`` values of the keyed BLAKE2b stream of ``subkey`` (32 bytes; see the module
    docstring), int32 ``[n]`` holding the uint32 bits. About 4 ms per 100k values on one core."""
    if not isinstance(subkey, (bytes, bytearray)) or len(subkey) != SUBKEY_BYTES:
        raise ValueError(f"subkey must be {SUBKEY_BYTES} bytes (from Key.derive(purpose, {SUBKEY_BYTES}))")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    keyed = hashlib.blake2b(key=bytes(subkey), digest_size=64, person=_PRF_PERSON)

    def block(i: int) -> bytes:
        h = keyed.copy()  # the keyed state after the key block: ~3x faster than re-keying per block
        h.update(i.to_bytes(8, "little"))
        return h.digest()

    stream = b"".join(block(i) for i in range(-(-n // 16)))
    words = np.frombuffer(stream, dtype="<u4", count=n).astype(np.uint32).view(np.int32)
    return torch.from_numpy(words).to(device)


def context_hash(hx: torch.Tensor, init: int) -> torch.Tensor:
    """Order-sensitive hash of already-hashed (keyed) tokens over the last dimension,
    ``hx [..., h] -> [...]`` int32: ``a = init``, then ``a = mix32(a ^ hx_i)`` left to right
    (``init`` an int32 value, a keyed PRF output)."""
    acc = torch.full(hx.shape[:-1], init, dtype=torch.int32, device=hx.device)
    for i in range(hx.shape[-1]):
        acc = mix32(acc ^ hx[..., i])
    return acc


def umin(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise minimum in uint32 order of int32-held values (broadcasting)."""
    return torch.where(lt_u32_pair(a, b), a, b)


def lt_u32_pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``uint32(a) < uint32(b)`` elementwise."""
    return (a ^ _INT32_MIN) < (b ^ _INT32_MIN)


def context_min(hx: torch.Tensor, init: int) -> torch.Tensor:
    """Order-free min-hash (uint32 order) of already-hashed tokens, ``hx [..., h] -> [...]``
    (``init`` unused: the keyed tokens carry the key)."""
    if hx.shape[-1] == 0:
        return torch.full(hx.shape[:-1], -1, dtype=torch.int32, device=hx.device)  # uint32 max
    return (hx ^ _INT32_MIN).amin(dim=-1) ^ _INT32_MIN  # signed order == unsigned order after the flip


def uniform23(h: torch.Tensor, dtype: torch.dtype = torch.float32, *, inplace: bool = False) -> torch.Tensor:
    """Map hashes to uniforms strictly inside (0, 1): the top 23 bits on a midpoint grid,
    ``(k + 1/2) / 2**23``, exactly representable in float32 (24-bit mantissa). ``inplace`` (float32
    only): ``h`` (int32) is overwritten and the result is its float32 view, built from bits as the
    float ``1 + k / 2**23`` minus ``1 - 2**-24`` (exact: Sterbenz), with no conversion pass."""
    if inplace:
        if dtype != torch.float32 or h.dtype != torch.int32:
            raise ValueError("uniform23(inplace=True) maps int32 hashes to float32 only")
        h >>= 9
        h &= 0x7FFFFF
        h |= 0x3F800000  # exponent of [1, 2)
        r = h.view(torch.float32)
        r -= 1.0 - 2.0 ** -24
        return r
    k = h >> 9
    k &= 0x7FFFFF
    r = k.to(dtype)
    r += 0.5
    r *= 1.0 / 8388608.0
    return r
