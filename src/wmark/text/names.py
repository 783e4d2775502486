"""Canonical text scheme names: the names JSON outputs carry and ``--scheme`` accepts.

A canonical name says everything that changes the green lists apart from the numeric parameters:
``kgw-lefthash``, ``kgw-selfhash``, ``kgw-minhash``, ``unigram``, ``gumbel``, ``tournament``. An alias
(``kgw``: the recommended seeding, ``kgw-selfhash``) is accepted wherever a name is, and resolves to
its canonical name: outputs never carry it.
"""
from __future__ import annotations

import inspect
from typing import Any

#: alias -> the canonical name it stands for
ALIASES: dict[str, str] = {"kgw": "kgw-selfhash"}


def canonical_names() -> list[str]:
    """The registry names that name one scheme and seeding, in registry order."""
    from wmark.text.schemes import SCHEMES

    return [n for n in SCHEMES if n not in ALIASES]


def resolve(name: str) -> str:
    """The canonical name of ``name`` (itself, or what an alias stands for); ValueError (one line,
    listing the choices) for an unknown one."""
    name = ALIASES.get(name, name)
    names = canonical_names()
    if name not in names:
        raise ValueError(f"unknown text scheme {name!r}; choose from {', '.join(names)}")
    return name


def _default_seeding(cls: type) -> str | None:
    p = inspect.signature(cls.__init__).parameters.get("seeding")
    return None if p is None or p.default is inspect.Parameter.empty else p.default


def canonical_name(scheme: Any) -> str:
    """The canonical name of a scheme object (e.g. ``kgw-selfhash`` for ``KGW(seeding="selfhash")``);
    ``<name>-<seeding>`` for a seeding the registry has no name for (e.g. ``kgw-ngram``)."""
    from wmark.text.schemes import SCHEMES

    seeding = scheme.seeding.name
    for n in canonical_names():
        cls, fixed = SCHEMES[n]
        if type(scheme) is cls:
            want = fixed.get("seeding", _default_seeding(cls))
            if want is None or want == seeding:
                return n
    return f"{scheme.name}-{seeding}"
