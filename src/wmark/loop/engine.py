"""The self-consuming loop engine: generations, loop types, arms with watermark policies, resume.

Generation t = 0 is the true distribution. Generation t >= 1 builds a training set — real samples
(per loop type) plus ``n_syn`` samples of model t-1 passed through the arm's policy — and fits model t
(``replace``: this generation's data only; ``accumulate``: all earlier training data too).

Randomness: every draw uses ``generator(seed, replicate, t, stream)``, independent of the arm, so
arms share real data and sampling noise and differ only by their policy (common random numbers).

Metrics per generation, arm and seed: the family's (``evaluate``), ``n_train`` (size of the training
set) and, with a marker, ``train_marked`` (share of the training set the detector flags) and
``inherited`` (share of ``eval.n_mark`` = 1000 fresh, *unmarked* samples of model t that the detector
flags: the mark the model learnt), plus ``marker.metrics(those samples, key)`` where the marker has it.

Markers that can only mark while sampling (text: the scheme is a logits processor) provide
``sample_marked(model, n, lam, rng, key)``; marked arms then draw their synthetic samples through it
(same random stream as ``model.sample``) and the policy's ``mark`` step receives marked samples.

Run folder: ``config.json``, ``generations.jsonl`` (one line per generation and arm, each metric a
list over seeds), ``checkpoint.pkl`` (state after the last finished generation; a killed run resumes
from it with identical results). :func:`wmark.loop.report.write_report` adds ``report.md`` and plots.
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from wmark.runtime.threads import set_threads
from wmark.assets import write_atomic
from wmark.loop.config import LoopConfig
from wmark.loop.models.base import Samples, concat, put, size, take

CONFIG_FILE = "config.json"
RECORDS_FILE = "generations.jsonl"
CHECKPOINT_FILE = "checkpoint.pkl"
_CKPT_FORMAT = 1

#: independent random streams of one (replicate, generation); arms share them
STREAMS: dict[str, int] = {"real": 0, "sample": 1, "mark": 2, "fit": 3, "eval": 4, "mark_eval": 5}


def generator(seed: int, replicate: int, t: int, stream: str) -> np.random.Generator:
    """The numpy Generator of ``stream`` for (run ``seed``, ``replicate``, generation ``t``).

    A Philox counter-based generator keyed by the four integers (distinct keys give independent
    streams; no SeedSequence hashing, so creating one per step is cheap).
    """
    seed, replicate, t = int(seed), int(replicate), int(t)
    if not (0 <= seed < 2**32 and 0 <= replicate < 2**32 and 0 <= t < 2**48):
        raise ValueError("seed and replicate must be in [0, 2**32), t in [0, 2**48)")
    return np.random.Generator(np.random.Philox(key=[(seed << 32) | replicate, (t << 8) | STREAMS[stream]]))


def torch_generator(rng: np.random.Generator, device: str = "cpu") -> Any:
    """A ``torch.Generator`` seeded from ``rng`` (for torch models inside the loop)."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(rng.integers(2**62)))
    return g


# -- watermark policies ------------------------------------------------------------------------------
Policy = Callable[[Samples, Any, Any, np.random.Generator], Samples]


def _policy_none(samples: Samples, marker: Any, key: Any, rng: np.random.Generator) -> Samples:
    return samples


def _policy_keep(samples: Samples, marker: Any, key: Any, rng: np.random.Generator) -> Samples:
    return marker.mark(samples, key, rng)


def _policy_strip(samples: Samples, marker: Any, key: Any, rng: np.random.Generator) -> Samples:
    marked = marker.mark(samples, key, rng)
    hit = np.asarray(marker.detect(marked, key), dtype=bool)
    if not hit.any():
        return marked
    return put(marked, hit, marker.strip(take(marked, hit), key))


def _policy_drop(samples: Samples, marker: Any, key: Any, rng: np.random.Generator) -> Samples:
    marked = marker.mark(samples, key, rng)
    return take(marked, ~np.asarray(marker.detect(marked, key), dtype=bool))


#: policy name -> f(synthetic samples, marker, key, rng) -> samples to train on
POLICIES: dict[str, Policy] = {
    "none": _policy_none,      # never marked
    "keep": _policy_keep,      # marked at generation, trained on as they are
    "strip": _policy_strip,    # marked, detected and stripped with the key before training
    "drop": _policy_drop,      # marked; detected samples removed, the rest trained on
}


# -- loop types: the real part of generation t's new data --------------------------------------------
@dataclass
class _Replicate:
    """Per-replicate state: the fixed real set and, per arm, the model and accumulated training set."""

    real_fixed: Samples | None = None
    models: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


RealPart = Callable[[LoopConfig, Any, _Replicate, int, int], "tuple[Samples | None, bool]"]


def _real_draw(cfg: LoopConfig, source: Any, n: int, replicate: int, t: int) -> Samples:
    return source.sample(n, cfg.lam if cfg.bias_real else 1.0, generator(cfg.seed, replicate, t, "real"))


def _real_fully_synthetic(cfg, source, rep, replicate, t):
    return (_real_draw(cfg, source, cfg.n_init_, replicate, t), True) if t == 1 else (None, False)


def _real_augmentation(cfg, source, rep, replicate, t):
    if rep.real_fixed is None:
        rep.real_fixed = _real_draw(cfg, source, cfg.n_init_, replicate, 1)
    return rep.real_fixed, t == 1


def _real_fresh(cfg, source, rep, replicate, t):
    return _real_draw(cfg, source, cfg.n_init_ if t == 1 else cfg.n_real, replicate, t), True


#: loop type -> f(cfg, source, replicate state, replicate, t) -> (real samples or None, are they new)
LOOPS: dict[str, RealPart] = {
    "fully_synthetic": _real_fully_synthetic,
    "synthetic_augmentation": _real_augmentation,
    "fresh_data": _real_fresh,
}


# -- results -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationRecord:
    """Metrics of one arm at generation ``t``: ``metrics[name]`` holds one value per seed ``[S]``."""

    t: int
    arm: str
    policy: str
    metrics: Mapping[str, tuple[float, ...]]

    def to_json(self) -> str:
        return json.dumps({"t": self.t, "arm": self.arm, "policy": self.policy,
                           "metrics": {k: list(v) for k, v in self.metrics.items()}})

    @classmethod
    def from_json(cls, line: str) -> "GenerationRecord":
        d = json.loads(line)
        return cls(int(d["t"]), d["arm"], d["policy"], {k: tuple(v) for k, v in d["metrics"].items()})


@dataclass(frozen=True)
class LoopResult:
    """A run's config and records; ``complete`` once all generations ran."""

    config: LoopConfig
    records: tuple[GenerationRecord, ...]
    out: Path | None = None
    complete: bool = True

    @property
    def arms(self) -> list[str]:
        return [a.name for a in self.config.arms]

    def generations(self) -> np.ndarray:
        """Generation indices present ``[T']`` (sorted)."""
        return np.array(sorted({r.t for r in self.records}), dtype=int)

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for r in self.records:
            names.update(dict.fromkeys(r.metrics))
        return list(names)

    def series(self, metric: str, arm: str) -> np.ndarray:
        """Values ``[T', S]`` of ``metric`` for ``arm`` (rows follow :meth:`generations`; NaN if absent)."""
        ts = self.generations()
        row = {t: i for i, t in enumerate(ts)}
        out = np.full((len(ts), self.config.seeds), np.nan)
        found = False
        for r in self.records:
            if r.arm == arm and metric in r.metrics:
                out[row[r.t]] = r.metrics[metric]
                found = True
        if not found:
            raise ValueError(f"no metric {metric!r} for arm {arm!r} (metrics: {', '.join(self.metric_names())})")
        return out


# -- the engine --------------------------------------------------------------------------------------
def _load_key(spec: str) -> Any:
    from wmark.keys import Key

    return Key.demo() if spec == "demo" else Key.from_file(spec)


def _read_records(path: Path, upto: int) -> list[GenerationRecord]:
    """Complete records with t <= ``upto`` (a torn last line from a kill is skipped)."""
    out = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = GenerationRecord.from_json(line)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if rec.t <= upto:
                out.append(rec)
    return out


def load_result(run_dir: str | Path) -> LoopResult:
    """The result stored in a run folder (complete or not)."""
    d = Path(run_dir)
    if not (d / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"not a loop run folder (no {CONFIG_FILE}): {d}")
    cfg = LoopConfig.from_dict(json.loads((d / CONFIG_FILE).read_text(encoding="utf-8")))
    recs = _read_records(d / RECORDS_FILE, cfg.generations)
    done = max((r.t for r in recs), default=-1) >= cfg.generations
    return LoopResult(cfg, tuple(recs), d, done)


def _prepare_folder(cfg: LoopConfig | None, out: Path, resume: bool) -> tuple[LoopConfig, dict | None]:
    """Create or reopen a run folder; returns the config and the checkpoint (None: start afresh)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"run folder path is a file: {out}")
    nonempty = out.is_dir() and any(out.iterdir())
    if nonempty and not resume:
        raise ValueError(f"run folder {out} is not empty; pass --resume to continue it or choose another --out")
    if nonempty:
        cfile = out / CONFIG_FILE
        if not cfile.is_file():
            raise ValueError(f"cannot resume: {out} has no {CONFIG_FILE} (not a loop run folder)")
        saved = LoopConfig.from_dict(json.loads(cfile.read_text(encoding="utf-8")))
        if cfg is None:
            cfg = saved
        else:
            a, b = cfg.to_dict(), saved.to_dict()
            if a.pop("generations") < b.pop("generations") or a != b:
                raise ValueError(f"cannot resume: the config differs from the one saved in {cfile} "
                                 "(only more generations are allowed)")
            if cfg.generations != saved.generations:
                write_atomic(cfile, json.dumps(cfg.to_dict(), indent=2).encode())
        ckpt_path = out / CHECKPOINT_FILE
        if ckpt_path.is_file():
            with open(ckpt_path, "rb") as f:
                ckpt = pickle.load(f)  # our own run folder: trusted
            if ckpt.get("format") != _CKPT_FORMAT:
                raise ValueError(f"cannot resume: unknown checkpoint format in {ckpt_path}")
            return cfg, ckpt
        return cfg, None
    if cfg is None:
        raise ValueError(f"nothing to resume in {out}: give a config or preset")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2).encode())
    return cfg, None


def _build(cfg: LoopConfig) -> tuple[Any, Any, Any, Any]:
    """Family, real-data source, marker and key of a config (one-line ValueError for bad parameters)."""
    from wmark.loop.models import get_family

    family = get_family(cfg.family)
    try:
        source = family.make_source(**cfg.data)
        family.make_model(source, **cfg.model)
    except TypeError as exc:
        raise ValueError(f"bad 'data' or 'model' parameters for family {cfg.family!r}: {exc}") from None
    marker = key = None
    if cfg.marker is not None:
        from wmark.loop.markers import get_marker

        try:
            marker = get_marker(cfg.marker, **cfg.marker_params)
        except TypeError as exc:
            raise ValueError(f"bad 'marker_params' for marker {cfg.marker!r}: {exc}") from None
        key = _load_key(cfg.key)
    return family, source, marker, key


def run_loop(config: LoopConfig | None, out: str | Path | None = None, *, resume: bool = False,
             progress: bool = True, on_generation: Callable[[int], None] | None = None,
             keep_checkpoint: bool = True) -> LoopResult:
    """Run (or resume) a loop; returns its :class:`LoopResult`.

    ``out``: the run folder (None: in memory, no checkpoints). A non-empty folder is never
    overwritten: ``resume=True`` continues it from its checkpoint (``config`` may then be None, or
    must equal the saved one except for more ``generations``). ``on_generation(t)`` is called after
    generation t is recorded and checkpointed (tests use it to interrupt a run).
    ``keep_checkpoint=False`` deletes the checkpoint once every generation is done (the run can
    then no longer be extended with ``resume``; records and config stay).
    """
    out_dir = Path(out) if out is not None else None
    ckpt = None
    built = _build(config) if config is not None else None  # bad parameters fail before any write
    if out_dir is not None:
        config, ckpt = _prepare_folder(config, out_dir, resume)
    elif config is None:
        raise ValueError("run_loop needs a config when no run folder is given")
    cfg = config
    family, source, marker, key = built if built is not None else _build(cfg)
    n_mark_eval = int(cfg.eval.get("n_mark", 1000))

    if ckpt is not None:
        start, reps = ckpt["t"] + 1, ckpt["replicates"]
    else:
        start = 0
        reps = [_Replicate(models={a.name: family.make_model(source, **cfg.model) for a in cfg.arms})
                for _ in range(cfg.seeds)]
    records: list[GenerationRecord] = []
    rec_path = out_dir / RECORDS_FILE if out_dir is not None else None
    if rec_path is not None:
        records = _read_records(rec_path, start - 1)
        write_atomic(rec_path, "".join(r.to_json() + "\n" for r in records).encode())

    def marker_metrics(model: Any, data: Samples | None, s: int, t: int) -> dict[str, float]:
        if marker is None:
            return {}
        own = model.sample(n_mark_eval, 1.0, generator(cfg.seed, s, t, "mark_eval"))
        out_m = {"inherited": float(np.mean(marker.detect(own, key)))}
        if hasattr(marker, "metrics"):  # optional extra inherited-mark metrics (text: green z, radioactivity)
            out_m.update(marker.metrics(own, key))
        if data is not None:
            out_m["train_marked"] = float(np.mean(marker.detect(data, key))) if size(data) else 0.0
        return out_m

    def step(s: int, t: int) -> dict[str, dict[str, float]]:
        rep = reps[s]
        if t == 0:
            if not family.source_is_model:
                return {}
            m = family.evaluate(source, source, None, generator(cfg.seed, s, 0, "eval"), cfg.eval)
            m.update(marker_metrics(source, None, s, 0))
            return {a.name: m for a in cfg.arms}
        real, real_new = LOOPS[cfg.loop](cfg, source, rep, s, t)
        res = {}
        for arm in cfg.arms:
            model = rep.models[arm.name]
            syn = None
            if t >= 2:
                rng_sample = generator(cfg.seed, s, t, "sample")
                if arm.policy != "none" and hasattr(marker, "sample_marked"):
                    # generation-time marker (text): marked while sampling, same random stream
                    syn = marker.sample_marked(model, cfg.n_syn_, cfg.lam, rng_sample, key)
                else:
                    syn = model.sample(cfg.n_syn_, cfg.lam, rng_sample)
                if arm.policy != "none":
                    syn = POLICIES[arm.policy](syn, marker, key, generator(cfg.seed, s, t, "mark"))
            prev = rep.train.get(arm.name)
            parts = [prev, real if real_new else None, syn] if prev is not None else [real, syn]
            data = concat(parts)
            if cfg.synthetic == "accumulate":
                rep.train[arm.name] = data
            if size(data) > 0:  # everything dropped: the model stays as it was
                model = rep.models[arm.name] = model.fit(data, generator(cfg.seed, s, t, "fit"))
            m = family.evaluate(model, source, data, generator(cfg.seed, s, t, "eval"), cfg.eval)
            m["n_train"] = float(size(data))
            m.update(marker_metrics(model, data, s, t))
            res[arm.name] = m
        return res

    from wmark.runtime.progress import progress as progress_bar

    bar = progress_bar(cfg.generations + 1, f"loop {cfg.name}", progress, unit="gen",
                       iterable=range(start, cfg.generations + 1), initial=start)
    restore = set_threads(cfg.threads)
    try:
        for t in bar:
            per_seed = [step(s, t) for s in range(cfg.seeds)]
            new = []
            for arm in cfg.arms:
                if arm.name not in per_seed[0]:
                    continue
                names = list(per_seed[0][arm.name])
                new.append(GenerationRecord(t, arm.name, arm.policy, {
                    n: tuple(float(ps[arm.name][n]) for ps in per_seed) for n in names}))
            records.extend(new)
            if out_dir is not None:
                with open(rec_path, "a", encoding="utf-8") as f:
                    f.write("".join(r.to_json() + "\n" for r in new))
                    f.flush()
                    os.fsync(f.fileno())
                write_atomic(out_dir / CHECKPOINT_FILE,
                              pickle.dumps({"format": _CKPT_FORMAT, "t": t, "replicates": reps}))
            if on_generation is not None:
                on_generation(t)
    finally:
        restore()
    bar.close()
    if out_dir is not None and not keep_checkpoint:
        (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return LoopResult(cfg, tuple(records), out_dir, True)
