"""Loop checkpoint trees: run state as tensors and plain data, so a checkpoint never runs code.

:func:`encode` turns the engine's state (models, sample sets, dicts, tuples) into a tree of torch
tensors, dicts with str keys, lists, str, int, float, bool and None: what
``torch.load(weights_only=True)`` reads back without unpickling any other object. :func:`decode`
rebuilds the state. numpy arrays travel as tensors (dtype and shape kept, values bit-exact).

Objects are dataclasses from :data:`STATE_CLASSES` (a name fixed in code -> ``"module:attr"``) or
added with :func:`register_state_class`; a class name read from a file is only looked up there,
never imported. Fields whose name starts with ``_`` are caches (a live network, a memo): they are
not stored and come back as their defaults. ``__post_init__`` validation runs again on decode.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

import numpy as np

from wmark._lazy import import_attr

#: the tag of encoded nodes (a dict holding it is an encoded node, never user data)
TAG = "__wmark_loop__"

#: class name in checkpoints -> "module:attr" (resolved only when a checkpoint names it)
STATE_CLASSES: dict[str, str] = {
    "Replicate": "wmark.loop.engine:_Replicate",
    "GaussianModel": "wmark.loop.models.gaussian:GaussianModel",
    "KDEModel": "wmark.loop.models.gaussian:KDEModel",
    "CategoricalModel": "wmark.loop.models.categorical:CategoricalModel",
    "GMMModel": "wmark.loop.models.gmm:GMMModel",
    "ImageModel": "wmark.loop.models.image:ImageModel",
    "TextModel": "wmark.loop.models.text:TextModel",
    "TextSample": "wmark.loop.models.text:TextSample",
}

_REGISTERED: dict[str, type] = {}


def register_state_class(cls: type, name: str | None = None) -> None:
    """Allow checkpoints to hold instances of the dataclass ``cls`` (for families added at run time)."""
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"only dataclasses can be stored in loop checkpoints, got {cls!r}")
    name = name or f"{cls.__module__}.{cls.__qualname__}"
    if name in STATE_CLASSES or (name in _REGISTERED and _REGISTERED[name] is not cls):
        raise ValueError(f"checkpoint class name already taken: {name!r}")
    _REGISTERED[name] = cls


def _class_name(cls: type) -> str:
    for name, spec in STATE_CLASSES.items():
        module, attr = spec.split(":")
        if cls.__module__ == module and cls.__qualname__ == attr:
            return name
    for name, known in _REGISTERED.items():
        if known is cls:
            return name
    raise TypeError(f"cannot store a {cls.__module__}.{cls.__qualname__} in a loop checkpoint: make it a "
                    "dataclass and call wmark.loop.state.register_state_class on it")


def _class(name: Any) -> type:
    if not isinstance(name, str):
        raise ValueError(f"class name must be a string, got {type(name).__name__}")
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in STATE_CLASSES:
        raise ValueError(f"class {name!r} is not allowed in loop checkpoints")
    return import_attr(STATE_CLASSES[name])


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "untyped_storage")


def encode(obj: Any) -> Any:
    """The checkpoint tree of ``obj`` (TypeError for anything that cannot be stored)."""
    if obj is None or type(obj) in (bool, int, float, str) or _is_tensor(obj):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):  # before the plain types: np.float64 is a float
        import torch

        arr = np.asarray(obj)
        if arr.dtype.kind not in "biufc" or not arr.dtype.isnative:
            raise TypeError(f"cannot store a numpy array of dtype {arr.dtype} in a loop checkpoint")
        return {TAG: "ndarray", "data": torch.from_numpy(arr.copy(order="C")),
                "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, list):
        return [encode(x) for x in obj]
    if isinstance(obj, tuple):
        return {TAG: "tuple", "items": [encode(x) for x in obj]}
    if isinstance(obj, dict):
        node: dict[str, Any] = {TAG: "dict", "keys": [encode(k) for k in obj],
                                "values": [encode(v) for v in obj.values()]}
        meta = getattr(obj, "_metadata", None)  # torch state dicts: per-module versions
        if meta is not None:
            node["metadata"] = encode(dict(meta))
        return node
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = _class_name(type(obj))
        return {TAG: "object", "class": name,
                "fields": {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                           if not f.name.startswith("_")}}
    raise TypeError(f"cannot store a {type(obj).__module__}.{type(obj).__qualname__} in a loop checkpoint")


def decode(tree: Any) -> Any:
    """The state encoded in ``tree`` (ValueError, one line, for anything :func:`encode` cannot write)."""
    if tree is None or type(tree) in (bool, int, float, str) or _is_tensor(tree):
        return tree
    if isinstance(tree, list):
        return [decode(x) for x in tree]
    if not isinstance(tree, dict) or tree.get(TAG) is None:
        raise ValueError(f"unexpected {type(tree).__name__} in a loop checkpoint")
    kind = tree[TAG]
    if kind == "ndarray":
        data = tree.get("data")
        if not _is_tensor(data):
            raise ValueError("an array node holds no tensor")
        arr = data.numpy()
        return arr[()] if tree.get("scalar") is True else arr
    if kind == "tuple":
        return tuple(decode(_list(tree, "items")))
    if kind == "dict":
        keys, values = decode(_list(tree, "keys")), decode(_list(tree, "values"))
        if len(keys) != len(values):
            raise ValueError("a dict node has as many keys as values")
        try:
            out = dict(zip(keys, values))
        except TypeError:
            raise ValueError("a dict node has unhashable keys") from None
        if "metadata" in tree:
            out = OrderedDict(out)
            out._metadata = decode(tree["metadata"])  # type: ignore[attr-defined]
        return out
    if kind == "object":
        cls = _class(tree.get("class"))
        stored = tree.get("fields")
        if not isinstance(stored, dict):
            raise ValueError(f"an object node of {tree.get('class')} has no fields")
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        unknown = set(stored) - set(fields)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))} of {cls.__name__}")
        values = {k: decode(v) for k, v in stored.items()}
        try:
            obj = cls(**{k: v for k, v in values.items() if fields[k].init})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad state for {cls.__name__}: {exc}") from None
        for k, v in values.items():
            if not fields[k].init:
                object.__setattr__(obj, k, v)
        return obj
    raise ValueError(f"unknown node kind {kind!r} in a loop checkpoint")


def _list(tree: dict, name: str) -> list:
    value = tree.get(name)
    if not isinstance(value, list):
        raise ValueError(f"a {tree[TAG]} node needs a list {name!r}")
    return value
