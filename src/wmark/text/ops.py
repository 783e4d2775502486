"""The per-step operations of every text scheme, as pure torch functions, and their dispatch.

The plain functions are the *semantics*: the Triton kernels in ``wmark.kernels`` and the
``torch.compile``d versions are tested bit-exact against them. Shapes: ``scores [B, V]`` float,
``c``/``a`` ``[B]`` int32 context / anchor hashes, ``t``/``u`` ``[V]`` int32 token tables (uint32 bits,
see :mod:`wmark.text.hashing`), ``threshold`` an int in [0, 2**32).
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Callable

import torch

from wmark.text.hashing import lt_u32, mix32, umin, uniform23


# --------------------------------------------------------------------------------------------
# semantics (elementwise with broadcasting: detection calls them on [N], generation on [B, V])
def green_from_seed(c: torch.Tensor, t: torch.Tensor, threshold: int, u: torch.Tensor | None = None,
                    a: torch.Tensor | None = None) -> torch.Tensor:
    """KGW green test, broadcasting: ``mix32(s ^ t) < threshold`` with ``s = c`` (context-seeded)
    or ``s = umin(c, u) ^ a`` (self-seeded: the candidate's hash ``u`` joins the context min-hash
    and the anchor hash ``a`` is mixed in)."""
    s = c if u is None else umin(c, u)
    if a is not None:
        s = s ^ a
    return lt_u32(mix32(s ^ t), threshold)


def kgw_green(c: torch.Tensor, t: torch.Tensor, threshold: int, u: torch.Tensor | None = None,
              a: torch.Tensor | None = None) -> torch.Tensor:
    """Green membership of every candidate, ``[B, V]`` bool."""
    return green_from_seed(c[:, None], t[None, :], threshold,
                           None if u is None else u[None, :], None if a is None else a[:, None])


def kgw_bias(scores: torch.Tensor, c: torch.Tensor, t: torch.Tensor, threshold: int, delta: float,
             u: torch.Tensor | None = None, a: torch.Tensor | None = None) -> torch.Tensor:
    """``scores + delta`` on green tokens, ``[B, V]`` (a new tensor; the input is untouched).
    Half-precision scores are added in float32 and rounded once (what fused kernels do)."""
    green = kgw_green(c, t, threshold, u, a)
    acc = torch.promote_types(scores.dtype, torch.float32)
    return (scores.to(acc) + green.to(acc) * delta).to(scores.dtype)


def gumbel_argmax(scores: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Index ``[B]`` of ``argmax_v r_v^(1/p_v)`` with ``p = softmax(scores)`` (Aaronson's rule),
    computed as ``argmax_v exp(scores_v - max scores) / -log(r_v)``: one exp and one log per
    entry (the Gumbel-max form ``scores - log(-log r)`` needs two logs and is slower on CPU), in
    place on two ``[B, V]`` buffers, as ``argmin_v exp(...) / log(r_v)`` (the same values negated,
    so the same index, ties included)."""
    s = scores.float()
    w = s - s.amax(-1, keepdim=True)
    w.exp_()
    w /= uniform23(mix32(c[:, None] ^ t[None, :]), torch.float32).log_()
    return torch.argmin(w, dim=-1)


def gumbel_argmax_eager(scores: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """:func:`gumbel_argmax`, the same index, for eager torch on big batches: every pass in place on
    three ``[B, V]`` buffers kept per thread between calls (a fresh buffer costs a pass), the hash
    mixed and mapped to uniforms in place, the argmin by blocks (torch's argmin along a long row is
    several passes' worth)."""
    w, h, scratch = _workspace(scores)
    w.copy_(scores)
    w -= w.amax(-1, keepdim=True)
    w.exp_()
    h.copy_(t.expand_as(h))
    h ^= c[:, None]
    w /= uniform23(mix32(h, out=h, scratch=scratch), inplace=True).log_()
    return first_argmin(w)


def first_argmin(w: torch.Tensor, block: int = 128) -> torch.Tensor:
    """``torch.argmin(w, -1)`` of a ``[B, V]`` float tensor (the first index of the minimum, NaN
    counting as the minimum as there), through the minimum of each ``block`` of a row: one
    vectorised pass, then an argmin over ``V / block`` block minima and one within a block."""
    B, V = w.shape
    nb = V // block
    mins = w[:, :nb * block].reshape(B, nb, block).amin(-1)
    if V % block:
        mins = torch.cat([mins, w[:, nb * block:].amin(-1, keepdim=True)], 1)
    start = mins.argmin(-1) * block
    idx = (start[:, None] + torch.arange(block, device=w.device)).clamp_max_(V - 1)
    return start + torch.gather(w, 1, idx).argmin(-1)  # past the row's end: repeats of its last entry, never first


_LOCAL = threading.local()


def _workspace(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This thread's float32 / int32 / int32 buffers of ``scores``' shape and device (reallocated on
    a new shape: a generation keeps its shape from step to step)."""
    key = (tuple(scores.shape), scores.device)
    ws = getattr(_LOCAL, "gumbel", None)
    if ws is None or ws[0] != key:
        shape, dev = key
        ws = _LOCAL.gumbel = (key, torch.empty(shape, device=dev), torch.empty(shape, dtype=torch.int32, device=dev),
                              torch.empty(shape, dtype=torch.int32, device=dev))
    return ws[1], ws[2], ws[3]


def one_hot_logits(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, V]``: 0 at ``index[b]``, -inf elsewhere (any sampler, greedy or not, picks it)."""
    out = torch.full_like(like, float("-inf"))
    return out.scatter_(1, index[:, None], 0.0)


def tournament_probs(probs: torch.Tensor, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Exact output distribution of a SynthID-style tournament with 2 candidates per match.

    ``probs [B, K]`` the candidates' distribution, ``x [B, K]`` int32 hashes whose bit ``l`` is the
    g-value of layer ``l``. Each layer maps ``p <- p * (1 + g - E_p[g])``. Returns ``[B, K]``.
    """
    p = probs
    for layer in range(num_layers):
        g = ((x >> layer) & 1).to(p.dtype)
        p = p * (1.0 + g - (p * g).sum(-1, keepdim=True)).clamp_min(0.0)  # rounding can push E[g] > 1
    return p


# --------------------------------------------------------------------------------------------
# dispatch: Triton on CUDA; on CPU eager, and torch.compile only once it pays (or when asked).
#
# A fresh process must not stall: compiling one kernel costs ~5-30 s of CPU (inductor, C++ build)
# while an eager call costs ~2-12 ms at [8, 49152] on one thread (measured on 2 shared vCPUs; with
# two threads there it reached 15-200 ms, each small parallel op waiting for a preempted thread). So ``auto`` on CPU runs eager and keeps the eager time spent per kernel; once that
# reaches COMPILE_AFTER_S (about the price of one compile: the ski-rental rule, never more than
# about twice the cost of the best choice in hindsight) the kernel is compiled and used from then
# on. ``backend="compile"``, ``WMARK_BACKEND=compile`` or :func:`warm_up` compile at once (servers:
# pay it at start-up, not at the first request).
_COMPILED: dict[str, Callable] = {}
_READY: set[str] = set()  # compiled kernels that have completed a call (``auto`` uses them at once)
_EAGER_S: dict[str, float] = {}  # eager seconds spent per kernel under ``auto`` on CPU
_COMPILE_BROKEN = False
COMPILE_MIN_ELEMENTS = 1 << 18  # smaller batches: always eager (compiling never pays)
EAGER_INPLACE_MIN = 1 << 16  # Gumbel scores from this size on: eager in place on kept buffers
COMPILE_AFTER_S = 20.0  # ``auto`` on CPU: compile once the eager calls cost this long (~ one cold compile)


def _compile_after_s() -> float:
    """COMPILE_AFTER_S, or ``WMARK_COMPILE_AFTER_S`` (seconds; ``inf`` never compiles)."""
    raw = os.environ.get("WMARK_COMPILE_AFTER_S")
    if raw is None:
        return COMPILE_AFTER_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"WMARK_COMPILE_AFTER_S must be a number of seconds, got {raw!r}") from None
    if not value >= 0:  # NaN too
        raise ValueError(f"WMARK_COMPILE_AFTER_S must be >= 0, got {raw!r}")
    return value


def _compiled(name: str, fn: Callable) -> Callable | None:
    if _COMPILE_BROKEN:
        return None
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn, dynamic=True)
    return _COMPILED[name]


def _run_compiled(name: str, fn: Callable, *args):
    global _COMPILE_BROKEN
    cfn = _compiled(name, fn)
    if cfn is None:
        return fn(*args)
    try:
        out = cfn(*args)
    except Exception as exc:  # no C++ compiler, unsupported platform, ...: fall back, once
        _COMPILE_BROKEN = True
        warnings.warn(f"torch.compile unavailable ({type(exc).__name__}); using eager torch", stacklevel=3)
        return fn(*args)
    _READY.add(name)
    return out


def _run_auto_cpu(name: str, fn: Callable, *args, eager: Callable | None = None):
    """``auto`` on a big CPU batch: the compiled kernel (of ``fn``) where it is ready or has been paid
    for by the eager time spent so far, else eager (``eager``, default ``fn``; timed)."""
    if not _COMPILE_BROKEN and (name in _READY or _EAGER_S.get(name, 0.0) >= _compile_after_s()):
        return _run_compiled(name, fn, *args)
    t0 = time.perf_counter()
    out = (eager or fn)(*args)
    _EAGER_S[name] = _EAGER_S.get(name, 0.0) + (time.perf_counter() - t0)
    return out


def resolve_backend(backend: str, scores: torch.Tensor) -> str:
    """Pick ``triton`` / ``compile`` / ``eager`` / ``auto-cpu`` for a call. ``auto``: Triton on CUDA
    when it imports (else ``compile``); on CPU ``eager`` below COMPILE_MIN_ELEMENTS scores, else
    ``auto-cpu`` (eager until compiling pays, see COMPILE_AFTER_S). ``WMARK_BACKEND`` overrides ``auto``."""
    if backend == "auto":
        backend = os.environ.get("WMARK_BACKEND", "auto")
    if backend == "auto":
        if scores.is_cuda:
            from wmark.kernels import triton_available

            return "triton" if triton_available() else "compile"
        return "auto-cpu" if scores.numel() >= COMPILE_MIN_ELEMENTS else "eager"
    if backend not in ("eager", "compile", "triton"):
        raise ValueError(f"unknown backend {backend!r}; choose auto, eager, compile or triton")
    return backend


def _run(which: str, name: str, fn: Callable, *args, eager: Callable | None = None):
    """``fn`` on backend ``which``: compiled, or eagerly as ``eager`` (default ``fn`` itself: the same
    result by another route; compiling always takes ``fn``, the semantics)."""
    if which == "compile":
        return _run_compiled(name, fn, *args)
    if which == "auto-cpu":
        return _run_auto_cpu(name, fn, *args, eager=eager)
    return (eager or fn)(*args)


def kgw_bias_dispatch(scores: torch.Tensor, c: torch.Tensor, t: torch.Tensor, threshold: int,
                      delta: float, u: torch.Tensor | None = None, a: torch.Tensor | None = None,
                      backend: str = "auto") -> torch.Tensor:
    """:func:`kgw_bias` on the fastest available backend (same result, bit for bit)."""
    which = resolve_backend(backend, scores)
    if which == "triton":
        from wmark.kernels.kgw import kgw_bias_triton

        return kgw_bias_triton(scores, c, t, threshold, delta, u=u, a=a)
    name = "kgw_self" if u is not None else "kgw"
    return _run(which, name, kgw_bias, scores, c, t, threshold, delta, u, a)


def gumbel_argmax_dispatch(scores: torch.Tensor, c: torch.Tensor, t: torch.Tensor,
                           backend: str = "auto") -> torch.Tensor:
    """:func:`gumbel_argmax`, fused into one pass by ``torch.compile`` for big batches once that pays.
    Every score gets its log: on CPU a log-free pruning pass is slower, its bound table defeats
    vectorisation."""
    which = resolve_backend(backend, scores)
    eager = gumbel_argmax_eager if scores.dim() == 2 and scores.numel() >= EAGER_INPLACE_MIN else None
    return _run("compile" if which == "triton" else which, "gumbel", gumbel_argmax, scores, c, t, eager=eager)


def warm_up(scheme, batch_size: int = 8, device: torch.device | str = "cpu") -> float:
    """Compile ``scheme``'s kernels now (one call on dummy ``[batch_size, V]`` scores), so that
    ``auto`` uses them from its first real call: for servers, which should pay the compile at
    start-up rather than at a request. Returns the seconds it took. Schemes without a compiled
    kernel (Unigram, tournament) or on CUDA (Triton) only build their tables."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids = torch.zeros(batch_size, max(1, scheme.seeding.history), dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, scheme.vocab_size, device=device)
    before = scheme.backend
    t0 = time.perf_counter()
    try:
        if not scores.is_cuda:
            scheme.backend = "compile"
        scheme(ids, scores)
    finally:
        scheme.backend = before
    return time.perf_counter() - t0


def dispatch_stats() -> dict[str, dict[str, float | bool]]:
    """Per kernel: eager seconds spent under ``auto`` on CPU and whether its compiled version is in use."""
    names = sorted(set(_EAGER_S) | set(_COMPILED))
    return {n: {"eager_s": _EAGER_S.get(n, 0.0), "compiled": n in _READY} for n in names}
