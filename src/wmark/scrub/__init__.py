"""Scrub a dataset before retraining: detect the mark in every sample, then report, drop or strip,
with a manifest of every decision (lazy: torch loads on first use).

    from wmark.keys import Key
    from wmark.scrub import scrub, Scrubber
    res = scrub("crawl/", "clean/", Key.from_file("k.key"), action="drop", fdr=0.01)
    res.counts                    # {"samples": ..., "kept": ..., "dropped": ..., "error": ...}

    # the same unit of work in your own pipeline (Ray Data, datasets.map(batched=True)):
    s = Scrubber(key, kind="image", action="strip", alpha=1e-3)
    out = s({"id": ["a.jpg"], "data": [open("a.jpg", "rb").read()]})   # manifest columns + data_out

Modules: sources (input formats: folder, webdataset, parquet, jsonl) · scrubber (the batch
callable) · decide (alpha, Benjamini–Hochberg) · engines (local workers; a registry) · journal
(resume) · pipeline (the run) · report (manifest, summary, report.md, histogram).
"""
from __future__ import annotations

from wmark._lazy import lazy_attributes

_LAZY = {
    "scrub": "wmark.scrub.pipeline", "ScrubResult": "wmark.scrub.pipeline",
    "Scrubber": "wmark.scrub.scrubber", "MANIFEST_COLUMNS": "wmark.scrub.scrubber",
    "SOURCES": "wmark.scrub.sources", "open_source": "wmark.scrub.sources", "infer_format": "wmark.scrub.sources",
    "ENGINES": "wmark.scrub.engines",
    "bh_cutoff": "wmark.scrub.decide", "bh_reject": "wmark.scrub.decide", "expected_false": "wmark.scrub.decide",
    "read_manifest": "wmark.scrub.report",
}
__getattr__, __dir__, __all__ = lazy_attributes(__name__, _LAZY)
