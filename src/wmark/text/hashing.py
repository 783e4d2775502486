"""A small, stateless, keyed integer hash: broadcastable, identical on every device.

Semantics are uint32 arithmetic. Values are carried in ``int32`` tensors with two's-complement
wrap-around (what torch's CPU and CUDA integer kernels, ``torch.compile``d C++ and Triton all do);
right shifts are made logical by masking. No ``torch.Generator`` is involved, so green lists are
bit-identical across devices, dtypes and batch positions.

The mixer is the two-round multiply-xorshift finaliser ``x ^= x >>> 16; x *= 0x45d9f3b`` (twice) and a
last xorshift (full 32-bit avalanche). Everything in ``wmark.text`` is built on :func:`mix32`,
:func:`token_table` / :func:`hash_tokens` and :func:`context_hash` / :func:`context_min`.
"""
from __future__ import annotations

import torch

MUL = 0x045D9F3B  # odd multiplier
SENTINEL_ID = -1  # a missing context token (before the start of the sequence)
_INT32_MIN = -(2**31)


def to_i32(value: int) -> int:
    """Reinterpret the low 32 bits of a Python int as a signed int32 value."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


def to_u32(x: torch.Tensor) -> torch.Tensor:
    """int32 tensor -> int64 tensor of the same bits read as unsigned, in [0, 2**32)."""
    return x.to(torch.int64) & 0xFFFFFFFF


def mix32(x: torch.Tensor) -> torch.Tensor:
    """Bijective avalanche mix of int32-held uint32 values, any shape -> same shape, int32."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * MUL
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * MUL
    return x ^ ((x >> 16) & 0xFFFF)


def lt_u32(x: torch.Tensor, threshold: int) -> torch.Tensor:
    """``uint32(x) < threshold`` for int32-held x and an int threshold in [0, 2**32)."""
    return (x ^ _INT32_MIN) < (threshold + _INT32_MIN)


def threshold_for(fraction: float) -> int:
    """uint32 threshold t with P[uint32 hash < t] = fraction (to 2**-32); fraction in (0, 1)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    return min(int(round(fraction * 2**32)), 2**32 - 1)


def hash_tokens(ids: torch.Tensor, seed: int) -> torch.Tensor:
    """Keyed per-token hash ``mix32(mix32(id) ^ seed)`` elementwise (any shape) -> int32.
    :data:`SENTINEL_ID` (-1) stands for a missing context token before the sequence start."""
    return mix32(mix32(ids.to(torch.int32)) ^ to_i32(seed))


def token_table(seed: int, vocab_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``hash_tokens(arange(V), seed)``: the per-token hash table, int32 ``[V]``."""
    return hash_tokens(torch.arange(vocab_size, dtype=torch.int32, device=device), seed)


def context_hash(hx: torch.Tensor, seed: int) -> torch.Tensor:
    """Order-sensitive keyed hash of already-hashed tokens over the last dimension,
    ``hx [..., h] -> [...]`` int32 (accumulate-style: ``a = mix32(a ^ hx_i)`` left to right)."""
    acc = torch.full(hx.shape[:-1], to_i32(seed ^ 0x5BD1E995), dtype=torch.int32, device=hx.device)
    for i in range(hx.shape[-1]):
        acc = mix32(acc ^ hx[..., i])
    return acc


def umin(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise minimum in uint32 order of int32-held values (broadcasting)."""
    return torch.where(lt_u32_pair(a, b), a, b)


def lt_u32_pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``uint32(a) < uint32(b)`` elementwise."""
    return (a ^ _INT32_MIN) < (b ^ _INT32_MIN)


def context_min(hx: torch.Tensor, seed: int) -> torch.Tensor:
    """Order-free min-hash (uint32 order) of already-hashed tokens, ``hx [..., h] -> [...]``."""
    if hx.shape[-1] == 0:
        return torch.full(hx.shape[:-1], -1, dtype=torch.int32, device=hx.device)  # uint32 max
    return (hx ^ _INT32_MIN).amin(dim=-1) ^ _INT32_MIN  # signed order == unsigned order after the flip


def uniform23(h: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Map hashes to uniforms strictly inside (0, 1): the top 23 bits on a midpoint grid,
    ``(k + 1/2) / 2**23``, exactly representable in float32 (24-bit mantissa)."""
    return (((h >> 9) & 0x7FFFFF).to(dtype) + 0.5) * (1.0 / 8388608.0)
