"""Small helpers shared by the benchmark scripts (timing, machine description, JSON output, errors).

Where a script writes is decided by :class:`wmark.bench.outputs.Output` (``--out`` under ``runs/`` by
default, ``--overwrite``, ``--update-results`` for the committed ``bench/results/``); its progress bar
is :func:`wmark.bench.report.progress` (``--no-progress``)."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

from wmark.bench.outputs import Output, OutputError, write_output  # noqa: F401  (re-exported for the scripts)
from wmark.bench.report import progress  # noqa: F401  (re-exported for the scripts)


def json_output(name: str) -> Output:
    """The output options of a script writing one JSON file: ``runs/<name>.json`` by default,
    ``bench/results/<name>.json`` with ``--update-results``."""
    return Output(f"runs/{name}.json", results=f"{name}.json", file=True, what="result JSON file")


def fail(script: str, exc: BaseException | str) -> int:
    """Print ``<script>: error: <exc>`` (one line) to stderr; exit status 2."""
    print(f"{script}: error: {exc}", file=sys.stderr)
    return 2


def time_call(fn: Callable[[], Any], *, min_time: float = 1.0, min_reps: int = 5, max_reps: int = 500,
              warmup: int = 1) -> dict[str, float]:
    """Median / mean wall time (ms) of ``fn()`` over repetitions lasting at least ``min_time`` s."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": times[len(times) // 2], "mean_ms": sum(times) / len(times), "reps": len(times)}


def machine() -> dict[str, Any]:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "threads": torch.get_num_threads(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(name: str, payload: dict[str, Any], out: str | Path) -> Path:
    """``payload`` with the benchmark name, date and :func:`machine` as JSON at ``out`` (atomically; the
    path is checked beforehand with the script's :class:`Output`)."""
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **payload}
    return write_output(out, json.dumps(payload, indent=2) + "\n")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
