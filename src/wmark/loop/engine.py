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

Channel (``config.channel``, :mod:`wmark.loop.channel`): registry attacks applied to every arm's
published synthetic samples (after marking, before the policy's detect / strip / drop), with the
``channel`` random stream; an empty channel applies nothing.

Markers that can only mark while sampling (text: the scheme is a logits processor) provide
``sample_marked(model, n, lam, rng, key)``; marked arms then draw their synthetic samples through it
(same random stream as ``model.sample``) and the policy's ``mark`` step receives marked samples.

Run folder: ``config.json`` (the config plus ``key_fingerprint``), ``generations.jsonl`` (one line
per generation and arm, each metric a list over seeds; appended and fsynced per generation),
``checkpoint.pt`` (state after the last finished generation: tensors and plain data only, read with
``torch.load(weights_only=True)``, see :mod:`wmark.loop.state`; a killed run resumes from it with
identical results), ``key.hex`` (0600; only for the default fresh key of a marked run) and, while a
run holds the folder, ``.wmark.lock``. :func:`wmark.loop.report.write_report` adds ``report.md`` and
plots. A ``checkpoint.pkl`` (pickle, older wmark) is refused, never loaded.

Key: ``config.key`` None (default) is a fresh random key per run, kept in the run folder's
``key.hex`` so that a resume marks alike; ``"demo"`` (reproducible examples) or a key file path name
one. Only its fingerprint is recorded.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from wmark.runtime.threads import set_threads
from wmark.assets import LOCK_NAME, folder_lock, write_atomic
from wmark.loop.config import LoopConfig
from wmark.loop.models.base import Samples, concat, put, size, take

CONFIG_FILE = "config.json"
RECORDS_FILE = "generations.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
KEY_FILE = "key.hex"
#: the pickle checkpoint of older versions: refused, never loaded
LEGACY_CHECKPOINT_FILE = "checkpoint.pkl"
_CKPT_FORMAT = 2

#: independent random streams of one (replicate, generation); arms share them
STREAMS: dict[str, int] = {"real": 0, "sample": 1, "mark": 2, "fit": 3, "eval": 4, "mark_eval": 5, "channel": 6}


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
# A policy is two steps: *publish* (the samples as the model's users put them out: marked unless the
# policy is none) and *act* (what the data team does with what it scraped back: keep, strip the
# detected marks, drop the detected samples). The engine runs the loop's channel between the two.
Policy = Callable[[Samples, Any, Any, np.random.Generator], Samples]
Action = Callable[[Samples, Any, Any], Samples]


def publish(policy: str, samples: Samples, marker: Any, key: Any, rng: np.random.Generator) -> Samples:
    """The published samples of an arm with ``policy``: ``marker.mark`` unless the policy is none."""
    return samples if policy == "none" else marker.mark(samples, key, rng)


def _act_keep(samples: Samples, marker: Any, key: Any) -> Samples:
    return samples


def _act_strip(samples: Samples, marker: Any, key: Any) -> Samples:
    hit = np.asarray(marker.detect(samples, key), dtype=bool)
    if not hit.any():
        return samples
    return put(samples, hit, marker.strip(take(samples, hit), key))


def _act_drop(samples: Samples, marker: Any, key: Any) -> Samples:
    return take(samples, ~np.asarray(marker.detect(samples, key), dtype=bool))


#: policy name -> f(published samples, after the channel, marker, key) -> samples to train on
ACTIONS: dict[str, Action] = {"none": _act_keep, "keep": _act_keep, "strip": _act_strip, "drop": _act_drop}


def _policy(name: str) -> Policy:
    def run(samples: Samples, marker: Any, key: Any, rng: np.random.Generator) -> Samples:
        return ACTIONS[name](publish(name, samples, marker, key, rng), marker, key)

    run.__name__ = run.__qualname__ = f"policy_{name}"
    return run


#: policy name -> f(synthetic samples, marker, key, rng) -> samples to train on (publish, then act;
#: no channel in between)
POLICIES: dict[str, Policy] = {
    "none": _policy("none"),    # never marked
    "keep": _policy("keep"),    # marked at generation, trained on as they are
    "strip": _policy("strip"),  # marked, detected and stripped with the key before training
    "drop": _policy("drop"),    # marked; detected samples removed, the rest trained on
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
    """A run's config and records; ``complete`` once all generations ran; ``key_fingerprint``: the
    public fingerprint of the key that marked it (None without a marker)."""

    config: LoopConfig
    records: tuple[GenerationRecord, ...]
    out: Path | None = None
    complete: bool = True
    key_fingerprint: str | None = None

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


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` with O_APPEND writes and fsync (a kill leaves at most a torn last line)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_config(d: Path) -> tuple[LoopConfig, str | None]:
    """The config saved in run folder ``d`` and the key fingerprint recorded beside it."""
    path = d / CONFIG_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({type(exc).__name__}); the run folder is damaged") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} does not hold a JSON object; the run folder is damaged")
    fp = raw.pop("key_fingerprint", None)
    return LoopConfig.from_dict(raw), fp if isinstance(fp, str) else None


def _write_config(d: Path, cfg: LoopConfig, key_fingerprint: str | None) -> None:
    write_atomic(d / CONFIG_FILE, json.dumps({**cfg.to_dict(), "key_fingerprint": key_fingerprint},
                                             indent=2).encode())


def load_result(run_dir: str | Path) -> LoopResult:
    """The result stored in a run folder (complete or not)."""
    d = Path(run_dir)
    if not (d / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"not a loop run folder (no {CONFIG_FILE}): {d}")
    cfg, fp = _read_config(d)
    recs = _read_records(d / RECORDS_FILE, cfg.generations)
    done = max((r.t for r in recs), default=-1) >= cfg.generations
    return LoopResult(cfg, tuple(recs), d, done, fp)


def save_checkpoint(path: Path, t: int, replicates: list[_Replicate]) -> None:
    """Write the state after generation ``t`` atomically (tensors and plain data; see :mod:`wmark.loop.state`)."""
    import torch

    from wmark.loop.state import encode

    buf = io.BytesIO()
    torch.save({"format": _CKPT_FORMAT, "t": int(t), "replicates": encode(replicates)}, buf)
    write_atomic(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> tuple[int, list[_Replicate]]:
    """``(t, replicates)`` from a checkpoint, read with ``torch.load(weights_only=True)``: no code runs.

    ValueError (one line, naming the file) for a corrupt, truncated or foreign file."""
    import torch

    from wmark.loop.state import decode

    p = Path(path)
    try:
        tree = torch.load(io.BytesIO(p.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusal (UnpicklingError), torn zip (RuntimeError), EOF, ...
        raise ValueError(f"cannot resume: checkpoint {p} is corrupt, truncated or holds objects other than "
                         f"tensors and plain data ({type(exc).__name__}; not loaded); delete it to restart "
                         "the run from generation 0") from None
    try:
        if not isinstance(tree, dict) or tree.get("format") != _CKPT_FORMAT:
            raise ValueError("unknown checkpoint format")
        t = tree.get("t")
        if type(t) is not int or t < 0:
            raise ValueError("no generation index")
        reps = decode(tree.get("replicates"))
        if not isinstance(reps, list) or not all(isinstance(r, _Replicate) for r in reps):
            raise ValueError("no replicates")
    except Exception as exc:  # untrusted content: any failure to rebuild the state is this one line
        why = str(exc).splitlines()[0] if isinstance(exc, ValueError) and str(exc) else type(exc).__name__
        raise ValueError(f"cannot resume: checkpoint {p} is not a wmark loop checkpoint ({why})") from None
    return t, reps


def _has_content(d: Path) -> bool:
    """Whether folder ``d`` holds anything beyond a lock and temp files of interrupted writes."""
    return d.is_dir() and any(p.name != LOCK_NAME and not (p.name.startswith(".") and p.name.endswith(".tmp"))
                              for p in d.iterdir())


def _prepare_folder(cfg: LoopConfig | None, out: Path, resume: bool
                    ) -> tuple[LoopConfig, tuple[int, list[_Replicate]] | None, str | None]:
    """Reopen a run folder (held under its lock) or set it up; returns the config, the checkpoint
    (None: start afresh) and the key fingerprint recorded in config.json (None: new folder)."""
    nonempty = _has_content(out)
    if nonempty and not resume:
        raise ValueError(f"run folder {out} is not empty; pass --resume to continue it or choose another --out")
    if not nonempty:
        if cfg is None:
            raise ValueError(f"nothing to resume in {out}: give a config or preset")
        return cfg, None, None
    if os.path.lexists(out / LEGACY_CHECKPOINT_FILE):
        raise ValueError(f"{out / LEGACY_CHECKPOINT_FILE} is a pickle from an older wmark; pickles can run code "
                         "and are not loaded — start a new run")
    cfile = out / CONFIG_FILE
    if not cfile.is_file():
        raise ValueError(f"cannot resume: {out} has no {CONFIG_FILE} (not a loop run folder)")
    saved, fp = _read_config(out)
    if cfg is None:
        cfg = saved
    else:
        a, b = cfg.to_dict(), saved.to_dict()
        if a.pop("generations") < b.pop("generations") or a != b:
            raise ValueError(f"cannot resume: the config differs from the one saved in {cfile} "
                             "(only more generations are allowed)")
        if cfg.generations != saved.generations:
            _write_config(out, cfg, fp)
    ckpt_path = out / CHECKPOINT_FILE
    ckpt = load_checkpoint(ckpt_path) if ckpt_path.is_file() else None
    if ckpt is not None:
        reps = ckpt[1]
        arms = {a.name for a in cfg.arms}
        if ckpt[0] > cfg.generations or len(reps) != cfg.seeds or any(set(r.models) != arms for r in reps):
            raise ValueError(f"cannot resume: checkpoint {ckpt_path} does not match the generations, seeds "
                             f"and arms of {cfile}")
    return cfg, ckpt, fp


def _folder_key(cfg: LoopConfig, out: Path, key: Any, recorded: str | None, started: bool) -> tuple[Any, bool]:
    """The key of a marked run in folder ``out`` and whether it is new (to be saved as ``key.hex``).

    ``key``: the config's key (None: the run's own, from ``key.hex`` or fresh while nothing has been
    computed with one). ``started``: a checkpoint exists, so the key must be the one recorded."""
    from wmark.keys import Key

    path = out / KEY_FILE
    new = False
    if key is None:
        if os.path.lexists(path):
            key = Key.from_file(path)
        elif started:
            raise ValueError(f"cannot resume: {path} (this run's key) is missing; start a new run")
        else:
            key, new = Key.generate(), True
    if started and recorded is not None and key.fingerprint != recorded:
        where = cfg.key if cfg.key is not None else path
        raise ValueError(f"cannot resume: the key in {where} (fingerprint {key.fingerprint}) is not the one "
                         f"this run used ({recorded})")
    return key, new


def _build(cfg: LoopConfig) -> tuple[Any, Any, Any, Any]:
    """Family, real-data source, marker and key of a config (one-line ValueError for bad parameters).

    The key is None without a marker or where the config leaves it to the run (``key`` None)."""
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
        if cfg.key is not None:
            key = _load_key(cfg.key)
    return family, source, marker, key


def run_loop(config: LoopConfig | None, out: str | Path | None = None, *, resume: bool = False,
             progress: bool = True, on_generation: Callable[[int], None] | None = None,
             keep_checkpoint: bool = True) -> LoopResult:
    """Run (or resume) a loop; returns its :class:`LoopResult`.

    ``out``: the run folder (None: in memory, no checkpoints). A non-empty folder is never
    overwritten: ``resume=True`` continues it from its checkpoint (``config`` may then be None, or
    must equal the saved one except for more ``generations``). The folder is locked for the run
    (:func:`wmark.assets.folder_lock`): a second run on it gets a ``FolderLockedError``.
    ``on_generation(t)`` is called after generation t is recorded and checkpointed (tests use it to
    interrupt a run). ``keep_checkpoint=False`` deletes the checkpoint once every generation is
    done (the run can then no longer be extended with ``resume``; records and config stay).
    """
    built = _build(config) if config is not None else None  # bad parameters fail before any write
    if out is None:
        if config is None:
            raise ValueError("run_loop needs a config when no run folder is given")
        return _run(config, built, None, None, progress, on_generation, keep_checkpoint)
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"run folder path is a file: {out_dir}")
    if config is None and not _has_content(out_dir):
        raise ValueError(f"nothing to resume in {out_dir}: give a config or preset")
    if _has_content(out_dir) and not resume and not os.path.lexists(out_dir / LOCK_NAME):
        # refused before locking: a foreign folder is left exactly as it is
        raise ValueError(f"run folder {out_dir} is not empty; pass --resume to continue it or choose another --out")
    with folder_lock(out_dir, "loop"):
        return _run(config, built, out_dir, resume, progress, on_generation, keep_checkpoint)


def _run(config: LoopConfig | None, built: tuple | None, out_dir: Path | None, resume: bool | None,
         progress: bool, on_generation: Callable[[int], None] | None, keep_checkpoint: bool) -> LoopResult:
    """The loop itself; a run folder ``out_dir`` is held under its lock by the caller."""
    ckpt, recorded = None, None
    if out_dir is not None:
        config, ckpt, recorded = _prepare_folder(config, out_dir, bool(resume))
    cfg = config
    family, source, marker, key = built if built is not None else _build(cfg)
    from wmark.loop.channel import Channel

    channel = Channel.build(cfg.channel, cfg.family)  # None: no channel
    if marker is not None and out_dir is None and key is None:
        from wmark.keys import Key

        key = Key.generate()  # in memory: a fresh key every run
    new_key = False
    if marker is not None and out_dir is not None:
        key, new_key = _folder_key(cfg, out_dir, key, recorded, started=ckpt is not None)
    fingerprint = key.fingerprint if key is not None else None
    if out_dir is not None:
        # config.json first: a kill before key.hex exists is repaired by the resume (nothing ran yet)
        if recorded != fingerprint or not (out_dir / CONFIG_FILE).is_file():
            _write_config(out_dir, cfg, fingerprint)
        if new_key:
            # the secret goes to this 0600 file only; config, records and reports carry the fingerprint
            write_atomic(out_dir / KEY_FILE, key._secret.hex() + "\n", mode=0o600, overwrite=False)
    n_mark_eval = int(cfg.eval.get("n_mark", 1000))

    if ckpt is not None:
        start, reps = ckpt[0] + 1, ckpt[1]
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
                syn = publish(arm.policy, syn, marker, key, generator(cfg.seed, s, t, "mark"))
                if channel is not None:  # published -> scraped back; the arms share its randomness
                    syn = channel.apply(syn, model, generator(cfg.seed, s, t, "channel"))
                if arm.policy != "none":
                    syn = ACTIONS[arm.policy](syn, marker, key)
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
                _append(rec_path, "".join(r.to_json() + "\n" for r in new).encode())
                save_checkpoint(out_dir / CHECKPOINT_FILE, t, reps)
            if on_generation is not None:
                on_generation(t)
    finally:
        restore()
    bar.close()
    if out_dir is not None and not keep_checkpoint:
        (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return LoopResult(cfg, tuple(records), out_dir, True, fingerprint)
