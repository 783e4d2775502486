"""Benchmark the fused Triton KGW step against torch eager and the memory-bandwidth floor (CUDA).

For each B x V x dtype x mode it times, with CUDA events (median over --iters, L2 flushed between
iterations unless --no-flush-l2):

    triton    wmark.kernels.kgw_bias_triton   (reads scores [B, V], t/u [V], c/a [B]; writes [B, V])
    eager     wmark.text.ops.kgw_bias         (the torch reference, several [B, V] temporaries)
    compiled  torch.compile(ops.kgw_bias)     (only with --compile)
    copy      scores.clone()                  (the floor: one read + one write of [B, V])
    add_mask  scores + mask                   (a precomputed [B, V] mask of scores' dtype)

and reports achieved GB/s (bytes the op must move / time), the fraction of the device's peak DRAM
bandwidth and ``floor_frac = t_copy / t_triton`` (1.0 = as fast as a plain copy). It also checks
the kernel against the reference bit for bit on each shape. Without CUDA it says so and exits 0
(``--smoke`` then runs the kernel in Triton's interpreter on a tiny shape).

    python bench/kernel_kgw.py --out runs/kernel_kgw.json [--B 1,8,32] [--V 50257,128256]

Without ``--out`` it prints the table only; an existing ``--out`` is replaced only with ``--overwrite``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Output, OutputError, fail, progress, write_output  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: no default file (the table is printed); committed runs are per device (bench/results/kernel_kgw_*.json)
OUTPUT = Output(None, file=True, what="write the results as JSON to this path")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    OUTPUT.add_arguments(p)
    p.add_argument("--B", type=_ints, default=[1, 8, 32], help="batch sizes, comma-separated")
    p.add_argument("--V", type=_ints, default=[50257, 128256], help="vocab sizes, comma-separated")
    p.add_argument("--dtypes", type=lambda s: s.split(","), default=["float32", "bfloat16", "float16"])
    p.add_argument("--modes", type=lambda s: s.split(","), default=["context", "self"],
                   help="context (s = c[b]) and/or self (s = umin(c[b], u[v]) ^ a[b])")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-flush-l2", action="store_true", help="keep L2 warm between iterations")
    p.add_argument("--compile", action="store_true", help="also time torch.compile(ops.kgw_bias)")
    p.add_argument("--block-v", type=int, default=None, help="kernel column block (default: launcher's)")
    p.add_argument("--num-warps", type=int, default=None)
    p.add_argument("--peak-gbps", type=float, default=None, help="override the peak DRAM bandwidth")
    p.add_argument("--smoke", action="store_true", help="without CUDA: interpreter check on a tiny shape")
    a = p.parse_args(argv)
    for d in a.dtypes:
        if d not in DTYPES:
            p.error(f"unknown dtype {d!r} (choose from {', '.join(DTYPES)})")
    for m in a.modes:
        if m not in ("context", "self"):
            p.error(f"unknown mode {m!r} (context or self)")
    return a


def peak_gbps(override: float | None) -> float | None:
    """Theoretical DRAM bandwidth in GB/s from the device's memory clock and bus width (DDR: x2)."""
    if override:
        return override
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def cuda_time_ms(fn: Callable[[], Any], iters: int, warmup: int, flush: torch.Tensor | None) -> float:
    """Median milliseconds of ``fn()`` over ``iters`` runs, timed with CUDA events per run."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        if flush is not None:
            flush.zero_()  # evict L2 so every run reads from DRAM
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def make_inputs(B: int, V: int, dtype: torch.dtype, mode: str, device: str, seed: int = 0):
    """scores [B, V], c [B], t [V], u [V] | None, a [B] | None on ``device``."""
    from wmark.text.hashing import prf_table

    g = torch.Generator(device="cpu").manual_seed(seed)
    scores = torch.randn(B, V, generator=g).to(dtype).to(device)
    c = torch.randint(-(2**31), 2**31, (B,), generator=g, dtype=torch.int64).to(torch.int32).to(device)
    t = prf_table(bytes(range(32)), V, device=device)  # fixed public subkeys: tables like a scheme's
    u = prf_table(bytes(range(32, 64)), V, device=device) if mode == "self" else None
    a = (torch.randint(-(2**31), 2**31, (B,), generator=g, dtype=torch.int64).to(torch.int32).to(device)
         if mode == "self" else None)
    return scores, c, t, u, a


def same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    bits = torch.int32 if x.element_size() == 4 else torch.int16
    return x.shape == y.shape and x.dtype == y.dtype and torch.equal(x.view(bits), y.view(bits))


def smoke() -> dict[str, Any]:
    """Interpreter parity check on a tiny shape (CPU, TRITON_INTERPRET=1)."""
    os.environ["TRITON_INTERPRET"] = "1"
    from wmark.kernels import kgw
    from wmark.text import ops
    from wmark.text.hashing import threshold_for

    ok = True
    for dtype in DTYPES.values():
        for mode in ("context", "self"):
            scores, c, t, u, a = make_inputs(2, 37, dtype, mode, "cpu")
            thr = threshold_for(0.25)
            ok &= same_bits(kgw.kgw_bias_triton(scores, c, t, thr, 2.0, u, a),
                            ops.kgw_bias(scores, c, t, thr, 2.0, u, a))
    return {"smoke_interpreter_B2_V37_match": bool(ok)}


def run_cuda(args: argparse.Namespace) -> dict[str, Any]:
    from wmark.kernels import kgw
    from wmark.text import ops
    from wmark.text.hashing import threshold_for

    device = "cuda"
    peak = peak_gbps(args.peak_gbps)
    flush = None if args.no_flush_l2 else torch.empty(256 * 2**20 // 4, dtype=torch.int32, device=device)
    kw = {k: v for k, v in (("block_v", args.block_v), ("num_warps", args.num_warps)) if v is not None}
    compiled = torch.compile(ops.kgw_bias, dynamic=False) if args.compile else None
    thr, delta = threshold_for(0.25), 2.0
    rows = []
    bar = progress(len(args.dtypes) * len(args.modes) * len(args.V) * len(args.B), "kernel_kgw",
                   not args.no_progress, unit="shape")
    for dname in args.dtypes:
        dtype = DTYPES[dname]
        for mode in args.modes:
            for V in args.V:
                for B in args.B:
                    scores, c, t, u, a = make_inputs(B, V, dtype, mode, device)
                    esz = scores.element_size()
                    ref = ops.kgw_bias(scores, c, t, thr, delta, u, a)
                    match = same_bits(kgw.kgw_bias_triton(scores, c, t, thr, delta, u, a, **kw), ref)
                    mask = ref - scores  # [B, V] in scores' dtype, for the add_mask floor
                    fns: dict[str, tuple[Callable[[], Any], int]] = {
                        "triton": (lambda: kgw.kgw_bias_triton(scores, c, t, thr, delta, u, a, **kw),
                                   2 * B * V * esz + V * 4 * (2 if u is not None else 1)
                                   + B * 4 * (2 if a is not None else 1)),
                        "eager": (lambda: ops.kgw_bias(scores, c, t, thr, delta, u, a), 2 * B * V * esz),
                        "copy": (lambda: scores.clone(), 2 * B * V * esz),
                        "add_mask": (lambda: scores + mask, 3 * B * V * esz),
                    }
                    if compiled is not None:
                        fns["compiled"] = (lambda: compiled(scores, c, t, thr, delta, u, a), 2 * B * V * esz)
                    row: dict[str, Any] = {"dtype": dname, "mode": mode, "B": B, "V": V, "match": match}
                    for name, (fn, nbytes) in fns.items():
                        ms = cuda_time_ms(fn, args.iters, args.warmup, flush)
                        gbps = nbytes / (ms * 1e-3) / 1e9
                        row[name] = {"ms": ms, "bytes": nbytes, "gbps": gbps,
                                     "peak_frac": gbps / peak if peak else None}
                    row["floor_frac"] = row["copy"]["ms"] / row["triton"]["ms"]
                    row["speedup_vs_eager"] = row["eager"]["ms"] / row["triton"]["ms"]
                    rows.append(row)
                    bar.update(1)
                    # free the [B, V] buffers before the next shape (the lambdas above are spent)
                    scores = ref = mask = None
    bar.close()
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"device": props.name, "peak_gbps": peak, "flush_l2": flush is not None, "iters": args.iters,
            "threshold": thr, "delta": delta, "kernel_kwargs": kw, "rows": rows}


def print_table(res: dict[str, Any]) -> None:
    peak = res["peak_gbps"]
    print(f"device: {res['device']}   peak DRAM: {peak:.0f} GB/s" if peak else f"device: {res['device']}")
    hdr = (f"{'dtype':>8} {'mode':>7} {'B':>3} {'V':>7} | {'triton ms':>9} {'GB/s':>6} {'%peak':>5} | "
           f"{'eager ms':>8} {'copy ms':>8} {'+mask ms':>8} | {'floor%':>6} {'x eager':>7} ok")
    print(hdr)
    print("-" * len(hdr))
    for r in res["rows"]:
        tr = r["triton"]
        pk = f"{100 * tr['peak_frac']:5.1f}" if tr["peak_frac"] is not None else "  n/a"
        print(f"{r['dtype']:>8} {r['mode']:>7} {r['B']:>3} {r['V']:>7} | {tr['ms']:9.4f} {tr['gbps']:6.0f} "
              f"{pk} | {r['eager']['ms']:8.4f} {r['copy']['ms']:8.4f} {r['add_mask']['ms']:8.4f} | "
              f"{100 * r['floor_frac']:6.1f} {r['speedup_vs_eager']:7.2f} {'y' if r['match'] else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("kernel_kgw", exc)
    meta = {"bench": "kernel_kgw", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "torch": torch.__version__, "python": platform.python_version()}
    if not torch.cuda.is_available():
        print("kernel_kgw: needs a CUDA device to time the Triton kernel; none found, nothing timed.")
        res: dict[str, Any] = {"status": "skipped", "reason": "no CUDA device"}
        if args.smoke:
            res |= smoke()
            print(f"smoke (Triton interpreter, B=2 V=37, all dtypes/modes): "
                  f"{'match' if res['smoke_interpreter_B2_V37_match'] else 'MISMATCH'}")
    else:
        import triton

        meta["triton"] = triton.__version__
        res = {"status": "ok"} | run_cuda(args)
        print_table(res)
    if out is not None:
        write_output(out, json.dumps(meta | res, indent=2))
        print(f"wrote {out}")
    if res.get("smoke_interpreter_B2_V37_match") is False or any(not r["match"] for r in res.get("rows", [])):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
