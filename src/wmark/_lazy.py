"""Lazy imports: PEP 562 attributes for every package ``__init__`` (so ``import wmark`` stays instant) and
the ``"module:attr"`` loader behind every registry."""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_attributes(package: str, names: dict[str, str], extra: tuple[str, ...] = ()
                    ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: attribute ``name`` is imported from module
    ``names[name]`` on first use and cached (a name equal to its module's last part is the module)."""

    def __getattr__(name: str) -> Any:
        mod = names.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(mod)
        value = module if mod == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    public = sorted([*names, *extra])

    def __dir__() -> list[str]:
        return public

    return __getattr__, __dir__, public


def import_attr(spec: str) -> Any:
    """The object named by ``"package.module:attr"`` (imported on call)."""
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        raise ValueError(f"expected 'module:attr', got {spec!r}")
    return getattr(importlib.import_module(mod), attr)
