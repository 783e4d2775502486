"""Peak memory and wall time of ``wmark text detect`` on one large text file (streaming detection).

    .venv/bin/python bench/text_stream_memory.py [--size-mb 50] [--baseline] [--quick] [--keep DIR]
        [--out FILE | --update-results] [--overwrite] [--no-progress]

Writes runs/text_stream_memory.json by default (``--update-results``: the committed
bench/results/text_stream_memory.json).

Builds a ``--size-mb`` MiB UTF-8 file from the public-domain books in ../shared/data/text repeated
(in a temporary folder, or ``--keep DIR``), then runs ``wmark text detect FILE --demo-key --json``
in a subprocess, once plain (dedup on) and once ``--windowed``, and records each child's peak RSS
(``ru_maxrss`` from ``os.wait4``; ``resource.getrusage(RUSAGE_CHILDREN)`` gives the maximum over all
children) and wall time. ``--baseline`` adds the whole-file path of the former CLI
(``scheme.detect(tokenizer.encode(Path.read_text()))``), which needs several GB at 50 MiB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, markdown_table, progress, write_json  # noqa: E402

OUTPUT = json_output("text_stream_memory")
SCHEME = "kgw-selfhash"
#: the detection of the former CLI: read the whole file, tokenize it, score it in one batch
WHOLE_FILE = """
import json, sys
from pathlib import Path
import wmark.lm
from wmark.keys import Key
from wmark.text import make_scheme
tok = wmark.lm.load().tokenizer
text = Path(sys.argv[1]).read_text(encoding="utf-8")
r = make_scheme(sys.argv[2], Key.demo(), tok.vocab_size).detect(tok.encode(text))
print(json.dumps(r.to_json()))
"""


def build_text(path: Path, size: int, sources: list[Path]) -> int:
    """Write about ``size`` bytes of the ``sources`` repeated (the last one cut at a line end) to
    ``path``; returns the bytes written."""
    books = [p.read_bytes().replace(b"\r\n", b"\n") for p in sources]
    written, i = 0, 0
    with open(path, "wb") as f:
        while written < size:
            data = books[i % len(books)]
            i += 1
            if written + len(data) > size:
                data = data[: size - written]
                data = data[: data.rfind(b"\n") + 1]
            if not data:
                break
            f.write(data)
            written += len(data)
    return written


def run_child(argv: list[str]) -> dict[str, Any]:
    """Run ``argv``; its wall time, exit status, peak RSS (MiB), last stdout line (parsed as JSON)
    and stderr tail."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        lines = out.read().decode("utf-8", "replace").strip().splitlines()
        stderr = err.read().decode("utf-8", "replace").strip()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = {"stdout": lines[-1]}
    return {"argv": [Path(a).name if os.sep in a else a for a in argv], "rc": proc.returncode,
            "wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "result": result,
            "stderr_tail": stderr[-500:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=50.0, help="text file size in MiB (default 50)")
    ap.add_argument("--quick", action="store_true", help="a 5 MiB file (smoke run)")
    ap.add_argument("--baseline", action="store_true", help="also run the whole-file path (several GB at 50 MiB)")
    ap.add_argument("--keep", metavar="DIR", default=None, help="build the text file in DIR and keep it")
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("text_stream_memory", exc)
    from wmark.assets import shared_data

    sources = sorted(shared_data("text").glob("*.txt"))
    if not sources:
        return fail("text_stream_memory", f"no texts in {shared_data('text')} (set WMARK_SHARED_DATA)")
    size = int((5.0 if args.quick else args.size_mb) * 2**20)

    with tempfile.TemporaryDirectory(prefix="wmark-stream-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        text = folder / f"text_{size // 2**20}MiB.txt"
        t0 = time.perf_counter()
        nbytes = build_text(text, size, sources)
        build_s = time.perf_counter() - t0
        wmark = [sys.executable, "-m", "wmark.cli", "text", "detect", str(text), "--demo-key", "--json",
                 "--scheme", SCHEME, "--max-bytes", str(max(nbytes, 1))]
        runs = {"stream": wmark, "stream --windowed": [*wmark, "--windowed"]}
        if args.baseline:
            runs["whole file (former CLI)"] = [sys.executable, "-c", WHOLE_FILE, str(text), SCHEME]
        results: dict[str, Any] = {}
        with progress(len(runs), "text_stream_memory", not args.no_progress, unit="run") as bar:
            for name, cmd in runs.items():
                results[name] = run_child(cmd)
                bar.update(1)
    children_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows = []
    for name, r in results.items():
        res = r["result"] or {}
        rows.append([name, r["rc"], r["peak_rss_mib"], r["wall_s"], res.get("num_tokens", "-"),
                     res.get("p_value", "-")])
    table = markdown_table(["run", "rc", "peak RSS MiB", "wall s", "tokens", "p-value"], rows)
    payload = {"text_bytes": nbytes, "sources": [p.name for p in sources], "scheme": SCHEME,
               "build_s": round(build_s, 2), "runs": results,
               "children_max_rss_mib": round(children_max, 1), "table_md": table}
    path = write_json("text_stream_memory", payload, out)
    print(table)
    print("wrote", path)
    return 0 if all(r["rc"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
