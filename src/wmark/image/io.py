"""Image I/O: PIL / numpy / tensor <-> float tensors in [0, 1], keeping what must come back unchanged.

Every input becomes a list of ``[1, C, H, W]`` float32 tensors (C = 1 gray or 3 colour) plus an
:class:`ImageMeta` that restores the original type, dtype, mode and alpha channel afterwards.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

MIN_SIDE = 64

@dataclass(frozen=True)
class ImageMeta:
    """How to turn a processed tensor back into what the caller gave."""

    kind: str  # "pil" | "numpy" | "tensor"
    mode: str | None = None  # PIL mode
    dtype: Any = None  # numpy / torch dtype of the input
    scale: float = 1.0  # maximum value of the integer dtype (255, 65535) or 1.0 for floats
    alpha: Any = None  # [1, 1, H, W] float alpha channel kept aside
    layout: str = "CHW"  # numpy: "HW" | "HWC"; tensor: "CHW" | "BCHW"


def _check_size(h: int, w: int) -> None:
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"image is {w}x{h} px; at least {MIN_SIDE} px per side is needed")


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[1, C, H, W] -> (colour/gray part, alpha or None)."""
    c = x.shape[1]
    if c == 4:
        return x[:, :3], x[:, 3:]
    if c == 2:
        return x[:, :1], x[:, 1:]
    if c in (1, 3):
        return x, None
    raise ValueError(f"expected 1, 2, 3 or 4 channels, got {c}")


def from_pil(img) -> tuple[torch.Tensor, ImageMeta]:
    """PIL image -> ([1, C, H, W] float, meta). Palette / CMYK images are converted to RGB(A)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0
        arr = arr[None]
    else:
        if mode not in ("L", "LA", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB")
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    x = torch.from_numpy(arr / scale).float()[None]
    _check_size(*x.shape[-2:])
    x, alpha = _split(x)
    return x, ImageMeta("pil", mode=img.mode, scale=scale, alpha=alpha)


def to_pil(x: torch.Tensor, meta: ImageMeta):
    """[1, C, H, W] float -> PIL image in the original mode."""
    from PIL import Image

    if meta.alpha is not None:
        x = torch.cat([x, meta.alpha], 1)
    arr = x[0].clamp(0, 1).double().numpy() * meta.scale
    arr = np.rint(arr)
    if meta.scale > 255:
        if meta.mode == "I":
            return Image.fromarray(arr[0].astype(np.int32))
        return Image.fromarray(arr[0].astype(np.uint16))
    a = arr.astype(np.uint8)
    if a.shape[0] == 1:
        return Image.fromarray(a[0], mode="L")
    return Image.fromarray(a.transpose(1, 2, 0), mode={2: "LA", 3: "RGB", 4: "RGBA"}[a.shape[0]])


def from_numpy(arr: np.ndarray) -> tuple[torch.Tensor, ImageMeta]:
    """numpy [H, W] or [H, W, C] (uint8, uint16, or float in [0, 1]) -> ([1, C, H, W], meta)."""
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(f"numpy image must be [H, W] or [H, W, C], got shape {arr.shape}")
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        scale = 1.0
    else:
        raise ValueError(f"numpy image dtype must be uint8, uint16 or float, got {arr.dtype}")
    layout = "HW" if arr.ndim == 2 else "HWC"
    a = arr.astype(np.float64) / scale
    a = a[None] if arr.ndim == 2 else a.transpose(2, 0, 1)
    x = torch.from_numpy(a).float()[None]
    _check_size(*x.shape[-2:])
    x, alpha = _split(x)
    return x, ImageMeta("numpy", dtype=arr.dtype, scale=scale, alpha=alpha, layout=layout)


def to_numpy(x: torch.Tensor, meta: ImageMeta) -> np.ndarray:
    """[1, C, H, W] -> numpy in the original dtype and layout."""
    if meta.alpha is not None:
        x = torch.cat([x, meta.alpha], 1)
    a = x[0].clamp(0, 1).double().numpy()
    if meta.scale > 1:
        a = np.rint(a * meta.scale)
    a = a.astype(meta.dtype)
    return a[0] if meta.layout == "HW" else a.transpose(1, 2, 0)


def from_tensor(t: torch.Tensor) -> tuple[list[torch.Tensor], ImageMeta]:
    """Float tensor [C, H, W] or [B, C, H, W] in [0, 1] -> list of [1, C, H, W] and meta."""
    if not torch.is_floating_point(t):
        raise ValueError("tensor images must be float in [0, 1]")
    layout = "CHW" if t.dim() == 3 else "BCHW"
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4:
        raise ValueError(f"tensor image must be [C, H, W] or [B, C, H, W], got {tuple(t.shape)}")
    _check_size(*t.shape[-2:])
    x, alpha = _split(t.float())
    return [x], ImageMeta("tensor", dtype=t.dtype, alpha=alpha, layout=layout)


def to_tensor(x: torch.Tensor, meta: ImageMeta) -> torch.Tensor:
    """Back to the caller's tensor layout and dtype."""
    if meta.alpha is not None:
        x = torch.cat([x, meta.alpha.to(x)], 1)
    x = x.to(meta.dtype)
    return x[0] if meta.layout == "CHW" else x


def load(path: str | os.PathLike):
    """Open an image file fully (PIL), with one clear error for anything that is not an image."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory")
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: empty file (0 bytes), not an image")
    try:
        with Image.open(p) as im:
            im.load()
            img = im.copy()
    except UnidentifiedImageError:
        raise ValueError(f"{p}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{p}: cannot read image ({exc})") from None
    return img


def to_internal(images) -> tuple[list[torch.Tensor], list[ImageMeta], bool]:
    """Any supported input -> (list of [1, C, H, W] tensors, metas, was_single).

    A 4-D tensor batch stays one [B, C, H, W] tensor in the list (same size); lists may mix types."""
    from PIL import Image

    single = True
    items = images
    if isinstance(images, (list, tuple)):
        single, items = False, list(images)
    elif isinstance(images, torch.Tensor) and images.dim() == 4:
        single = False
        items = [images]
    else:
        items = [images]
    xs: list[torch.Tensor] = []
    metas: list[ImageMeta] = []
    for it in items:
        if isinstance(it, Image.Image):
            x, m = from_pil(it)
            xs.append(x), metas.append(m)
        elif isinstance(it, np.ndarray):
            x, m = from_numpy(it)
            xs.append(x), metas.append(m)
        elif isinstance(it, torch.Tensor):
            t, m = from_tensor(it)
            xs.extend(t), metas.append(m)
        elif isinstance(it, (str, os.PathLike)):
            x, m = from_pil(load(it))
            xs.append(x), metas.append(m)
        else:
            raise ValueError(f"unsupported image type {type(it).__name__} (PIL image, numpy array or tensor)")
    return xs, metas, single


def from_internal(xs: list[torch.Tensor], metas: list[ImageMeta]):
    """Inverse of :func:`to_internal` for each item (list)."""
    out = []
    for x, m in zip(xs, metas):
        if m.kind == "pil":
            out.append(to_pil(x, m))
        elif m.kind == "numpy":
            out.append(to_numpy(x, m))
        else:
            out.append(to_tensor(x, m))
    return out
