"""Generative-model families for the loop, by name (lazy: nothing heavy is imported here).

``FAMILIES`` maps a name to ``"module:attribute"`` of a :class:`~wmark.loop.models.base.Family`;
image and text families add one line each. :func:`register_family` adds one at run time (its model
classes then go to :func:`wmark.loop.state.register_state_class`, so checkpoints can hold them).
"""
from __future__ import annotations

from wmark._lazy import import_attr
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from wmark.loop.models.base import Family

#: family name -> "module:attribute" (resolved on first use)
FAMILIES: dict[str, str] = {
    "gaussian": "wmark.loop.models.gaussian:FAMILY",
    "categorical": "wmark.loop.models.categorical:FAMILY",
    "gmm": "wmark.loop.models.gmm:FAMILY",
    "text": "wmark.loop.models.text:FAMILY",
    "image": "wmark.loop.models.image:FAMILY",
}

_LOADED: dict[str, "Family"] = {}


def register_family(family: "Family", *, replace: bool = False) -> None:
    """Add a family object to the registry (``replace`` to overwrite an existing name)."""
    if not replace and (family.name in FAMILIES or family.name in _LOADED):
        raise ValueError(f"model family already registered: {family.name!r}")
    _LOADED[family.name] = family


def family_names() -> list[str]:
    """All registered family names."""
    return sorted(set(FAMILIES) | set(_LOADED))


def get_family(name: str) -> "Family":
    """The family called ``name``; ValueError listing the known ones otherwise."""
    if name in _LOADED:
        return _LOADED[name]
    spec = FAMILIES.get(name)
    if spec is None:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(family_names())})")
    fam = import_attr(spec)
    _LOADED[name] = fam
    return fam
