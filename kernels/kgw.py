"""Fused KGW watermark step as a Triton kernel: one pass over ``scores [B, V]``.

The semantics are :func:`wmark.text.ops.kgw_bias` / :func:`wmark.text.ops.kgw_green` (the tests compare
the two bit for bit). Per element ``(b, v)``::

    s     = c[b]                 # context-seeded (u None), or
    s     = umin(c[b], u[v])     # self-seeded: the candidate joins the context min-hash
    s     = s ^ a[b]             # when an anchor hash a is given (either mode)
    x     = mix32(s ^ t[v])      # uint32 arithmetic held in int32, wrap-around
    green = uint32(x) < threshold
    out   = scores + delta * green   # a new tensor, dtype of scores

Integer notes (they matter for bit-exactness): int32 ``*`` wraps in Triton exactly like torch; ``>>``
on int32 is *arithmetic* in Triton (as in torch), so every right shift is masked with ``0xFFFF`` the
way :func:`wmark.text.hashing.mix32` does; unsigned order is signed order after flipping the sign bit
(:func:`wmark.text.hashing.lt_u32`), so the threshold travels as the int32 ``threshold - 2**31``.

Float notes: the reference adds in float32 and rounds once to the scores' dtype; so does the kernel,
so float16 / bfloat16 outputs match bit for bit (and ``-0.0`` scores become ``+0.0`` off the green
list, as in torch). bfloat16 is moved as int16 bits and rounded to nearest-even by hand, because Triton's
interpreter truncates on a float32 -> bfloat16 cast (the compiled GPU cast rounds), which would make
the CPU test and the GPU kernel disagree. NaN outputs are canonical (bits may differ from torch's,
whose own CPU paths disagree on NaN bits).

Importing this module imports triton but compiles nothing: kernels are decorated with ``triton.jit``
at first launch (so ``TRITON_INTERPRET`` is read then, not at import time).
"""
from __future__ import annotations

import functools
import operator
import os
from typing import Any

import torch
import triton
import triton.language as tl

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_BLOCK_V = 1024
_NUM_WARPS = 4
_MAX_GRID_Y = 65535  # CUDA limit on gridDim.y (column blocks)


def _kgw_kernel(scores_ptr, out_ptr, c_ptr, t_ptr, u_ptr, a_ptr,
                V, stride_s, thr_flipped, delta,
                BLOCK_V: tl.constexpr, SELF_SEEDED: tl.constexpr, ANCHOR: tl.constexpr,
                WRITE_BIAS: tl.constexpr, BF16: tl.constexpr):
    """One program = one row ``b`` x one block of ``BLOCK_V`` columns.

    WRITE_BIAS: ``out[b, v] = scores[b, v] + delta * green`` (out contiguous ``[B, V]``, dtype of
    scores; scores row stride ``stride_s``, unit column stride; with BF16 both are int16 views of
    bfloat16). Otherwise ``out`` is uint8 ``[B, V]`` holding green (0/1), ``scores_ptr`` unused.
    """
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    mask = cols < V

    sign = -2147483647 - 1  # INT32_MIN, built so that it is an int32 constant
    t = tl.load(t_ptr + cols, mask=mask, other=0)
    c = tl.load(c_ptr + row)
    if SELF_SEEDED:
        u = tl.load(u_ptr + cols, mask=mask, other=0)
        # umin in uint32 order: compare after flipping the sign bit (ties pick u, same bits)
        s = tl.where((c ^ sign) < (u ^ sign), c, u)
    else:
        s = c
    if ANCHOR:
        s = s ^ tl.load(a_ptr + row)
    x = s ^ t
    # mix32: x ^= x >>> 16; x *= 0x045D9F3B; (twice); x ^= x >>> 16 -- logical shift by masking
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x045D9F3B
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x045D9F3B
    x = x ^ ((x >> 16) & 0xFFFF)
    green = (x ^ sign) < thr_flipped

    if WRITE_BIAS:
        src = scores_ptr + row * stride_s + cols
        dst = out_ptr + row * V + cols
        # reference: out = (float32(scores) + green * float32(delta)).to(dtype): one rounding.
        inc = green.to(tl.float32) * delta
        if BF16:
            # bfloat16 travels as int16 bits: widening is a shift, and the round-to-nearest-even is
            # done by hand (the interpreter's float32 -> bfloat16 cast truncates; the GPU's rounds).
            sc = (tl.load(src, mask=mask, other=0).to(tl.int32) << 16).to(tl.float32, bitcast=True)
            res = sc + inc
            rb = res.to(tl.int32, bitcast=True)
            rb = (rb + (((rb >> 16) & 1) + 0x7FFF)) >> 16
            rb = tl.where(res != res, 0x7FC0, rb)  # NaN -> canonical quiet NaN (as c10::BFloat16)
            tl.store(dst, rb.to(tl.int16), mask=mask)
        else:
            sc = tl.load(src, mask=mask, other=0.0)
            tl.store(dst, (sc.to(tl.float32) + inc).to(sc.dtype), mask=mask)
    else:
        tl.store(out_ptr + row * V + cols, green.to(tl.uint8), mask=mask)


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=None)
def _jitted(interpret: bool) -> Any:
    """``triton.jit(_kgw_kernel)``, decorated once per interpreter setting (first launch, not import)."""
    del interpret  # the cache key; triton.jit reads TRITON_INTERPRET itself
    return triton.jit(_kgw_kernel)


def _check_vec(name: str, x: Any, n: int, n_name: str, device: torch.device) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.int32:
        raise ValueError(f"{name} must be int32, got {x.dtype}")
    if x.dim() != 1 or x.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n_name}] = [{n}], got {list(x.shape)}")
    if not x.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    if x.device != device:
        raise ValueError(f"{name} is on {x.device} but the other inputs are on {device}")


def _check_common(c: Any, t: Any, threshold: Any, u: Any, a: Any, device: torch.device | None,
                  B: int | None) -> tuple[int, int, torch.device, int]:
    """Validate the hashing inputs; returns (B, V, device, threshold as int32 after the sign flip)."""
    if not isinstance(c, torch.Tensor) or c.dim() != 1:
        raise ValueError(f"c must be a 1-D int32 tensor [B], got "
                         f"{list(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__}")
    if not isinstance(t, torch.Tensor) or t.dim() != 1:
        raise ValueError(f"t must be a 1-D int32 tensor [V], got "
                         f"{list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    if device is None:
        device = c.device
    if B is None:
        B = c.shape[0]
    V = t.shape[0]
    _check_vec("c", c, B, "B", device)
    _check_vec("t", t, V, "V", device)
    if u is not None:
        _check_vec("u", u, V, "V", device)
    if a is not None:
        _check_vec("a", a, B, "B", device)
    if isinstance(threshold, bool):
        raise ValueError("threshold must be an int in [0, 2**32), got a bool")
    try:
        thr = operator.index(threshold)
    except TypeError:
        raise ValueError(f"threshold must be an int in [0, 2**32), got {type(threshold).__name__}") from None
    if not 0 <= thr < 2**32:
        raise ValueError(f"threshold must be in [0, 2**32), got {thr}")
    if device.type != "cuda" and not _interpret():
        raise ValueError(f"Triton kernels need CUDA tensors (or TRITON_INTERPRET=1), got device {device}")
    return B, V, device, thr - 2**31


def _launch(scores: torch.Tensor | None, out: torch.Tensor, c: torch.Tensor, t: torch.Tensor,
            u: torch.Tensor | None, a: torch.Tensor | None, thr_flipped: int, delta: float,
            block_v: int, num_warps: int) -> None:
    B, V = out.shape
    if B == 0 or V == 0:
        return
    n_blocks = triton.cdiv(V, block_v)
    if n_blocks > _MAX_GRID_Y:
        raise ValueError(f"V = {V} needs {n_blocks} column blocks of {block_v} (> {_MAX_GRID_Y}); "
                         f"raise block_v")
    self_seeded = u is not None
    anchor = a is not None
    kernel = _jitted(_interpret())
    bf16 = scores is not None and scores.dtype == torch.bfloat16
    if bf16:
        scores, out = scores.view(torch.int16), out.view(torch.int16)
    kernel[(B, n_blocks)](
        scores if scores is not None else out, out, c, t,
        u if self_seeded else t, a if anchor else c,
        V, scores.stride(0) if scores is not None else V, thr_flipped, delta,
        BLOCK_V=block_v, SELF_SEEDED=self_seeded, ANCHOR=anchor, WRITE_BIAS=scores is not None,
        BF16=bf16, num_warps=num_warps,
    )


def _check_block(block_v: int) -> None:
    if not isinstance(block_v, int) or block_v < 16 or block_v & (block_v - 1):
        raise ValueError(f"block_v must be a power of two >= 16, got {block_v}")


def kgw_bias_triton(scores: torch.Tensor, c: torch.Tensor, t: torch.Tensor, threshold: int,
                    delta: float, u: torch.Tensor | None = None, a: torch.Tensor | None = None, *,
                    block_v: int = _BLOCK_V, num_warps: int = _NUM_WARPS) -> torch.Tensor:
    """Triton :func:`wmark.text.ops.kgw_bias`: ``scores [B, V]`` (float32/16, bfloat16, unit stride
    along V), ``c [B]``, ``t [V]``, ``u [V]``, ``a [B]`` int32 contiguous on one device,
    ``threshold`` int in [0, 2**32) -> new ``[B, V]`` tensor (contiguous, dtype of scores).

    Raises ValueError on bad shapes, dtypes, strides, devices or threshold.
    """
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape [B, V], got {list(scores.shape)}")
    if scores.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"scores must be float32, float16 or bfloat16, got {scores.dtype}")
    B, V = scores.shape
    if V > 1 and scores.stride(1) != 1:
        raise ValueError(f"scores must be contiguous along V (stride(1) == 1), got strides "
                         f"{tuple(scores.stride())}")
    if isinstance(t, torch.Tensor) and t.dim() == 1 and t.shape[0] != V:
        raise ValueError(f"t must have shape [V] = [{V}] to match scores, got {list(t.shape)}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)):
        try:
            delta = float(delta)
        except (TypeError, ValueError):
            raise ValueError(f"delta must be a real number, got {type(delta).__name__}") from None
    _check_block(block_v)
    _, _, _, thr_flipped = _check_common(c, t, threshold, u, a, scores.device, B)
    # torch multiplies by the scalar held as float32 (inf on overflow, like a C cast)
    delta32 = torch.tensor(float(delta), dtype=torch.float64).to(torch.float32).item()
    out = torch.empty((B, V), dtype=scores.dtype, device=scores.device)
    _launch(scores, out, c, t, u, a, thr_flipped, delta32, block_v, num_warps)
    return out


def kgw_green_triton(c: torch.Tensor, t: torch.Tensor, threshold: int, u: torch.Tensor | None = None,
                     a: torch.Tensor | None = None, *, block_v: int = _BLOCK_V,
                     num_warps: int = _NUM_WARPS) -> torch.Tensor:
    """Triton :func:`wmark.text.ops.kgw_green`: ``c [B]``, ``t [V]``, ``u [V]``, ``a [B]`` int32 ->
    green membership, bool ``[B, V]``. Raises ValueError on bad inputs."""
    _check_block(block_v)
    B, V, device, thr_flipped = _check_common(c, t, threshold, u, a, None, None)
    out = torch.empty((B, V), dtype=torch.uint8, device=device)
    _launch(None, out, c, t, u, a, thr_flipped, 0.0, block_v, num_warps)
    return out.view(torch.bool)
