"""The Triton KGW kernel (run by Triton's interpreter on CPU) against the torch reference, bit for bit.

TRITON_INTERPRET=1 is set for this module only (a fixture); the kernel is decorated with triton.jit at
its first launch, so the interpreter is picked even where triton was imported earlier.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install 'wmark[triton]')")

from wmark.text import ops  # noqa: E402
from wmark.text.hashing import MUL, threshold_for  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FLOATS = [torch.float32, torch.float16, torch.bfloat16]
BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
MODES = ["context", "context_anchor", "self", "self_anchor"]


@pytest.fixture(autouse=True, scope="module")
def _interpreter():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")
        yield


@pytest.fixture(scope="module")
def kgw():
    from wmark.kernels import kgw

    return kgw


# ---- helpers -------------------------------------------------------------------------------------

_MUL_INV = pow(MUL, -1, 2**32)


def to_i32(value: int) -> int:
    """The low 32 bits of a Python int as a signed int32 value."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


def unmix32(x: int) -> int:
    """Inverse of mix32 on Python ints (uint32): xorshift-16 is an involution, MUL is odd."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * _MUL_INV) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * _MUL_INV) & 0xFFFFFFFF
    return x ^ (x >> 16)


def rand_i32(n: int, g: torch.Generator) -> torch.Tensor:
    """``[n]`` int32 over the whole range, with the extremes and a few repeats mixed in."""
    x = torch.randint(-(2**31), 2**31, (n,), dtype=torch.int64, generator=g).to(torch.int32)
    special = torch.tensor([-(2**31), -1, 0, 1, 2**31 - 1], dtype=torch.int32)
    k = min(n, len(special))
    x[:k] = special[:k]
    return x


def inputs(B: int, V: int, mode: str, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    scores = (torch.randn(B, V, generator=g) * 4).to(dtype)
    c, t = rand_i32(B, g), rand_i32(V, g)
    u = rand_i32(V, g) if mode.startswith("self") else None
    if u is not None and V > 2 and B > 0:
        u[2] = c[0]  # a umin tie
    a = rand_i32(B, g) if mode.endswith("anchor") else None
    return scores, c, t, u, a


def assert_same_bits(out: torch.Tensor, ref: torch.Tensor) -> None:
    """Bit equality; NaNs only need to be NaN in the same places (payloads vary across torch paths)."""
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert out.is_contiguous()
    nan_o, nan_r = torch.isnan(out), torch.isnan(ref)
    assert torch.equal(nan_o, nan_r), "NaN positions differ"
    ob, rb = out.view(BITS[out.dtype]), ref.view(BITS[ref.dtype])
    bad = (ob != rb) & ~nan_r
    assert not bad.any(), (f"{int(bad.sum())} elements differ, first at {bad.nonzero()[0].tolist()}: "
                           f"{out[bad][:4].tolist()} vs {ref[bad][:4].tolist()}")


# ---- parity --------------------------------------------------------------------------------------

SHAPES = [(B, V, m) for B, V in [(1, 1), (3, 1), (1, 17), (3, 17), (3, 1000)] for m in MODES]
SHAPES += [(1, 50257, "context"), (1, 50257, "self_anchor")]  # the interpreter is slow: two modes


@pytest.mark.parametrize("B,V,mode", SHAPES)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_bias_matches_reference(kgw, B, V, mode, dtype):
    scores, c, t, u, a = inputs(B, V, mode, dtype, seed=B * 100003 + V)
    thr = threshold_for(0.25)
    out = kgw.kgw_bias_triton(scores, c, t, thr, 2.0, u, a)
    assert_same_bits(out, ops.kgw_bias(scores, c, t, thr, 2.0, u, a))
    assert_same_bits(scores, inputs(B, V, mode, dtype, seed=B * 100003 + V)[0])  # input untouched


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("thr", [0, 1, 2, 12345, 2**31 - 1, 2**31, 2**31 + 1, threshold_for(0.5),
                                 2**32 - 2, 2**32 - 1])
def test_green_matches_reference(kgw, mode, thr):
    _, c, t, u, a = inputs(3, 1000, mode, torch.float32, seed=7)
    out = kgw.kgw_green_triton(c, t, thr, u, a)
    assert out.dtype == torch.bool and out.shape == (3, 1000)
    assert torch.equal(out, ops.kgw_green(c, t, thr, u, a))


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash", "minhash"])
def test_scheme_on_triton_matches_eager_with_keyed_tables(kgw, seeding, demo_key):
    """A whole scheme (keyed BLAKE2b tables, sentinel contexts at the first steps) on the Triton
    backend equals the eager reference bit for bit, for the bias and the green masks."""
    from wmark.text import KGW

    V = 3001
    eager = KGW(demo_key, V, seeding=seeding, backend="eager")
    tri = KGW(demo_key, V, seeding=seeding, backend="triton")
    g = torch.Generator().manual_seed(9)
    ids = torch.randint(0, V, (4, 7), generator=g)
    for T in (1, 2, 7):  # the first steps read the sentinel
        scores = torch.randn(4, V, generator=g)
        assert_same_bits(tri(ids[:, :T], scores), eager(ids[:, :T], scores))
    c, a = eager._seeds(eager._last_window(ids[:, :1]))
    t = eager._table(c.device, "t")
    green = kgw.kgw_green_triton(c, t, eager.threshold, eager._uv(c.device), a)
    assert torch.equal(green, eager.green_mask(ids[:, :1]))


@pytest.mark.parametrize("thr", [0, 1, 2, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 2, 2**32 - 1])
@pytest.mark.parametrize("mode", ["context", "context_anchor", "self_anchor"])
def test_threshold_edges_exact(kgw, thr, mode):
    """Hashes placed exactly around the threshold and the int32 sign boundary (by inverting mix32)."""
    targets = sorted({x & 0xFFFFFFFF for x in (0, 1, 2, thr - 2, thr - 1, thr, thr + 1, 2**31 - 1, 2**31,
                                               2**31 + 1, 2**32 - 2, 2**32 - 1)})
    c0, a0 = 0x9E3779B9, 0x12345678
    c = torch.tensor([to_i32(c0)], dtype=torch.int32)
    if mode.startswith("context"):
        s, u = [c0] * len(targets), None
    else:  # u above c in uint32 order, one tie, one below: s = umin(c, u)
        uu = [0xFFFFFFFF, c0, 0x00000005] + [0xF0000000 + i for i in range(len(targets) - 3)]
        u = torch.tensor([to_i32(v) for v in uu], dtype=torch.int32)
        s = [min(c0, v) for v in uu]
    a = None
    if mode.endswith("anchor"):
        a = torch.tensor([to_i32(a0)], dtype=torch.int32)
        s = [si ^ a0 for si in s]
    t = torch.tensor([to_i32(unmix32(x) ^ si) for x, si in zip(targets, s)], dtype=torch.int32)
    expect = torch.tensor([[x < thr for x in targets]])
    ref = ops.kgw_green(c, t, thr, u, a)
    assert torch.equal(ref, expect), "reference disagrees with uint32 arithmetic"
    assert torch.equal(kgw.kgw_green_triton(c, t, thr, u, a), expect)
    for dtype in FLOATS:
        scores = torch.zeros(1, len(targets), dtype=dtype)
        assert_same_bits(kgw.kgw_bias_triton(scores, c, t, thr, 1.5, u, a),
                         ops.kgw_bias(scores, c, t, thr, 1.5, u, a))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy, inside the interpreter, on inf / NaN
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("delta", [2.0, 1.3, -0.7, 0.0, 1.0 + 2**-11 + 2**-40, 3.0e38, 1e39, 1e-30,
                                   float("inf"), float("nan")])
def test_float_rounding_and_specials(kgw, dtype, delta):
    """Single float32 rounding of scores + delta, ties, -0.0, +-inf, NaN, subnormals, overflow, huge/tiny deltas."""
    fin = torch.finfo(dtype)
    specials = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), fin.max, -fin.max, fin.tiny,
                fin.tiny / 4, -fin.tiny / 8, 1.0, -1.0, 0.3496, 1.0 + fin.eps / 2, 65504.0, -3.0e38]
    g = torch.Generator().manual_seed(3)
    body = torch.cat([torch.tensor(specials, dtype=torch.float32), torch.randn(300, generator=g) * 100])
    scores = body.to(dtype).reshape(2, -1)
    c = torch.tensor([11, -5], dtype=torch.int32)
    t = rand_i32(scores.shape[1], g)
    thr = threshold_for(0.5)
    assert_same_bits(kgw.kgw_bias_triton(scores, c, t, thr, delta),
                     ops.kgw_bias(scores, c, t, thr, delta))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_strided_rows_and_green_fraction(kgw, dtype):
    """Row-strided scores (a slice of a wider buffer) read right; output is contiguous."""
    g = torch.Generator().manual_seed(5)
    wide = torch.randn(3, 1200, generator=g).to(dtype)
    scores = wide[:, 100:1100]
    assert not scores.is_contiguous()
    c, t, u, a = rand_i32(3, g), rand_i32(1000, g), rand_i32(1000, g), rand_i32(3, g)
    thr = threshold_for(0.25)
    out = kgw.kgw_bias_triton(scores, c, t, thr, 1.0, u, a)
    assert_same_bits(out, ops.kgw_bias(scores.contiguous(), c, t, thr, 1.0, u, a))
    frac = kgw.kgw_green_triton(c, t, thr, u, a).float().mean().item()
    assert 0.2 < frac < 0.3


def test_anchor_without_u(kgw):
    """Context-seeded with an anchor: s = c ^ a (as the reference)."""
    scores, c, t, _, _ = inputs(3, 17, "context", torch.float32)
    a = torch.tensor([1, 2, 3], dtype=torch.int32)
    thr = threshold_for(0.5)
    assert_same_bits(kgw.kgw_bias_triton(scores, c, t, thr, 2.0, None, a),
                     ops.kgw_bias(scores, c, t, thr, 2.0, None, a))


@pytest.mark.parametrize("B,V", [(0, 17), (3, 0), (0, 0)])
def test_empty(kgw, B, V):
    scores, c, t, u, a = inputs(B, V, "self_anchor", torch.float16)
    assert kgw.kgw_bias_triton(scores, c, t, 5, 1.0, u, a).shape == (B, V)
    assert kgw.kgw_green_triton(c, t, 5, u, a).shape == (B, V)


def test_block_size_variants(kgw):
    scores, c, t, u, a = inputs(2, 300, "self_anchor", torch.bfloat16, seed=9)
    ref = ops.kgw_bias(scores, c, t, 77777777, 2.5, u, a)
    for block_v, warps in ((16, 1), (256, 2), (4096, 8)):
        assert_same_bits(kgw.kgw_bias_triton(scores, c, t, 77777777, 2.5, u, a, block_v=block_v,
                                             num_warps=warps), ref)


# ---- validation ----------------------------------------------------------------------------------

def _bad_cases():
    s, c, t, u, a = inputs(2, 8, "self_anchor", torch.float32)
    i64 = torch.zeros(8, dtype=torch.int64)
    return [
        ("scores must have shape", dict(scores=s[0])),
        ("scores must be float32", dict(scores=s.double())),
        ("scores must be float32", dict(scores=s.to(torch.int32))),
        ("scores must be a torch.Tensor", dict(scores=[[1.0]])),
        ("stride", dict(scores=torch.zeros(8, 2).t())),
        ("c must be int32", dict(c=c.long())),
        ("c must have shape", dict(c=torch.zeros(3, dtype=torch.int32))),
        ("c must be a 1-D", dict(c=torch.zeros(2, 1, dtype=torch.int32))),
        ("t must have shape", dict(t=torch.zeros(9, dtype=torch.int32))),
        ("t must be int32", dict(t=i64)),
        ("t must be contiguous", dict(t=torch.zeros(16, dtype=torch.int32)[::2])),
        ("u must have shape", dict(u=torch.zeros(7, dtype=torch.int32))),
        ("u must be int32", dict(u=i64)),
        ("a must have shape", dict(a=torch.zeros(3, dtype=torch.int32))),
        ("a must be int32", dict(a=torch.zeros(2, dtype=torch.uint8))),
        ("on meta", dict(u=torch.zeros(8, dtype=torch.int32, device="meta"))),
        ("threshold must be in", dict(threshold=-1)),
        ("threshold must be in", dict(threshold=2**32)),
        ("threshold must be an int", dict(threshold=0.5)),
        ("threshold must be an int", dict(threshold=True)),
        ("delta must be a real number", dict(delta="x")),
        ("block_v", dict(block_v=100)),
    ]


@pytest.mark.parametrize("match,kw", _bad_cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_bias_validation(kgw, match, kw):
    s, c, t, u, a = inputs(2, 8, "self_anchor", torch.float32)
    args = dict(scores=s, c=c, t=t, threshold=5, delta=1.0, u=u, a=a) | kw
    with pytest.raises(ValueError, match=match):
        kgw.kgw_bias_triton(**args)


def test_green_validation(kgw):
    _, c, t, u, a = inputs(2, 8, "self_anchor", torch.float32)
    with pytest.raises(ValueError, match="threshold must be in"):
        kgw.kgw_green_triton(c, t, 2**32, u, a)
    with pytest.raises(ValueError, match="u must have shape"):
        kgw.kgw_green_triton(c, t, 5, u[:3], a)
    with pytest.raises(ValueError, match="t must be a 1-D"):
        kgw.kgw_green_triton(c, t[None], 5)


def test_cpu_without_interpreter_is_refused(kgw, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    s, c, t, _, _ = inputs(2, 8, "context", torch.float32)
    with pytest.raises(ValueError, match="need CUDA tensors"):
        kgw.kgw_bias_triton(s, c, t, 5, 1.0)


# ---- packaging -----------------------------------------------------------------------------------

def test_import_is_light_and_availability():
    code = ("import sys, wmark.kernels as k; assert 'triton' not in sys.modules, 'triton imported'; "
            "print(k.triton_available())")
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
    from wmark.kernels import kgw_bias_triton, triton_available

    assert triton_available() and callable(kgw_bias_triton)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA the script runs the real benchmark")
def test_bench_script_on_cpu_exits_cleanly(tmp_path, capsys, monkeypatch):
    import importlib.util

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    spec = importlib.util.spec_from_file_location("kernel_kgw_bench", REPO / "bench" / "kernel_kgw.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "kgw.json"
    assert bench.main(["--out", str(out)]) == 0
    assert "needs a CUDA device" in capsys.readouterr().out
    assert json.loads(out.read_text())["status"] == "skipped"
