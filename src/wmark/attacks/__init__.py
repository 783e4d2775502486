"""``wmark.attacks``: image and text attacks, each registered by name with a strength in [0, 1].

    >>> from wmark.attacks import get_attack                         # doctest: +SKIP
    >>> y = get_attack("jpeg")(images, 0.5, torch.Generator().manual_seed(0))   # quality 50
    >>> get_attack("delete", kind="text")(ids, 0.2, gen)                         # 20% of tokens dropped

Image attacks: ``(images [B, C, H, W] in [0, 1], strength, generator) -> [B, C, H', W']`` (see
:mod:`wmark.attacks.image` for every strength mapping). Text attacks: ``(ids [T] | list, rate,
generator, **extra) -> same type`` (:mod:`wmark.attacks.text`). Nothing heavy is imported until used.
"""
from __future__ import annotations

from typing import Any

from wmark._lazy import import_attr, lazy_attributes

_LAZY = {
    "AttackSpec": "wmark.attacks.spec",
    "check_strength": "wmark.attacks.spec",
    "IMAGE_ATTACKS": "wmark.attacks.image",
    "COMBOS": "wmark.attacks.image",
    "TEXT_ATTACKS": "wmark.attacks.text",
    "attack_text": "wmark.attacks.text",
    "pgd_attack": "wmark.attacks.pgd",
    "bit_accuracy": "wmark.attacks.pgd",
    "TinyAE": "wmark.attacks.regen",
    "load_autoencoder": "wmark.attacks.regen",
}

__getattr__, __dir__, __all__ = lazy_attributes(__name__, _LAZY, ("get_attack", "registry"))

_REGISTRIES = {"image": "wmark.attacks.image:IMAGE_ATTACKS", "text": "wmark.attacks.text:TEXT_ATTACKS"}


def registry(kind: str = "image") -> dict[str, Any]:
    """The attack registry for ``kind`` ("image" or "text"): name -> AttackSpec."""
    if kind not in _REGISTRIES:
        raise ValueError(f"unknown attack kind {kind!r}; use one of {', '.join(_REGISTRIES)}")
    return import_attr(_REGISTRIES[kind])


def get_attack(name: str, kind: str = "image") -> Any:
    """The :class:`AttackSpec` registered as ``name`` (callable: ``spec(x, strength, generator, **extra)``)."""
    reg = registry(kind)
    if name not in reg:
        raise ValueError(f"unknown {kind} attack {name!r}; known: {', '.join(reg)}")
    return reg[name]
