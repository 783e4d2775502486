"""Loop configuration: frozen dataclasses, validated on construction, JSON round trip.

Generation convention: t = 0 is the true distribution; generation t >= 1 draws its training data
(real and/or synthetic from model t-1) and fits model t. So t counts fits.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

#: loop types (see :data:`wmark.loop.engine.LOOPS`)
LOOP_TYPES = ("fully_synthetic", "synthetic_augmentation", "fresh_data")
#: what happens to earlier training data (Gerstgrasser et al. 2024)
SYNTHETIC_MODES = ("replace", "accumulate")
#: watermark policies per arm (see :data:`wmark.loop.engine.POLICIES`)
POLICY_NAMES = ("none", "keep", "strip", "drop")


@dataclass(frozen=True)
class ArmConfig:
    """One arm of a run: a name and its watermark policy (none / keep / strip / drop)."""

    name: str
    policy: str = "none"

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("arm name must be a non-empty string")
        if self.policy not in POLICY_NAMES:
            raise ValueError(f"unknown policy {self.policy!r} for arm {self.name!r} "
                             f"(known: {', '.join(POLICY_NAMES)})")

    @classmethod
    def parse(cls, item: Any) -> "ArmConfig":
        """From ``"keep"`` (name = policy), ``{"name": .., "policy": ..}`` or an ArmConfig."""
        if isinstance(item, ArmConfig):
            return item
        if isinstance(item, str):
            return cls(item, item)
        if isinstance(item, Mapping):
            unknown = set(item) - {"name", "policy"}
            if unknown:
                raise ValueError(f"unknown arm key(s): {', '.join(sorted(unknown))}")
            policy = item.get("policy", "none")
            return cls(str(item.get("name", policy)), policy)
        raise ValueError(f"an arm must be a policy name or {{'name', 'policy'}}, got {item!r}")


def _freeze(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


@dataclass(frozen=True)
class LoopConfig:
    """Everything a loop run needs; ``to_dict`` / ``from_dict`` give its JSON form.

    Sizes: ``n_init`` real samples train generation 1 (default ``n_real``); afterwards each
    generation adds ``n_syn`` synthetic samples (default ``n_real``) and, for ``fresh_data``,
    ``n_real`` new real ones (``synthetic_augmentation`` keeps its generation-1 real set).
    ``lam`` is the sampling bias of synthetic draws; ``bias_real`` also applies it to real draws
    (the theory convention in which the truth is model 0). ``threads``: torch CPU threads while the
    loop runs (None: torch's setting). A run is bit-identical to a rerun at the same thread count;
    another count changes float reductions in the last bits, which a self-consuming loop amplifies
    (demo-text at 1 vs 2 threads: sampled tokens differ from generation 4, metrics within their
    error bars by generation 5).

    ``key`` (used only with a ``marker``): None (default) draws a fresh random key for the run, kept
    in the run folder as ``key.hex`` (mode 0600) so that a resume marks alike; ``"demo"`` is the
    public demo key (reproducible examples and presets); anything else is a key file path. Only the
    key's fingerprint is ever recorded.

    ``channel``: registry attacks ``[{"attack": NAME, "strength": S}, ...]`` applied, in order, to
    every generation's published synthetic samples before they are re-ingested (the arms' detect /
    strip / drop then act on what came through); see :mod:`wmark.loop.channel`. Empty (default):
    nothing applied, and ``to_dict`` omits it (configs and runs as without the option).
    """

    family: str = "gaussian"
    model: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    loop: str = "fully_synthetic"
    synthetic: str = "replace"
    generations: int = 10
    n_real: int = 100
    n_syn: int | None = None
    n_init: int | None = None
    lam: float = 1.0
    bias_real: bool = False
    arms: tuple[ArmConfig, ...] = (ArmConfig("none"),)
    marker: str | None = None
    marker_params: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    seeds: int = 4
    seed: int = 0
    eval: Mapping[str, Any] = field(default_factory=dict)
    name: str = "custom"
    threads: int | None = None
    channel: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for name in ("model", "data", "marker_params", "eval"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ValueError(f"config '{name}' must be a JSON object, got {type(value).__name__}")
            object.__setattr__(self, name, _freeze(value))
        arms = self.arms if isinstance(self.arms, (list, tuple)) else None
        if not arms:
            raise ValueError("config 'arms' must be a non-empty list")
        object.__setattr__(self, "arms", tuple(ArmConfig.parse(a) for a in arms))
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if self.loop not in LOOP_TYPES:
            raise ValueError(f"unknown loop type {self.loop!r} (known: {', '.join(LOOP_TYPES)})")
        if self.synthetic not in SYNTHETIC_MODES:
            raise ValueError(f"'synthetic' must be one of {', '.join(SYNTHETIC_MODES)}, got {self.synthetic!r}")
        for name in ("generations", "n_real", "seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"config '{name}' must be a positive integer, got {value!r}")
        for name in ("n_syn", "n_init"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"config '{name}' must be a positive integer or null, got {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"config 'threads' must be a positive integer or null, got {self.threads!r}")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ValueError(f"config 'key' must be null (a fresh key), \"demo\" or a key file path, got {self.key!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"config 'seed' must be a non-negative integer, got {self.seed!r}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not self.lam > 0:
            raise ValueError(f"config 'lam' must be a positive number, got {self.lam!r}")
        object.__setattr__(self, "lam", float(self.lam))
        if not isinstance(self.bias_real, bool):
            raise ValueError(f"config 'bias_real' must be true or false, got {self.bias_real!r}")
        from wmark.loop.models import family_names  # light: no model module imported

        if self.family not in family_names():
            raise ValueError(f"unknown model family {self.family!r} (known: {', '.join(family_names())})")
        marked = [a.name for a in self.arms if a.policy != "none"]
        if self.marker is None and marked:
            raise ValueError(f"arm(s) {', '.join(marked)} need a 'marker' (e.g. \"toy-dither\")")
        if self.marker is not None:
            from wmark.loop.markers import MARKERS

            if self.marker not in MARKERS:
                raise ValueError(f"unknown marker {self.marker!r} (known: {', '.join(sorted(MARKERS))})")
        from wmark.loop.channel import parse_channel  # light: the attack registry only for a non-empty one

        object.__setattr__(self, "channel", parse_channel(self.channel, self.family))

    # -- derived sizes ------------------------------------------------------------------------------
    @property
    def n_syn_(self) -> int:
        """Synthetic samples per generation (t >= 2)."""
        return self.n_syn if self.n_syn is not None else self.n_real

    @property
    def n_init_(self) -> int:
        """Real samples that train generation 1."""
        return self.n_init if self.n_init is not None else self.n_real

    # -- JSON ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (arms as ``{"name", "policy"}``; ``channel`` only when not empty)."""
        out = asdict(self)
        out["arms"] = [asdict(a) for a in self.arms]
        out["channel"] = [dict(step) for step in self.channel]
        if not out["channel"]:
            del out["channel"]  # a config without a channel reads and writes as before the option
        for name in ("model", "data", "marker_params", "eval"):
            out[name] = dict(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LoopConfig":
        """Validated config from a dict; unknown keys are an error (``key_fingerprint`` is ignored)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a loop config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        # a run folder's config.json records the key's fingerprint beside the config: not an input
        d = {k: v for k, v in d.items() if k != "key_fingerprint"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config key(s): {', '.join(sorted(unknown))}")
        return cls(**dict(d))

    @classmethod
    def from_json(cls, path: str | Path) -> "LoopConfig":
        """Config from a JSON file (may name a ``"preset"`` to start from and override keys)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {p} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        if isinstance(d, Mapping) and "preset" in d:
            from wmark.loop.presets import get_preset

            base = get_preset(str(d["preset"])).to_dict()
            base.update({k: v for k, v in d.items() if k != "preset"})
            d = base
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> "LoopConfig":
        """A copy with ``changes`` (validated)."""
        d = self.to_dict()
        d.update(changes)
        return LoopConfig.from_dict(d)
