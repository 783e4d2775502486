"""The scrub pipeline: read -> detect -> decide -> act -> write, over a whole dataset, resumable.

:func:`scrub` reads the input in units (:mod:`wmark.scrub.sources`), has an engine
(:mod:`wmark.scrub.engines`) run the :class:`~wmark.scrub.scrubber.Scrubber` over batches of each
unit, writes the unit's outputs in the input's format and layout under ``out``, then commits the
unit's manifest rows to a journal (:mod:`wmark.scrub.journal`). Everything streams: a unit is read
sample by sample, each batch's outputs go to the unit's temporary output file and its rows to the
journal as soon as the engine gives them back, so memory holds the batches in flight, never a whole
shard or the whole run's rows. At the end the journal becomes ``OUT/manifest.parquet`` (or
``.jsonl``), ``OUT/summary.json``, ``OUT/report.md`` and ``OUT/pvalues.png``.

Decisions. ``alpha``: one pass, marked when ``p < alpha``. ``fdr`` (Benjamini–Hochberg at level
q): two passes. Pass 1 detects every sample and journals its p-value (``detect.jsonl``); the BH
cutoff over all of them is fixed in ``decision.json``; pass 2 reads the samples again, takes their
pass-1 p-values (no re-detection: a sample whose sha256 changed in between is an error row), decides
``p <= cutoff`` and acts (``act.jsonl``). Only the marked samples cost model time in pass 2.

Faults. The run holds ``out`` (:func:`wmark.assets.folder_lock`): a second run on it is refused.
Every output file is written atomically; a unit's journal line follows its outputs, so a run killed
at any moment and started again with ``resume=True`` skips the committed units, redoes the rest and
finishes with the same rows and byte-identical outputs (the settings that shape them, the key and
the input listing must match: ``.wmark-scrub/params.json``). The input is never written to: ``out``
may not lie inside it, nor it inside ``out``.

Manifest rows (:data:`~wmark.scrub.scrubber.MANIFEST_COLUMNS`): ``id`` (relative path, or
``SHARD/KEY`` (``SHARD/KEY.EXT`` per image of a sample with several), ``FILE/ROW``, ``FILE/LINE``),
``kind``, ``p_value`` (image: the detector's; text: the windowed detection's best window, corrected
for the windows searched), ``detected`` (the decision), ``payload`` (hex, images), ``action``
(kept | dropped | stripped | error), ``sha256_in`` /
``sha256_out`` (of the sample's bytes, text as UTF-8; ``sha256_out`` null where nothing was written),
``p_after`` (a stripped image re-detected from its written bytes), ``error`` (one line).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from wmark.assets import folder_lock, sha256_bytes, sweep_temp_files, write_atomic
from wmark.scrub.decide import NOTHING, bh_cutoff, check_level, is_marked
from wmark.scrub.journal import Journal
from wmark.scrub.scrubber import DEFAULT_MAX_BYTES, DEFAULT_QUALITY, MANIFEST_COLUMNS, Scrubber

STATE_DIR = ".wmark-scrub"
#: bump when the meaning of a journal or an output changes (a resume across versions is refused)
STATE_VERSION = 2


@dataclass(frozen=True)
class ScrubResult:
    """What a scrub did.

    ``out``: the output folder; ``manifest`` / ``summary`` / ``report``: the files written there;
    ``counts``: samples, kept, dropped, stripped, error, tested, detected (and
    still_marked_after_strip); ``rule`` ("alpha" | "fdr"), ``level`` (alpha or q) and ``cutoff`` (the
    p-value at or below which a sample was called marked; -1.0: none); ``expected_false``: the
    number of false detections the rule expects (alpha x tested, or q x detected);
    ``units`` / ``resumed_units``: commit units in all, and those a previous run had finished;
    ``elapsed_s`` and ``samples_per_s`` of this call."""

    out: str
    manifest: str
    summary: str
    report: str
    counts: dict[str, int] = field(default_factory=dict)
    rule: str = "alpha"
    level: float = 1e-3
    cutoff: float = 1e-3
    expected_false: float = 0.0
    units: int = 0
    resumed_units: int = 0
    elapsed_s: float = 0.0
    samples_per_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return asdict(self)


# -- the test seam: called at the named points where a kill must leave a resumable state -----------------------
#: None in normal use; the fault tests set a callable (point name -> None) that may kill the process
_fault_hook: Callable[[str], None] | None = None


def _fault(point: str) -> None:
    if _fault_hook is not None:
        _fault_hook(point)


# -- the run ---------------------------------------------------------------------------------------------------
def _resolve_device(device: str | None) -> str:
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")
    return str(device)


def _check_paths(src: Path, out: Path) -> None:
    """Refuse an output folder inside the input, or an input inside the output folder."""
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents:
        raise ValueError(f"the output folder {out} lies inside the input {src}; choose another --out")
    if o in s.parents:
        raise ValueError(f"the input {src} lies inside the output folder {out}; choose another --out")


def _prepare_state(out: Path, params: dict, resume: bool) -> tuple[Path, bool]:
    """The state folder; whether this call continues a previous run. A new run needs an empty (or
    new) ``out``; a resumed one the same parameters."""
    state = out / STATE_DIR
    pfile = state / "params.json"
    if pfile.is_file():
        if not resume:
            raise FileExistsError(f"{out} holds a scrub run; pass --resume to continue it, or choose another --out")
        try:
            old = json.loads(pfile.read_text(encoding="utf-8"))
        except ValueError:
            raise ValueError(f"{pfile} is corrupt; cannot resume (choose another --out)") from None
        diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
        if diff:
            what = ", ".join(diff)
            hint = " (the input changed since the first run)" if "listing" in diff else ""
            raise ValueError(f"cannot resume {out}: {what} differ(s) from the interrupted run{hint}; "
                             "use the same settings or another --out")
        for d, _, _ in os.walk(out):  # temp files of writes that a kill cut short
            sweep_temp_files(d)
        return state, True
    others = [p.name for p in out.iterdir() if p.name not in (".wmark.lock", STATE_DIR)]
    if others:
        raise FileExistsError(f"{out} is not empty ({len(others)} entries, e.g. {sorted(others)[0]!r}); "
                              "choose an empty or new --out")
    state.mkdir(exist_ok=True)
    write_atomic(pfile, json.dumps(params, indent=2, sort_keys=True) + "\n")
    return state, False


def _batch(chunk: list, prior) -> dict:
    """The scrubber batch of some items of a unit (with pass-1 columns where ``prior``, an iterator
    over the unit's pass-1 rows, is given)."""
    b: dict[str, list] = {"id": [it.id for it in chunk], "data": [it.data for it in chunk],
                          "ext": [it.ext for it in chunk], "error": [it.error for it in chunk]}
    if prior is not None:
        pr = []
        for it in chunk:
            r = next(prior, None)
            if r is None:
                raise RuntimeError(f"pass 2 read {it.id!r} beyond the samples pass 1 read: the input changed")
            if r["id"] != it.id:
                raise RuntimeError(f"pass 2 read {it.id!r} where pass 1 read {r['id']!r}: the input changed")
            pr.append(r)
        b["p_value"] = [r["p_value"] for r in pr]
        b["payload"] = [r["payload"] for r in pr]
        b["sha256_in"] = [r["sha256_in"] for r in pr]
        b["error"] = [it.error or r["error"] for it, r in zip(chunk, pr)]
    return b


def _run_pass(name: str, src, units, journal: Journal, scrubber: Scrubber, engine, out: Path, write: bool,
              on_error: str, batch_size: int, prior: Journal | None, show: bool,
              weights: bool = False) -> tuple[int, int]:
    """One pass over the units not yet in ``journal``; returns (units skipped, samples processed)."""
    from wmark.runtime.progress import progress

    todo = [u for u in units if not journal.done(u.index, out if write else None)]
    skipped = len(units) - len(todo)
    total = src.total()
    left = {u.index for u in todo}
    done_samples = sum(journal.count(u.index) for u in units if u.index not in left)
    opened: dict[int, Any] = {}  # units being read or written (the engine reads ahead across units)

    def tasks():
        for u in todo:
            uio = opened[u.index] = src.open(u, out if write else None, on_error, weights)
            pr = prior.unit_rows(u.index) if prior is not None else None
            chunk: list = []
            for it in uio.items():
                if len(chunk) >= batch_size and (it.group is None or it.group is not chunk[-1].group):
                    yield (uio, chunk), _batch(chunk, pr)  # full, and not inside a sample's images
                    chunk = []
                chunk.append(it)
            if chunk:
                yield (uio, chunk), _batch(chunk, pr)
            if pr is not None and next(pr, None) is not None:
                raise RuntimeError(f"{u.name}: pass 2 read fewer samples than pass 1: the input changed")
            yield (uio, None), None  # the end of the unit

    processed = 0
    try:
        with progress(total, f"scrub: {name}", show, unit="sample", initial=done_samples if total else 0) as bar:
            for (uio, chunk), res in engine.run(scrubber, tasks()):
                unit = uio.unit
                if chunk is not None:
                    rows = [{c: res[c][i] for c in res} for i in range(len(chunk))]
                    for it, r in zip(chunk, rows):
                        uio.put(it, r)
                    journal.add(unit.index, [{c: r[c] for c in MANIFEST_COLUMNS} for r in rows])
                    processed += len(rows)
                    bar.update(len(rows))
                    continue
                outputs = uio.finish()
                del opened[unit.index]
                _fault("outputs")
                journal.commit(unit.index, unit.name, outputs)
                _fault("commit")
    finally:
        for uio in opened.values():  # an error stopped the run: no half-written output stays
            uio.close()
    return skipped, processed


def _p_values(journal: Journal, units):
    """The pass-1 p-values of every unit, as float64 (None: untested, NaN)."""
    import array

    return array.array("d", (float("nan") if r["p_value"] is None else r["p_value"]
                             for r in journal.rows(u.index for u in units)))


def scrub(input: str | os.PathLike[str], out: str | os.PathLike[str], key, *, action: str = "report",
          kind: str | None = None, format: str | None = None, column: str | None = None,
          alpha: float | None = 1e-3, fdr: float | None = None, on_error: str = "copy",
          manifest_format: str = "parquet", resume: bool = False, engine: str = "local", jobs: int = 1,
          device: str | None = None, batch_size: int = 16, chunk_size: int = 256,
          jpeg_quality: int = DEFAULT_QUALITY, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int | None = None,
          model: str = "default", scheme: str = "kgw-selfhash", scheme_params: Mapping[str, Any] | None = None,
          tokenizer: str | None = None, vocab_size: int | None = None, min_window: int = 50,
          progress: bool = False) -> ScrubResult:
    """Scrub a dataset: detect the mark of ``key`` in every sample of ``input``, decide, act and write
    the result under ``out`` (see the module doc). Returns a :class:`ScrubResult`.

    ``action`` "report" | "drop" | "strip"; ``kind`` "image" | "text" (default: from the input);
    ``format`` one of :data:`wmark.scrub.sources.SOURCES` (default: inferred); ``column`` the
    parquet column / JSON Lines field; ``alpha`` a per-sample level or ``fdr`` a Benjamini–Hochberg
    level (then ``alpha`` is ignored); ``on_error`` "copy" | "skip" (bad samples passed through or
    left out); ``resume`` continue an interrupted run in ``out``; ``engine`` / ``jobs`` / ``device``
    where the scrubber runs; ``batch_size`` samples per scrubber call; ``chunk_size`` files per
    commit unit of a folder input; the rest as :class:`~wmark.scrub.scrubber.Scrubber`."""
    from wmark.image.io import check_key
    from wmark.scrub.engines import make_engine
    from wmark.scrub.report import (MANIFEST_FORMATS, ManifestWriter, Tally, closing_paths, expected_false_block,
                                    write_closing)
    from wmark.scrub.sources import open_source

    t0 = time.perf_counter()
    check_key(key)
    if fdr is not None:
        fdr, alpha = check_level(fdr, "the FDR level q"), None
    elif alpha is None:
        raise ValueError("give alpha or fdr")
    else:
        alpha = check_level(alpha, "alpha")
    if manifest_format not in MANIFEST_FORMATS:
        raise ValueError(f"manifest format must be one of {', '.join(MANIFEST_FORMATS)}, got {manifest_format!r}")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    src_path, out = Path(input), Path(out)
    src = open_source(src_path, format, kind, column, chunk_size)
    _check_paths(src_path, out)
    dev = _resolve_device(device)
    base = dict(key=key, kind=src.kind, on_error=on_error, jpeg_quality=jpeg_quality, max_bytes=max_bytes,
                max_pixels=max_pixels, model=model, device=dev, scheme=scheme, scheme_params=scheme_params,
                tokenizer=str(tokenizer) if tokenizer else None, vocab_size=vocab_size, min_window=min_window)
    final = Scrubber(action=action, alpha=alpha if fdr is None else None, cutoff=None if fdr is None else NOTHING,
                     **base)  # validates the settings before anything is written
    listing = sha256_bytes(json.dumps(src.listing()).encode("utf-8"))
    params = {"version": STATE_VERSION, "input": str(src_path.resolve()), "source": src.describe(),
              "action": action, "alpha": alpha, "fdr": fdr, "device": dev, "chunk_size": chunk_size,
              "listing": listing, **{k: v for k, v in final.settings().items()
                                     if k not in ("action", "alpha", "cutoff", "kind")}}
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "scrub"), make_engine(engine, jobs, dev) as eng:
        state, resumed = _prepare_state(out, params, resume)  # after the engine: a missing one writes nothing
        units = src.units()
        write = action != "report"
        weights = False
        if write and action == "strip" and src.kind == "text":
            from wmark.scrub.scrubber import green_scheme

            weights = green_scheme(final.text_scheme()[0])
        skipped = processed = 0
        with Journal(state / "act.jsonl") as act, Journal(state / "detect.jsonl") as det:
            if fdr is None:
                skipped, processed = _run_pass("detect+act", src, units, act, final, eng, out, write, on_error,
                                               batch_size, None, progress, weights)
                cutoff = alpha
            else:
                s1, p1 = _run_pass("detect", src, units, det, Scrubber(action="report", alpha=0.5, **base), eng,
                                   out, False, on_error, batch_size, None, progress)
                _fault("decide")
                cutoff = bh_cutoff(_p_values(det, units), fdr)
                write_atomic(state / "decision.json", json.dumps({"rule": "fdr", "q": fdr, "cutoff": cutoff}) + "\n")
                final.cutoff = cutoff
                if write:
                    s2, p2 = _run_pass("act", src, units, act, final, eng, out, True, on_error, batch_size, det,
                                       progress, weights)
                else:  # report: the decision is all pass 2 adds
                    for u in units:
                        if not act.done(u.index):
                            rows = [{**r, "detected": is_marked(r["p_value"], cutoff=cutoff)}
                                    for r in det.unit_rows(u.index)]
                            for k in range(0, len(rows), batch_size):
                                act.add(u.index, rows[k:k + batch_size])
                            act.commit(u.index, u.name, [])
                    s2, p2 = s1, 0
                skipped, processed = min(s1, s2), max(p1, p2)
            _fault("manifest")
            marked = ((lambda p: is_marked(p, alpha=alpha)) if fdr is None
                      else (lambda p: is_marked(p, cutoff=cutoff)))
            tally = Tally(marked if action == "strip" and src.kind == "image" else None)
            man = ManifestWriter(closing_paths(out, manifest_format)["manifest"], manifest_format)
            try:
                for r in act.rows(u.index for u in units):
                    tally.add(r)
                    man.add(r)
                man.close()
            except BaseException:
                man.abort()
                raise
        c = tally.counts()
        rule, level = ("alpha", alpha) if fdr is None else ("fdr", fdr)
        ef = expected_false_block(tally.p, rule, level)
        elapsed = time.perf_counter() - t0
        summary = {
            "input": {"path": str(src_path), **src.describe()}, "action": action, "key": key.fingerprint,
            "decision": {"rule": rule, "level": level, "cutoff": cutoff,
                         "passes": 1 if fdr is None else 2},
            "counts": c, "expected_false": ef,
            "units": {"total": len(units), "resumed": skipped}, "engine": engine, "jobs": jobs, "device": dev,
            "throughput": {"samples_this_run": processed, "elapsed_s": elapsed,
                           "samples_per_s": processed / elapsed if elapsed > 0 else 0.0},
            "settings": {"on_error": on_error, "jpeg_quality": jpeg_quality, "model": model,
                         "scheme": scheme if src.kind == "text" else None, "manifest_format": manifest_format},
        }
        if action == "strip" and src.kind == "text":
            summary["text_strip"] = (
                "Text strip keeps every document unchanged and writes per-token de-bias loss weights "
                f"(`wmark_weights`) for the marked ones ({c['stripped']} documents)." if weights else
                f"Text strip under the {scheme} scheme has no de-bias weights: marked documents are kept and "
                "only flagged (`detected`) in the manifest.")
        paths = write_closing(out, tally, summary, manifest_format)
    return ScrubResult(out=str(out), manifest=str(paths["manifest"]), summary=str(paths["summary"]),
                       report=str(paths["report"]), counts=c, rule=rule, level=level, cutoff=cutoff,
                       expected_false=float(ef["chosen"]["expected_false"]), units=len(units), resumed_units=skipped,
                       elapsed_s=elapsed, samples_per_s=processed / elapsed if elapsed > 0 else 0.0)
