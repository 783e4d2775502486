"""A scrub's closing files: the manifest (parquet or JSON Lines), ``summary.json``, ``report.md`` and
the p-value histogram ``pvalues.png``; all written atomically. The manifest is written as a stream
(:class:`ManifestWriter`: parquet row groups of :data:`MANIFEST_ROW_GROUP` rows) while a
:class:`Tally` keeps what the summary needs (counts, the p-values as float64, the first errors), so
the closing of a run of any size holds no rows in memory."""
from __future__ import annotations

import array
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from wmark.assets import write_atomic
from wmark.scrub.scrubber import MANIFEST_COLUMNS

MANIFEST_FORMATS = ("parquet", "jsonl")
#: rows per row group of a parquet manifest
MANIFEST_ROW_GROUP = 65536
#: errors listed in report.md
REPORT_ERRORS = 20
#: -log10 p shown for p = 0 (an underflow: stronger than anything a float64 can show)
LOG10_CAP = 320.0


def manifest_bytes(rows: Sequence[dict], fmt: str = "parquet") -> bytes:
    """The manifest of ``rows`` (:data:`MANIFEST_COLUMNS`) as parquet (typed columns: p-values
    float64, detected bool, the rest strings; nulls where not applicable) or JSON Lines."""
    if fmt == "jsonl":
        return "".join(json.dumps({c: r.get(c) for c in MANIFEST_COLUMNS}, allow_nan=False) + "\n"
                       for r in rows).encode("utf-8")
    if fmt != "parquet":
        raise ValueError(f"manifest format must be one of {', '.join(MANIFEST_FORMATS)}, got {fmt!r}")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the environment
        raise ValueError("a parquet manifest needs pyarrow (pip install pyarrow), or pass "
                         "--manifest-format jsonl") from None
    types = {"p_value": pa.float64(), "p_after": pa.float64(), "detected": pa.bool_()}
    schema = pa.schema([(c, types.get(c, pa.string())) for c in MANIFEST_COLUMNS])
    table = pa.table({c: pa.array([r.get(c) for r in rows], type=schema.field(c).type) for c in MANIFEST_COLUMNS},
                     schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _manifest_schema():
    import pyarrow as pa

    types = {"p_value": pa.float64(), "p_after": pa.float64(), "detected": pa.bool_()}
    return pa.schema([(c, types.get(c, pa.string())) for c in MANIFEST_COLUMNS])


class ManifestWriter:
    """The manifest written row by row into a temporary file beside ``path`` (parquet row groups of
    :data:`MANIFEST_ROW_GROUP` rows, or JSON Lines), made whole by :meth:`close` (fsync, rename)."""

    def __init__(self, path: Path, fmt: str = "parquet") -> None:
        from wmark.scrub.sources import AtomicFile

        if fmt not in MANIFEST_FORMATS:
            raise ValueError(f"manifest format must be one of {', '.join(MANIFEST_FORMATS)}, got {fmt!r}")
        self.fmt = fmt
        self._pending: list[dict] = []
        self._writer = None
        if fmt == "parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:  # pragma: no cover - depends on the environment
                raise ValueError("a parquet manifest needs pyarrow (pip install pyarrow), or pass "
                                 "--manifest-format jsonl") from None
            self._schema = _manifest_schema()
            self.file = AtomicFile(path)
            self._writer = pq.ParquetWriter(self.file.f, self._schema, compression="zstd")
        else:
            self.file = AtomicFile(path)

    def add(self, row: dict) -> None:
        if self.fmt == "jsonl":
            self.file.write((json.dumps({c: row.get(c) for c in MANIFEST_COLUMNS}, allow_nan=False) + "\n")
                            .encode("utf-8"))
            return
        self._pending.append(row)
        if len(self._pending) >= MANIFEST_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        rows, self._pending = self._pending, []
        sc = self._schema
        self._writer.write_table(pa.table({c: pa.array([r.get(c) for r in rows], type=sc.field(c).type)
                                           for c in MANIFEST_COLUMNS}, schema=sc))

    def close(self) -> None:
        if self._writer is not None:
            if self._pending:
                self._flush()
            self._writer.close()
            self._writer = None
        self.file.commit()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.file.abort()


class Tally:
    """What the closing files need from the rows, gathered one row at a time: ``counts`` (samples per
    action, tested, detected and, with ``marked``, the stripped ones still marked after), the tested
    p-values (float64, in order) and the first :data:`REPORT_ERRORS` error rows."""

    def __init__(self, marked=None) -> None:
        self.marked = marked
        self.c = {"samples": 0, "kept": 0, "dropped": 0, "stripped": 0, "error": 0, "tested": 0, "detected": 0}
        if marked is not None:
            self.c["still_marked_after_strip"] = 0
        self.p = array.array("d")
        self.errors: list[dict] = []

    def add(self, r: dict) -> None:
        c = self.c
        c["samples"] += 1
        c[r["action"]] = c.get(r["action"], 0) + 1
        if r["p_value"] is not None:
            c["tested"] += 1
            self.p.append(float(r["p_value"]))
        c["detected"] += bool(r["detected"])
        if self.marked is not None and r["action"] == "stripped" and r["p_after"] is not None:
            c["still_marked_after_strip"] += bool(self.marked(r["p_after"]))
        if r["action"] == "error" and len(self.errors) < REPORT_ERRORS:
            self.errors.append({"id": r["id"], "error": r["error"]})

    def counts(self) -> dict[str, int]:
        return dict(self.c)


def read_manifest(path: str | Path) -> list[dict]:
    """The rows of a manifest written by :func:`manifest_bytes` (parquet or .jsonl by suffix)."""
    p = Path(path)
    if p.suffix == ".jsonl":
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    import pyarrow.parquet as pq

    return pq.read_table(p).to_pylist()


def counts(rows: Iterable[dict], marked=None) -> dict[str, int]:
    """Samples per action, and detected / tested counts; with ``marked`` (the run's decision, a
    p-value -> bool), the stripped samples whose re-detection ``p_after`` is still called marked."""
    t = Tally(marked)
    for r in rows:
        t.add(r)
    return t.counts()


def expected_false_block(p_values: Sequence[float | None], rule: str, level: float) -> dict[str, Any]:
    """The chosen rule's calls and expected false calls, and the same for the other rule at the same
    level (what switching between ``--alpha`` and ``--fdr`` would do)."""
    from wmark.scrub.decide import expected_false

    chosen = expected_false(p_values, **{("alpha" if rule == "alpha" else "fdr"): level})
    other = expected_false(p_values, **{("fdr" if rule == "alpha" else "alpha"): level})
    return {"chosen": chosen, "other": other}


def histogram_png(p_values: Iterable[float | None], cutoff: float | None, title: str) -> bytes:
    """A histogram of -log10 p over the tested samples, the decision cutoff marked (matplotlib, Agg;
    one filled step artist and a fixed layout, so it costs the same for 10 samples or 10 million)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    p = np.asarray([v for v in p_values if v is not None], dtype=np.float64)
    with np.errstate(divide="ignore"):
        xs = np.minimum(LOG10_CAP, -np.log10(p))
    fig = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.16, top=0.9)
    ax = fig.add_subplot(1, 1, 1)
    if xs.size:
        counts, edges = np.histogram(xs, bins=50)
        ax.stairs(counts, edges, fill=True, color="#4c72b0")
    if cutoff is not None and cutoff > 0:
        ax.axvline(-math.log10(cutoff), color="#c44e52", linestyle="--", label=f"cutoff p = {cutoff:.3g}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("-log10 p-value")
    ax.set_ylabel("samples")
    if xs.size > 50:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def report_md(summary: dict[str, Any], errors: Sequence[dict], hist_name: str | None) -> str:
    """``report.md``: counts, the decision rule and its expected false calls, the histogram, strip
    verification and the first errors (``errors``: the first error rows, ``id`` and ``error``; their
    total is ``summary["counts"]["error"]``)."""
    c = summary["counts"]
    d = summary["decision"]
    ef = summary["expected_false"]
    lines = ["# wmark scrub report", "",
             f"Input `{summary['input']['path']}` ({summary['input']['format']}, {summary['input']['kind']}); "
             f"action **{summary['action']}**; key `{summary['key']}`.", "",
             "| samples | tested | detected | kept | dropped | stripped | errors |",
             "|---:|---:|---:|---:|---:|---:|---:|",
             f"| {c['samples']} | {c['tested']} | {c['detected']} | {c['kept']} | {c['dropped']} | {c['stripped']} "
             f"| {c['error']} |", "", "## Decision", ""]
    ch, ot = ef["chosen"], ef["other"]
    if d["rule"] == "alpha":
        lines.append(f"Per-sample level alpha = {d['level']:g}: marked when p < alpha. Over {ch['tested']} tested "
                     f"samples this expects at most {ch['expected_false']:.3g} false detections (alpha x N, every "
                     f"sample clean).")
        lines.append(f"Benjamini–Hochberg at q = {d['level']:g} instead would call {ot['marked']} marked, "
                     f"expecting at most {ot['expected_false']:.3g} of them false (q x R).")
    else:
        cut = "none" if d["cutoff"] < 0 else f"{d['cutoff']:.3g}"
        lines.append(f"Benjamini–Hochberg FDR control at q = {d['level']:g} (two passes: pass 1 detected every "
                     f"sample, pass 2 decided and acted): cutoff p <= {cut}; {ch['marked']} called marked, "
                     f"at most {ch['expected_false']:.3g} of them expected false (q x R).")
        lines.append(f"A per-sample level alpha = {d['level']:g} instead would call {ot['marked']} marked, "
                     f"expecting up to {ot['expected_false']:.3g} false detections (alpha x N).")
    if hist_name:
        lines += ["", f"![p-values]({hist_name})"]
    if summary["action"] == "strip":
        lines += ["", "## Strip", ""]
        if summary["input"]["kind"] == "image":
            lines.append(f"{c['stripped']} images stripped and re-detected; {c['still_marked_after_strip']} still "
                         "read as marked (`p_after` in the manifest).")
        else:
            lines.append(summary.get("text_strip", ""))
    n_err = c["error"]
    if n_err:
        lines += ["", f"## Errors ({n_err})", ""]
        lines += [f"- `{r['id']}`: {r['error']}" for r in errors[:REPORT_ERRORS]]
        if n_err > REPORT_ERRORS:
            lines.append(f"- ... {n_err - REPORT_ERRORS} more in the manifest")
    t = summary["throughput"]
    lines += ["", "## Run", "",
              f"{t['samples_this_run']} samples in {t['elapsed_s']:.1f} s ({t['samples_per_s']:.1f} samples/s) with "
              f"engine {summary['engine']}, {summary['jobs']} job(s), device {summary['device']}; "
              f"{summary['units']['resumed']} of {summary['units']['total']} units were already done.", ""]
    return "\n".join(lines)


def closing_paths(out: Path, manifest_format: str) -> dict[str, Path]:
    return {"manifest": out / f"manifest.{manifest_format}", "summary": out / "summary.json",
            "report": out / "report.md", "histogram": out / "pvalues.png"}


def write_closing(out: Path, tally: Tally, summary: dict[str, Any], manifest_format: str) -> dict[str, Path]:
    """Write the histogram, ``summary.json`` and ``report.md`` (the manifest is written by a
    :class:`ManifestWriter` as the rows stream by); returns the paths of all four."""
    paths = closing_paths(out, manifest_format)
    d = summary["decision"]
    cut = d["cutoff"] if d["cutoff"] is not None and d["cutoff"] >= 0 else None
    write_atomic(paths["histogram"], histogram_png(tally.p, cut, f"{summary['counts']['tested']} tested samples"))
    write_atomic(paths["summary"], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    write_atomic(paths["report"], report_md(summary, tally.errors, paths["histogram"].name))
    return paths
