"""The loop's *channel*: registry attacks applied to a generation's published samples before they
are re-ingested (the path a scraped sample travels: published, resized, re-encoded, scraped back).

A channel is a list of steps ``{"attack": NAME, "strength": S}`` applied in order; NAME is an attack
of :mod:`wmark.attacks` (image attacks for the ``image`` family, text attacks for ``text``) and S
its registry strength in [0, 1] (``wmark attack list`` gives each mapping, e.g. ``resize`` 1/3 =
scale 0.75 per side, ``jpeg`` 0.1875 = quality 75). The engine applies it to every arm's synthetic
samples after publication (marked for keep / strip / drop, unmarked for none) and before the arm's
policy acts: detect and strip see what came through the channel, as a data team would (and
``train_marked`` is measured on it). What a model inherited (``inherited``, ``bit_acc`` ...) is
still measured on its own samples as drawn, not through the channel.

Image steps: ``[n, 1, S, S]`` in, same out; an attack that changes the size (``crop_*``) is
followed by a bilinear (antialiased) resize back to S x S, as a pipeline re-ingesting scraped images
at its training size would. Text steps: length-preserving edits only (``substitute``,
``lm_substitute``: the text family's samples have a fixed length); ``substitute`` uses the
publishing model's vocabulary, ``lm_substitute`` the registry's default (the built-in LM).
Attacks needing inputs a config cannot give (``pgd``: a decoder and bits; ``copy_paste``: human
text) or images the family does not make (``regen_ae``: RGB) are refused at config time.

Randomness (``crop_random``'s offsets, ``noise``, ``substitute``'s coins ...) comes from the
engine's ``channel`` stream of (seed, replicate, generation): shared by the arms, reproducible.
The config's ``channel`` empty (the default) applies nothing: runs are bit-identical to a loop
without one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

#: family name -> attack registry kind
CHANNEL_KINDS: dict[str, str] = {"image": "image", "text": "text"}
#: text attacks a channel may use (they keep a sample's length)
TEXT_CHANNEL_ATTACKS = ("substitute", "lm_substitute")
#: image attacks refused in a channel, with the reason
_IMAGE_REFUSED = {"regen_ae": "it encodes RGB images and the image family's digits are grey"}
#: extra inputs the channel supplies itself, per kind
_SUPPLIED = {"image": (), "text": ("vocab_size",)}


def parse_channel(items: Any, family: str) -> tuple[dict[str, Any], ...]:
    """The validated channel ``({"attack": str, "strength": float}, ...)`` of a config whose model
    family is ``family``; ValueError (one line) naming the bad step otherwise."""
    if items is None:
        return ()
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, (list, tuple)):
        raise ValueError("config 'channel' must be a list of {\"attack\": NAME, \"strength\": S} steps, "
                         f"got {type(items).__name__}")
    if not items:
        return ()
    kind = CHANNEL_KINDS.get(family)
    if kind is None:
        raise ValueError(f"config 'channel' needs the image or text family (registry attacks act on images "
                         f"or token ids), not {family!r}")
    from wmark.attacks import registry

    reg = registry(kind)
    out = []
    for i, item in enumerate(items):
        where = f"channel step {i}"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be {{\"attack\": NAME, \"strength\": S}}, got {item!r}")
        unknown = set(item) - {"attack", "strength"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                             "(a step is {\"attack\": NAME, \"strength\": S})")
        name = item.get("attack")
        if not isinstance(name, str) or name not in reg:
            raise ValueError(f"{where}: unknown {kind} attack {name!r} (known: {', '.join(reg)})")
        where = f"{where} ({name})"
        if "strength" not in item:
            raise ValueError(f"{where}: needs a 'strength' in [0, 1]")
        s = item["strength"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0.0 <= s <= 1.0:
            raise ValueError(f"{where}: strength must be a number in [0, 1], got {s!r}")
        if kind == "text" and name not in TEXT_CHANNEL_ATTACKS:
            raise ValueError(f"{where}: a text channel takes only length-preserving attacks "
                             f"({', '.join(TEXT_CHANNEL_ATTACKS)}); the text family's samples have a fixed length")
        if name in _IMAGE_REFUSED and kind == "image":
            raise ValueError(f"{where}: not available in a loop channel: {_IMAGE_REFUSED[name]}")
        missing = [n for n in reg[name].needs if n not in _SUPPLIED[kind]]
        if missing:
            raise ValueError(f"{where}: needs {', '.join(missing)}, which a loop config cannot give")
        out.append({"attack": name, "strength": float(s)})
    return tuple(out)


def describe(channel: Sequence[Mapping[str, Any]], family: str) -> str:
    """One line: ``resize 0.333 (scale 0.75) -> jpeg 0.188 (quality 75)`` (empty: ``none``)."""
    if not channel:
        return "none"
    from wmark.attacks import get_attack

    kind = CHANNEL_KINDS[family]
    parts = []
    for step in channel:
        spec = get_attack(step["attack"], kind)
        v = spec.param_value(step["strength"])
        v = f"{v:.4g}" if isinstance(v, float) else v
        parts.append(f"{spec.name} {step['strength']:.4g} ({spec.param} {v})")
    return " -> ".join(parts)


@dataclass(frozen=True)
class Channel:
    """A built channel: ``apply(samples, model, rng)`` -> what a scraper gets back (same count)."""

    kind: str
    steps: tuple[tuple[Any, float], ...]  # (AttackSpec, strength)

    @classmethod
    def build(cls, channel: Sequence[Mapping[str, Any]], family: str) -> "Channel | None":
        """The channel of a validated config (None for an empty one: nothing to apply)."""
        if not channel:
            return None
        from wmark.attacks import get_attack

        kind = CHANNEL_KINDS[family]
        return cls(kind, tuple((get_attack(s["attack"], kind), float(s["strength"])) for s in channel))

    def apply(self, samples: Any, model: Any, rng: np.random.Generator) -> Any:
        """``samples`` after every step, in order; randomness from ``rng`` (one torch generator)."""
        from wmark.loop.engine import torch_generator

        g = torch_generator(rng)
        if self.kind == "image":
            return self._apply_images(samples, g)
        return self._apply_text(samples, model, g)

    def _apply_images(self, x: Any, g: Any) -> Any:
        import torch
        import torch.nn.functional as F

        if x.shape[0] == 0:
            return x
        h, w = x.shape[-2:]
        y = x
        for spec, s in self.steps:
            y = spec(y, s, g)
            if tuple(y.shape[-2:]) != (h, w):  # re-ingested at the training size
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
                y = y.clamp(0, 1)
        return y.to(device=x.device, dtype=x.dtype).contiguous() if isinstance(y, torch.Tensor) else y

    def _apply_text(self, samples: Sequence[Any], model: Any, g: Any) -> list[Any]:
        extra_all = {"vocab_size": int(model.vocab_size)}
        out = []
        for smp in samples:
            ids = smp.ids
            for spec, s in self.steps:
                ids = spec(ids, s, g, **{n: extra_all[n] for n in spec.needs})
            out.append(replace(smp, ids=ids.long().clone()))
        return out
