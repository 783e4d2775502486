"""The fused per-step operations of every text scheme, as pure torch functions.

These are the *semantics*: the Triton kernels in ``wmark.kernels`` and the ``torch.compile``d
versions are checked against them. Shapes: ``scores [B, V]`` float, ``c [B]`` int32 context hashes,
``t``/``u`` ``[V]`` int32 token tables (uint32 bits, see :mod:`wmark.text.hashing`), ``threshold`` an
int in [0, 2**32).
"""
from __future__ import annotations

import torch

from wmark.text.hashing import lt_u32, mix32, umin, uniform24


def kgw_green(c: torch.Tensor, t: torch.Tensor, threshold: int, u: torch.Tensor | None = None,
              a: torch.Tensor | None = None) -> torch.Tensor:
    """Green membership ``[B, V]`` bool: ``mix32(s ^ t[v]) < threshold`` where ``s = c[b]``
    (context-seeded) or, self-seeded, ``s = min(c[b], u[v]) ^ a[b]``: the candidate joins the
    min-hash of the context and ``a[b]`` (the anchor token's hash) is mixed in."""
    if u is None:
        s = c[:, None]
    else:
        s = umin(c[:, None], u[None, :])
        if a is not None:
            s = s ^ a[:, None]
    return lt_u32(mix32(s ^ t[None, :]), threshold)


def kgw_bias(scores: torch.Tensor, c: torch.Tensor, t: torch.Tensor, threshold: int, delta: float,
             u: torch.Tensor | None = None, a: torch.Tensor | None = None) -> torch.Tensor:
    """``scores + delta`` on green tokens ``[B, V]`` (a new tensor; the input is untouched)."""
    green = kgw_green(c, t, threshold, u, a)
    return scores + green.to(scores.dtype) * delta


def gumbel_argmax(scores: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Index ``[B]`` of ``argmax_v r_v^(1/p_v)`` where ``p = softmax(scores)`` and
    ``r = U(c[b], t[v])``: equal to ``argmax_v scores_v - log(-log r_v)`` (Gumbel-max)."""
    r = uniform24(mix32(c[:, None] ^ t[None, :]), torch.float32)
    g = -torch.log(-torch.log(r))
    return torch.argmax(scores.float() + g, dim=-1)


def one_hot_logits(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, V]`` that are 0 at ``index[b]`` and -inf elsewhere (any sampler picks it)."""
    out = torch.full_like(like, float("-inf"))
    return out.scatter_(1, index[:, None], 0.0)
