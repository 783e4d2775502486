"""A scrub's closing files: the manifest (parquet or JSON Lines), ``summary.json``, ``report.md`` and
the p-value histogram ``pvalues.png``; all written with :func:`wmark.assets.write_atomic`."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from wmark.assets import write_atomic
from wmark.scrub.scrubber import MANIFEST_COLUMNS

MANIFEST_FORMATS = ("parquet", "jsonl")
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


def read_manifest(path: str | Path) -> list[dict]:
    """The rows of a manifest written by :func:`manifest_bytes` (parquet or .jsonl by suffix)."""
    p = Path(path)
    if p.suffix == ".jsonl":
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    import pyarrow.parquet as pq

    return pq.read_table(p).to_pylist()


def counts(rows: Sequence[dict], marked=None) -> dict[str, int]:
    """Samples per action, and detected / tested counts; with ``marked`` (the run's decision, a
    p-value -> bool), the stripped samples whose re-detection ``p_after`` is still called marked."""
    c = {"samples": len(rows), "kept": 0, "dropped": 0, "stripped": 0, "error": 0}
    for r in rows:
        c[r["action"]] = c.get(r["action"], 0) + 1
    c["tested"] = sum(r["p_value"] is not None for r in rows)
    c["detected"] = sum(bool(r["detected"]) for r in rows)
    if marked is not None:
        c["still_marked_after_strip"] = sum(r["action"] == "stripped" and r["p_after"] is not None
                                            and bool(marked(r["p_after"])) for r in rows)
    return c


def expected_false_block(p_values: Sequence[float | None], rule: str, level: float) -> dict[str, Any]:
    """The chosen rule's calls and expected false calls, and the same for the other rule at the same
    level (what switching between ``--alpha`` and ``--fdr`` would do)."""
    from wmark.scrub.decide import expected_false

    chosen = expected_false(p_values, **{("alpha" if rule == "alpha" else "fdr"): level})
    other = expected_false(p_values, **{("fdr" if rule == "alpha" else "alpha"): level})
    return {"chosen": chosen, "other": other}


def histogram_png(p_values: Sequence[float | None], cutoff: float | None, title: str) -> bytes:
    """A histogram of -log10 p over the tested samples, the decision cutoff marked (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs = [min(LOG10_CAP, -math.log10(p)) if p > 0 else LOG10_CAP for p in p_values if p is not None]
    fig = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if xs:
        ax.hist(xs, bins=50, color="#4c72b0")
    if cutoff is not None and cutoff > 0:
        ax.axvline(-math.log10(cutoff), color="#c44e52", linestyle="--", label=f"cutoff p = {cutoff:.3g}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("-log10 p-value")
    ax.set_ylabel("samples")
    if len(xs) > 50:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def report_md(summary: dict[str, Any], rows: Sequence[dict], hist_name: str | None) -> str:
    """``report.md``: counts, the decision rule and its expected false calls, the histogram, strip
    verification and the first errors."""
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
    errs = [r for r in rows if r["action"] == "error"]
    if errs:
        lines += ["", f"## Errors ({len(errs)})", ""]
        lines += [f"- `{r['id']}`: {r['error']}" for r in errs[:20]]
        if len(errs) > 20:
            lines.append(f"- ... {len(errs) - 20} more in the manifest")
    t = summary["throughput"]
    lines += ["", "## Run", "",
              f"{t['samples_this_run']} samples in {t['elapsed_s']:.1f} s ({t['samples_per_s']:.1f} samples/s) with "
              f"engine {summary['engine']}, {summary['jobs']} job(s), device {summary['device']}; "
              f"{summary['units']['resumed']} of {summary['units']['total']} units were already done.", ""]
    return "\n".join(lines)


def write_closing(out: Path, rows: Sequence[dict], summary: dict[str, Any], manifest_format: str) -> dict[str, Path]:
    """Write the manifest, the histogram, ``summary.json`` and ``report.md``; returns their paths."""
    paths = {"manifest": out / f"manifest.{manifest_format}", "summary": out / "summary.json",
             "report": out / "report.md", "histogram": out / "pvalues.png"}
    write_atomic(paths["manifest"], manifest_bytes(rows, manifest_format))
    d = summary["decision"]
    cut = d["cutoff"] if d["cutoff"] is not None and d["cutoff"] >= 0 else None
    write_atomic(paths["histogram"], histogram_png([r["p_value"] for r in rows], cut,
                                                   f"{summary['counts']['tested']} tested samples"))
    write_atomic(paths["summary"], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    write_atomic(paths["report"], report_md(summary, rows, paths["histogram"].name))
    return paths
