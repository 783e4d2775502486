"""Image I/O: files, PIL / numpy / tensor <-> float tensors in [0, 1], keeping what must come back unchanged.

Every input becomes a list of ``[1, C, H, W]`` float32 tensors (C = 1 gray or 3 colour) plus an
:class:`ImageMeta` that restores the original type, dtype, mode, alpha channel and metadata afterwards.

What is accepted (anything else is a one-line ``ValueError`` naming the reason; nothing is silently
degraded):

- files (:func:`load`, or :func:`load_bytes` for bytes in memory; PNG, JPEG, TIFF, WebP, BMP, PPM / PGM, GIF): 8-bit grey / colour with or
  without alpha; 16-bit grey (PIL ``I;16``); 16-bit colour PNG and TIFF (an :class:`Image16`: PIL
  would cut them to 8 bits); palette images (become RGB / RGBA: pixel values unchanged); 32-bit
  integer grey whose values fit in 16 bits; the primary image of a multi-picture JPEG (MPO).
  Refused: 1-bit, float, integers beyond 0..65535, CMYK / YCbCr / LAB / HSV, premultiplied alpha,
  animations and multi-page TIFFs, interlaced 16-bit PNG. EXIF orientation is applied on read
  (:func:`PIL.ImageOps.exif_transpose` semantics) and reset to 1 in the carried EXIF; the ICC
  profile, EXIF and DPI travel to the output (:func:`png_bytes`; TIFF: ICC and DPI).
- limits: at least ``MIN_SIDE`` px per side; at most ``MAX_PIXELS`` pixels (width x height; or
  ``$WMARK_MAX_PIXELS``; :func:`pixel_limit`), checked from the file header before anything is decoded.
- arrays and tensors: numpy [H, W] / [H, W, C] uint8, uint16 or float; tensors [C, H, W] /
  [B, C, H, W] float; C in 1..4 (2 and 4: the last channel is alpha); floats finite and in [0, 1].
"""
from __future__ import annotations

import os
import struct
import threading
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL import Image as PILImage

MIN_SIDE = 64
MAX_PIXELS = 128_000_000  # embed + detect: about 2.8 GB peak at 100 MP (bench/image_detect_cost.py); strip: STRIP_MAX_PIXELS
MAX_PIXELS_ENV = "WMARK_MAX_PIXELS"
FLOAT_TOL = 1e-6  # float pixels this far outside [0, 1] are accepted (and clamped): rounding, not a range error
CARRIED = ("icc_profile", "exif", "dpi")  # metadata kept from input to output
ORIENTATION = 0x0112  # EXIF / TIFF tag
#: the file formats :func:`load` opens (PIL names; JPEG includes MPO). No others are tried, so no
#: plugin that runs an external program (EPS: Ghostscript) or parses a rarely used format sees the file.
FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "PPM", "GIF")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N")
_PIL_LOCK = threading.Lock()  # guards the PIL globals changed while one file is read

_REFUSED_MODES = {
    "1": "1-bit (bilevel) image: a mark needs grey levels; convert it to L (8-bit grey) first",
    "F": "32-bit float image (mode F): convert it to 16-bit integers first",
    "CMYK": "CMYK image: convert it to RGB with colour management first (a plain conversion shifts colours)",
    "YCbCr": "YCbCr image: convert it to RGB first",
    "LAB": "LAB image: convert it to RGB first",
    "HSV": "HSV image: convert it to RGB first",
    "RGBa": "premultiplied alpha (mode RGBa): convert it to RGBA first",
    "La": "premultiplied alpha (mode La): convert it to LA first",
    "I;16S": "signed 16-bit image (mode I;16S): convert it to unsigned 16-bit first",
}


class ImageError(ValueError):
    """An input that cannot be marked faithfully, exceeds a limit or cannot be read (one-line message)."""


@dataclass(frozen=True, eq=False)
class Image16:
    """A 16-bit colour image, which PIL cannot hold: ``pixels`` uint16 [H, W, C] (C = 2 grey + alpha,
    3 RGB, 4 RGBA; 1 grey is allowed too) and ``info``, the metadata carried to the output
    (``icc_profile`` bytes, ``exif`` bytes, ``dpi`` (x, y)), as in PIL's ``img.info``.

    :func:`load` returns one for 16-bit colour PNG / TIFF files; ``embed`` / ``strip`` return the same
    type; :func:`png_bytes` writes it as a 16-bit PNG."""

    pixels: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = self.pixels
        if not isinstance(a, np.ndarray) or a.dtype != np.uint16 or a.ndim != 3 or not 1 <= a.shape[2] <= 4:
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"Image16 pixels must be uint16 [H, W, C] with C in 1..4, got {got}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL's ``Image.size``."""
        return self.pixels.shape[1], self.pixels.shape[0]

    @property
    def mode(self) -> str:
        return {1: "L;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[self.pixels.shape[2]]


@dataclass(frozen=True)
class ImageMeta:
    """How to turn a processed tensor back into what the caller gave."""

    kind: str  # "pil" | "numpy" | "tensor" | "image16"
    mode: str | None = None  # PIL mode of the input ("P": a palette image, given back as RGB / RGBA)
    dtype: Any = None  # numpy / torch dtype of the input
    scale: float = 1.0  # maximum value of the integer dtype (255, 65535) or 1.0 for floats
    alpha: Any = None  # [1, 1, H, W] float alpha channel kept aside
    layout: str = "CHW"  # numpy: "HW" | "HWC"; tensor: "CHW" | "BCHW"
    info: dict = field(default_factory=dict)  # carried metadata (CARRIED keys) for PIL / Image16 outputs


# -- limits and checks -------------------------------------------------------------------------
def pixel_limit(limit: int | None = None) -> int:
    """The pixel limit (width x height) in force: ``limit`` if given, else ``$WMARK_MAX_PIXELS``, else
    ``MAX_PIXELS``."""
    if limit is None:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not env:
            return MAX_PIXELS
        try:
            limit = int(float(env.replace("_", "")))
        except ValueError:
            raise ValueError(f"{MAX_PIXELS_ENV} must be a number of pixels (e.g. 200000000), got {env!r}") from None
    if limit <= 0:
        raise ValueError(f"the pixel limit must be positive, got {limit}")
    return int(limit)


def _mp(n: float) -> str:
    return f"{n / 1e6:.4g}"


def _check_size(h: int, w: int, limit: int | None = None) -> None:
    """Refuse images under ``MIN_SIDE`` px per side or over the pixel limit."""
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"image is {w}x{h} px; at least {MIN_SIDE} px per side is needed")
    lim = pixel_limit(limit)
    if h * w > lim:
        raise ImageError(f"{w}x{h} px = {_mp(h * w)} MP exceeds the limit of {_mp(lim)} MP "
                         f"(set {MAX_PIXELS_ENV} to raise it)")


def _check_floats(lo: float, hi: float, n_bad: int) -> None:
    """Float pixels must be finite and within [0, 1] (``FLOAT_TOL`` aside)."""
    if n_bad:
        raise ImageError(f"image contains {n_bad} NaN or inf value(s); pixels must be finite floats in [0, 1]")
    if lo >= -FLOAT_TOL and hi <= 1 + FLOAT_TOL:
        return
    if lo >= -1 - FLOAT_TOL and hi <= 1 + FLOAT_TOL:
        hint = "map -1..1 with (x + 1) / 2?"
    elif lo >= -FLOAT_TOL and hi <= 255 + FLOAT_TOL:
        hint = "divide by 255?"
    elif lo >= -FLOAT_TOL and hi <= 65535 + FLOAT_TOL:
        hint = "divide by 65535?"
    else:
        hint = "rescale them to [0, 1]"
    raise ImageError(f"floats must be in [0, 1]; got range [{lo:.4g}, {hi:.4g}] — {hint}")


CONVERT_ELEMENTS = 1 << 20  # pixels x channels converted at a time: float64 temporaries stay small


def _to_float(arr: np.ndarray, scale: float) -> torch.Tensor:
    """numpy [H, W] or [H, W, C] -> float32 [1, C, H, W] = arr / scale, divided in float64 by row
    chunks (``CONVERT_ELEMENTS``): the values of one float64 division, without a full-size float64 copy."""
    hwc = arr[..., None] if arr.ndim == 2 else arr
    h, w, c = hwc.shape
    out = np.empty((c, h, w), np.float32)
    rows = max(1, CONVERT_ELEMENTS // max(1, w * c))
    for r in range(0, h, rows):
        out[:, r:r + rows] = (hwc[r:r + rows].astype(np.float64) / scale).transpose(2, 0, 1)
    return torch.from_numpy(out)[None]


def _to_pixels(x: torch.Tensor, alpha: torch.Tensor | None, scale: float, dtype: Any) -> np.ndarray:
    """[1, C, H, W] float (and alpha [1, 1, H, W] appended) -> numpy [H, W, C'] of ``dtype``:
    rint(clamp(x, 0, 1) x scale) (scale 1: no rounding), in row chunks as :func:`_to_float`."""
    parts = [x[0]] if alpha is None else [x[0], alpha[0].to(x)]
    c, (h, w) = sum(p.shape[0] for p in parts), x.shape[-2:]
    out = np.empty((h, w, c), dtype)
    rows = max(1, CONVERT_ELEMENTS // max(1, w * c))
    for r in range(0, h, rows):
        a = torch.cat([p[:, r:r + rows] for p in parts]).clamp(0, 1).double().numpy()
        if scale > 1:
            a = np.rint(a * scale)
        out[r:r + rows] = a.astype(dtype).transpose(1, 2, 0)
    return out


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[1, C, H, W] -> (colour/gray part, alpha or None)."""
    c = x.shape[1]
    if c == 4:
        return x[:, :3], x[:, 3:]
    if c == 2:
        return x[:, :1], x[:, 1:]
    if c in (1, 3):
        return x, None
    raise ImageError(f"expected 1, 2, 3 or 4 channels, got {c}")


# -- orientation and metadata -----------------------------------------------------------------
def orient_array(a: np.ndarray, orientation: int) -> np.ndarray:
    """[H, W, ...] stored with EXIF ``orientation`` (1..8) -> upright, as :func:`PIL.ImageOps.exif_transpose`."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def _exif_upright(exif: bytes | None) -> bytes | None:
    """EXIF bytes with the orientation tag set to 1 (unchanged where it is absent or already 1)."""
    if not exif:
        return exif
    from PIL import Image

    ex = Image.Exif()
    ex.load(exif)
    if ex.get(ORIENTATION, 1) == 1:
        return exif
    ex[ORIENTATION] = 1
    return ex.tobytes() if exif.startswith(b"Exif\x00\x00") else ex.tobytes()[6:]


def _carried(info: dict) -> dict:
    """The CARRIED entries of a PIL-style info dict that hold something."""
    out: dict = {}
    for k in CARRIED:
        v = info.get(k)
        if k == "dpi":
            try:
                if v is not None and len(v) == 2 and min(float(v[0]), float(v[1])) > 0:
                    out[k] = (float(v[0]), float(v[1]))
            except (TypeError, ValueError):
                pass
        elif isinstance(v, (bytes, bytearray)) and v:
            out[k] = bytes(v)
    return out


def _upright_pil(img: "PILImage.Image", orientation: int | None = None) -> "PILImage.Image":
    """``img`` with its EXIF ``orientation`` (read from ``img`` when None) applied, as
    :func:`PIL.ImageOps.exif_transpose` does, and the orientation in ``info["exif"]`` set to 1."""
    from PIL import Image

    o = img.getexif().get(ORIENTATION, 1) if orientation is None else orientation
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}.get(o)
    if method is None:
        return img
    out = img.transpose(method)  # keeps a copy of img.info
    if out.info.get("exif"):
        out.info["exif"] = _exif_upright(out.info["exif"])
    return out


def _out_of_16bit(lo: int, hi: int) -> str:
    return (f"integer (mode I) values in [{lo}, {hi}] are outside the unsigned 16-bit range [0, 65535]; "
            "rescale them to 16 bits first")


def _refusal(img: "PILImage.Image") -> str | None:
    """Why a PIL image cannot be marked faithfully (None if it can; mode ``I`` is range-checked later)."""
    mode = img.mode
    if mode in _REFUSED_MODES:
        return _REFUSED_MODES[mode]
    n = getattr(img, "n_frames", 1)
    if n > 1 and img.format != "MPO":  # MPO: a JPEG's primary image plus previews / gain maps
        return (f"{n} frames (animated or multi-page {img.format}); only single images can be marked — "
                "extract the frames first")
    if mode in ("RGB", "RGBA", "LA") and any(";16" in str(t[-1]) for t in getattr(img, "tile", None) or ()):
        return ("16-bit colour file opened with PIL, which cuts it to 8 bits: pass the path "
                "(or wmark.image.io.load(path)) instead")
    if mode in _GREY16 + ("I",) and "transparency" in img.info:
        return "16-bit grey with a transparent colour (tRNS) is not supported; add an alpha channel instead"
    if mode not in ("L", "LA", "RGB", "RGBA", "P", "PA", "RGBX", "I") + _GREY16:
        return f"unsupported image mode {mode}"
    return None


# -- PIL / numpy / tensor / Image16 <-> internal ----------------------------------------------
def from_pil(img: "PILImage.Image") -> tuple[torch.Tensor, ImageMeta]:
    """PIL image -> ([1, C, H, W] float, meta). EXIF orientation is applied (the output is upright);
    palette / RGBX images become RGB(A) and a transparent colour (tRNS) becomes an alpha channel
    (pixel values unchanged); refused modes raise :class:`ImageError`."""
    reason = _refusal(img)
    if reason:
        raise ImageError(reason)
    src_mode = img.mode
    img = _upright_pil(img)
    mode = img.mode
    if mode in _GREY16 or mode == "I":
        arr = np.asarray(img)
        if mode == "I" and arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise ImageError(_out_of_16bit(int(arr.min()), int(arr.max())))
        scale = 65535.0
    else:
        if mode not in ("L", "LA", "RGB", "RGBA") or "transparency" in img.info:
            has_alpha = "A" in mode or "transparency" in img.info
            img = img.convert(("LA" if has_alpha else "L") if mode == "L" else ("RGBA" if has_alpha else "RGB"))
        arr = np.asarray(img)
        scale = 255.0
    _check_size(*arr.shape[:2])
    x, alpha = _split(_to_float(arr, scale))
    return x, ImageMeta("pil", mode=src_mode, scale=scale, alpha=alpha, info=_carried(img.info))


def to_pil(x: torch.Tensor, meta: ImageMeta) -> "PILImage.Image":
    """[1, C, H, W] float -> PIL image in the original mode (palette inputs: RGB / RGBA), with the
    carried metadata in ``img.info``."""
    from PIL import Image

    if meta.scale > 255:
        img = Image.fromarray(_to_pixels(x, meta.alpha, meta.scale, np.int32 if meta.mode == "I" else np.uint16)[..., 0])
    else:
        a = _to_pixels(x, meta.alpha, meta.scale, np.uint8)
        img = Image.fromarray(a[..., 0], mode="L") if a.shape[2] == 1 else \
            Image.fromarray(a, mode={2: "LA", 3: "RGB", 4: "RGBA"}[a.shape[2]])
    img.info.update(meta.info)
    return img


def from_numpy(arr: np.ndarray) -> tuple[torch.Tensor, ImageMeta]:
    """numpy [H, W] or [H, W, C] (uint8, uint16, or float in [0, 1]; C in 1..4) -> ([1, C, H, W], meta)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) and arr.shape[-1] > 4:
        raise ImageError(f"numpy images are [H, W] or [H, W, C]; this looks channels-first [C, H, W] "
                         f"(shape {arr.shape}), transpose it: arr.transpose(1, 2, 0)")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and not 1 <= arr.shape[2] <= 4):
        hint = "; pass a list for a batch" if arr.ndim == 4 else ""
        raise ImageError(f"numpy images are [H, W] or [H, W, C] with C in 1..4, got shape {arr.shape}{hint}")
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        scale = 1.0
    else:
        raise ImageError(f"numpy image dtype must be uint8, uint16 or float in [0, 1], got {arr.dtype}")
    _check_size(arr.shape[0], arr.shape[1])
    if scale == 1.0:
        finite = np.isfinite(arr)
        n_bad = int(arr.size - np.count_nonzero(finite))
        _check_floats(float(arr.min()) if not n_bad else 0.0, float(arr.max()) if not n_bad else 0.0, n_bad)
    layout = "HW" if arr.ndim == 2 else "HWC"
    x, alpha = _split(_to_float(arr, scale))
    return x, ImageMeta("numpy", dtype=arr.dtype, scale=scale, alpha=alpha, layout=layout)


def to_numpy(x: torch.Tensor, meta: ImageMeta) -> np.ndarray:
    """[1, C, H, W] -> numpy in the original dtype and layout."""
    a = _to_pixels(x, meta.alpha, meta.scale, meta.dtype)
    return a[..., 0] if meta.layout == "HW" else a


def from_image16(img: Image16) -> tuple[torch.Tensor, ImageMeta]:
    """:class:`Image16` -> ([1, C, H, W] float, meta)."""
    x, m = from_numpy(img.pixels)
    return x, ImageMeta("image16", dtype=np.uint16, scale=m.scale, alpha=m.alpha, layout="HWC",
                        info=_carried(img.info))


def to_image16(x: torch.Tensor, meta: ImageMeta) -> Image16:
    """[1, C, H, W] -> :class:`Image16` with the carried metadata."""
    return Image16(to_numpy(x, meta), dict(meta.info))


def from_tensor(t: torch.Tensor) -> tuple[list[torch.Tensor], ImageMeta]:
    """Float tensor [C, H, W] or [B, C, H, W] in [0, 1] (C in 1..4) -> list of one [B, C, H, W] and meta."""
    if not torch.is_floating_point(t):
        hint = " (uint8: divide by 255)" if t.dtype == torch.uint8 else ""
        raise ImageError(f"tensor images must be float in [0, 1], got {t.dtype}{hint}")
    if t.dim() not in (3, 4):
        raise ImageError(f"tensor images are [C, H, W] or [B, C, H, W], got shape {tuple(t.shape)}")
    layout = "CHW" if t.dim() == 3 else "BCHW"
    if t.dim() == 3:
        t = t[None]
    if t.shape[0] == 0:
        raise ImageError("empty batch: the tensor holds 0 images")
    if not 1 <= t.shape[1] <= 4:
        if t.shape[-1] in (1, 2, 3, 4):
            raise ImageError(f"tensor images are [C, H, W] or [B, C, H, W]; this looks channels-last "
                             f"(shape {tuple(t.shape)}), permute it: t.permute(2, 0, 1) / t.permute(0, 3, 1, 2)")
        raise ImageError(f"tensor images have 1 to 4 channels, got shape {tuple(t.shape)}")
    _check_size(*t.shape[-2:])
    n_bad = int((~torch.isfinite(t)).sum())
    lo, hi = (0.0, 0.0) if n_bad else (float(t.min()), float(t.max()))
    _check_floats(lo, hi, n_bad)
    x, alpha = _split(t.float())
    return [x], ImageMeta("tensor", dtype=t.dtype, alpha=alpha, layout=layout)


def to_tensor(x: torch.Tensor, meta: ImageMeta) -> torch.Tensor:
    """Back to the caller's tensor layout and dtype."""
    if meta.alpha is not None:
        x = torch.cat([x, meta.alpha.to(x)], 1)
    x = x.to(meta.dtype)
    return x[0] if meta.layout == "CHW" else x


# -- files: reading ----------------------------------------------------------------------------
@contextmanager
def _pil_guard(lift: bool) -> Iterator[None]:
    """PIL settings for one strict read: truncated files are errors (``LOAD_TRUNCATED_IMAGES`` off),
    no DecompressionBombWarning (our own limit is checked), and with ``lift`` PIL's bomb check off
    (for a limit above PIL's own). The globals are changed only where needed, under a lock."""
    from PIL import Image, ImageFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if not lift and not ImageFile.LOAD_TRUNCATED_IMAGES:
            yield
            return
        with _PIL_LOCK:
            saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
            if lift:
                Image.MAX_IMAGE_PIXELS = None
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _png_header(head: bytes) -> tuple[int, int, int, int, int] | None:
    """(width, height, bit depth, colour type, interlace) from a PNG's first 33 bytes (None if not PNG)."""
    if len(head) < 33 or not head.startswith(_PNG_MAGIC) or head[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return w, h, depth, ctype, interlace


def _png_chunks(buf: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, data) of each chunk after the signature, CRC-checked; stops after IEND."""
    pos = 8
    while pos + 12 <= len(buf):
        n, ctype = struct.unpack(">I4s", buf[pos:pos + 8])
        end = pos + 12 + n
        if end > len(buf):
            raise ImageError(f"truncated PNG ({ctype.decode('latin-1')} chunk ends past the end of the file)")
        data = buf[pos + 8:pos + 8 + n]
        if zlib.crc32(ctype + data) != struct.unpack(">I", buf[end - 4:end])[0]:
            raise ImageError(f"corrupt PNG (bad checksum in the {ctype.decode('latin-1')} chunk)")
        yield ctype, data
        if ctype == b"IEND":
            return
        pos = end


def _unfilter_png(filt: np.ndarray, bpp: int) -> np.ndarray:
    """PNG-filtered scanlines [H, 1 + W * bpp] uint8 -> pixel bytes [H, W, bpp].

    The filters work byte by byte on bytes ``bpp`` apart, so each byte lane of a pixel is an
    independent 8-bit grey image with the same per-row filter types; PIL's C decoder unfilters each."""
    from PIL import Image

    h, n = filt.shape
    w = (n - 1) // bpp
    data = filt[:, 1:].reshape(h, w, bpp)
    out = np.empty((h, w, bpp), np.uint8)
    lane = np.empty((h, w + 1), np.uint8)
    lane[:, 0] = filt[:, 0]
    for k in range(bpp):
        lane[:, 1:] = data[:, :, k]
        out[:, :, k] = np.asarray(Image.frombytes("L", (w, h), zlib.compress(lane.tobytes(), 0), "zip", "L"))
    return out


def _read_png16(buf: bytes, info: dict, hdr: tuple[int, int, int, int, int]) -> Image16:
    """A non-interlaced 16-bit PNG (colour type 2, 4, 6, or 0 with a transparent colour) -> Image16."""
    w, h, _, ctype, interlace = hdr
    if interlace:
        raise ImageError("interlaced 16-bit PNG is not supported; save it without interlacing")
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if channels is None:
        raise ImageError(f"corrupt PNG (16-bit colour type {ctype})")
    idat, exif = [], None
    for ctype_, data in _png_chunks(buf):
        if ctype_ == b"IDAT":
            idat.append(data)
        elif ctype_ == b"eXIf":
            exif = b"Exif\x00\x00" + data
    bpp = 2 * channels
    expected = h * (1 + w * bpp)
    d = zlib.decompressobj()
    try:
        raw = d.decompress(b"".join(idat), expected)
    except zlib.error as exc:
        raise ImageError(f"corrupt PNG image data ({exc})") from None
    if len(raw) < expected or not d.eof:
        raise ImageError("truncated PNG (image data ends early)" if len(raw) < expected
                         else "corrupt PNG (more image data than the header says)")
    filt = np.frombuffer(raw, np.uint8).reshape(h, 1 + w * bpp)
    if int(filt[:, 0].max(initial=0)) > 4:
        raise ImageError("corrupt PNG (unknown scanline filter)")
    px = _unfilter_png(filt, bpp).reshape(h, w * channels, 2)
    pixels = (px[..., 0].astype(np.uint16) << 8 | px[..., 1]).reshape(h, w, channels)
    t = info.get("transparency") if ctype in (0, 2) else None
    if t is not None:  # a transparent colour: an alpha channel (the only way a marked image keeps it)
        key = np.asarray(t if isinstance(t, tuple) else (t,), np.uint16)[:channels]
        alpha = np.where((pixels == key).all(-1), 0, 65535).astype(np.uint16)
        pixels = np.concatenate([pixels, alpha[..., None]], -1)
    meta = _carried(info)
    if exif:
        meta["exif"] = exif
    return _upright16(pixels, meta)


def _upright16(pixels: np.ndarray, info: dict) -> Image16:
    """Apply the EXIF orientation in ``info["exif"]`` to pixels [H, W, C] and reset it to 1."""
    from PIL import Image

    exif = info.get("exif")
    if exif:
        ex = Image.Exif()
        ex.load(exif)
        o = ex.get(ORIENTATION, 1)
        if o != 1:
            pixels = np.ascontiguousarray(orient_array(pixels, o))
            info = {**info, "exif": _exif_upright(exif)}
    return Image16(pixels, info)


def _tiff_plan(data: bytes, limit: int) -> str:
    """How to read a TIFF: "tifffile" (16-bit colour, which PIL cuts to 8 bits) or "pil"; refuses
    float, 32-bit colour and multi-page TIFFs, and checks the size, all from the header."""
    import io

    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tf:
            n = len(tf.pages)
            page = tf.pages.first
            dtype, spp = np.dtype(page.dtype) if page.dtype is not None else None, page.samplesperpixel
            w, h = page.imagewidth, page.imagelength
    except Exception:  # noqa: BLE001 - tifffile cannot parse it: PIL gives the reason
        return "pil"
    if n > 1:
        raise ImageError(f"multi-page TIFF ({n} pages); only single images can be marked — split the pages first")
    _check_size(h, w, limit)
    if dtype is not None and dtype.kind == "f":
        raise ImageError(f"floating-point TIFF ({dtype}) is not supported; convert it to 16-bit integers first")
    if dtype is not None and spp > 1 and dtype.itemsize > 2:
        raise ImageError(f"{8 * dtype.itemsize}-bit integer colour TIFF is not supported; convert it to 16 bits first")
    return "tifffile" if dtype == np.uint16 and spp > 1 else "pil"


def _ratio(v: Any) -> float:
    """A TIFF RATIONAL (numerator, denominator) as a float (0 where it is not one)."""
    return v[0] / v[1] if isinstance(v, tuple) and len(v) == 2 and v[1] else 0.0


def _read_tiff16(data: bytes) -> Image16:
    """A single-page 16-bit grey + alpha / RGB / RGBA TIFF -> Image16 (ICC and DPI carried)."""
    import io

    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tf:
        page = tf.pages.first
        photometric, extra = int(page.photometric), tuple(int(e) for e in (page.extrasamples or ()))
        if photometric not in (1, 2):  # MINISBLACK, RGB
            name = getattr(page.photometric, "name", str(photometric))
            raise ImageError(f"16-bit TIFF with photometric {name} is not supported; convert it to RGB first")
        if 1 in extra:
            raise ImageError("16-bit TIFF with premultiplied (associated) alpha is not supported; "
                             "convert it to unassociated alpha first")
        base = 3 if photometric == 2 else 1
        if len(extra) > 1 or (extra and extra[0] != 2) or page.samplesperpixel != base + len(extra):
            raise ImageError("16-bit TIFF with channels other than grey / RGB and one alpha is not supported")
        size = len(data)
        if any(o + c > size for o, c in zip(page.dataoffsets, page.databytecounts)):
            raise ImageError("truncated TIFF (image data ends past the end of the file)")
        try:
            a = page.asarray()
        except Exception as exc:  # noqa: BLE001 - codec missing or corrupt data: one line
            raise ImageError(f"cannot read 16-bit TIFF ({exc})") from None
        if page.axes.endswith("SYX"):
            a = np.moveaxis(a, -3, -1)
        if a.ndim != 3:
            raise ImageError(f"unsupported 16-bit TIFF layout {page.axes} {a.shape}")
        tags = page.tags
        info: dict = {}
        icc = tags.get(34675)
        if icc is not None and isinstance(icc.value, (bytes, bytearray)) and icc.value:
            info["icc_profile"] = bytes(icc.value)
        xr, yr, unit = tags.get(282), tags.get(283), tags.get(296)
        per = {2: 1.0, 3: 2.54}.get(int(unit.value) if unit is not None else 2)
        if xr is not None and yr is not None and per:
            info.update(_carried({"dpi": (_ratio(xr.value) * per, _ratio(yr.value) * per)}))
        o = tags.get(ORIENTATION)
        o = int(o.value) if o is not None else 1
    return Image16(np.ascontiguousarray(orient_array(a.astype(np.uint16, copy=False), o)), info)


def load(path: str | os.PathLike, max_pixels: int | None = None) -> "PILImage.Image | Image16":
    """Open an image file fully and upright, with one clear error for anything that is not an image or
    cannot be marked faithfully (see the module doc).

    Returns a PIL image (8-bit L / LA / RGB / RGBA, palette images as P / PA, 16-bit grey ``I;16``,
    ``I`` within 0..65535) or, for 16-bit colour PNG / TIFF, an :class:`Image16`; either goes to
    ``embed`` / ``detect`` / ``strip`` and :func:`png_bytes` unchanged. EXIF orientation is applied and
    reset to 1 in ``info["exif"]``. ``max_pixels`` overrides :func:`pixel_limit` (width x height), checked
    from the header before decoding. The file is read whole and decoded as :func:`load_bytes` does."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory")
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    limit = pixel_limit(max_pixels)
    try:
        data = p.read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except OSError as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"{p}: cannot read image ({msg})") from None
    return _decode(data, str(p), limit)


def load_bytes(data: bytes | bytearray | memoryview, name: str, max_pixels: int | None = None
               ) -> "PILImage.Image | Image16":
    """:func:`load` for an image file's bytes already in memory (a tar member, a parquet cell, a
    download): the same checks, refusals and results. ``name`` (the file's name or any label) opens
    every error message, as the path does for :func:`load`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"load_bytes takes bytes, got {type(data).__name__}")
    return _decode(bytes(data), str(name), pixel_limit(max_pixels))


def _decode(data: bytes, name: str, limit: int) -> "PILImage.Image | Image16":
    """What :func:`load` and :func:`load_bytes` share: file bytes -> image, every failure one
    :class:`ImageError` opened by ``name``."""
    from PIL import Image, UnidentifiedImageError

    try:
        if len(data) == 0:
            raise ImageError("empty file (0 bytes), not an image")
        head = data[:33]
        if head[:4] in _TIFF_MAGICS and _tiff_plan(data, limit) == "tifffile":
            return _read_tiff16(data)
        lift = False
        while True:
            try:
                with _pil_guard(lift):
                    return _load_pil(data, head, limit)
            except Image.DecompressionBombError:  # beyond PIL's own limit: our limit decides
                if lift:
                    raise
                lift = True
    except ImageError as exc:
        raise ImageError(f"{name}: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (unrecognised format; accepted: {', '.join(FORMATS)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error, MemoryError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"{name}: cannot read image ({msg})") from None


def _load_pil(data: bytes, head: bytes, limit: int) -> "PILImage.Image | Image16":
    """:func:`_decode` through PIL (16-bit colour PNG through :func:`_read_png16`)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data), formats=FORMATS) as im:
        w, h = im.size
        _check_size(h, w, limit)
        hdr = _png_header(head) if im.format == "PNG" else None
        colour16 = hdr is not None and hdr[2] == 16 and (hdr[3] != 0 or "transparency" in im.info)
        if colour16 and getattr(im, "n_frames", 1) == 1:  # PIL would cut it to 8 bits
            return _read_png16(data, dict(im.info), hdr)
        reason = _refusal(im)
        if reason:
            raise ImageError(reason)
        im.load()
        orientation = im.getexif().get(ORIENTATION, 1)  # before the copy: TIFF keeps it in its tags
        img = im.copy()
    if img.mode == "I":
        lo, hi = img.getextrema()
        if lo < 0 or hi > 65535:
            raise ImageError(_out_of_16bit(lo, hi))
    return _upright_pil(img, orientation)


# -- files: writing ----------------------------------------------------------------------------
def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _filter_png(raw: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Pixel bytes [h, N] uint8 (``prev`` [N]: the row above the first, zeros at the top) -> filtered
    scanlines [h, 1 + N]: per row the filter (None, Sub, Up, Paeth) of least sum of |signed residual|,
    the usual PNG heuristic."""
    h, n = raw.shape
    up = np.concatenate([prev[None], raw[:-1]])
    left = np.pad(raw, ((0, 0), (bpp, 0)))[:, :n]
    upleft = np.pad(up, ((0, 0), (bpp, 0)))[:, :n]
    a, b, c = left.astype(np.int16), up.astype(np.int16), upleft.astype(np.int16)
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    del a, b, c, pa, pb, pc
    cands = (raw, raw - left, raw - up, raw - paeth)
    codes = np.array([0, 1, 2, 4], np.uint8)
    best = np.stack([np.abs(r.view(np.int8).astype(np.int16)).sum(1, dtype=np.int64) for r in cands]).argmin(0)
    out = np.empty((h, n + 1), np.uint8)
    out[:, 0] = codes[best]
    for k, r in enumerate(cands):
        rows = best == k
        out[rows, 1:] = r[rows]
    return out


def encode_png(pixels: np.ndarray, info: dict | None = None, level: int = 6) -> bytes:
    """uint8 / uint16 [H, W] or [H, W, C] (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) -> PNG bytes of
    the same bit depth, with ``info``'s ``icc_profile``, ``dpi`` and ``exif``."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[..., None]
    if a.dtype not in (np.uint8, np.uint16) or a.ndim != 3 or not 1 <= a.shape[2] <= 4:
        raise ValueError(f"PNG pixels must be uint8 / uint16 [H, W] or [H, W, C] with C in 1..4, "
                         f"got {a.dtype} {a.shape}")
    h, w, c = a.shape
    depth = 8 * a.dtype.itemsize
    raw = np.ascontiguousarray(a.astype(">u2") if depth == 16 else a).view(np.uint8).reshape(h, w * c * depth // 8)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    parts = [_PNG_MAGIC, _png_chunk(b"IHDR", ihdr)]
    meta = _carried(info or {})
    if "icc_profile" in meta:
        parts.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta["icc_profile"])))
    if "dpi" in meta:
        ppm = [int(d / 0.0254 + 0.5) for d in meta["dpi"]]
        parts.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if "exif" in meta:
        ex = meta["exif"]
        parts.append(_png_chunk(b"eXIf", ex[6:] if ex.startswith(b"Exif\x00\x00") else ex))
    z = zlib.compressobj(level)
    step = max(1, (1 << 22) // max(1, raw.shape[1]))  # rows per block: bounded working memory
    prev = np.zeros(raw.shape[1], np.uint8)
    idat = []
    for r0 in range(0, h, step):
        idat.append(z.compress(_filter_png(raw[r0:r0 + step], prev, c * depth // 8).tobytes()))
        prev = raw[min(r0 + step, h) - 1]
    idat.append(z.flush())
    parts += [_png_chunk(b"IDAT", b"".join(idat)), _png_chunk(b"IEND", b"")]
    return b"".join(parts)


def png_bytes(img: "PILImage.Image | Image16 | np.ndarray") -> bytes:
    """Encode an image as PNG, keeping its bit depth (8 or 16) and the ICC profile, EXIF and DPI in
    its ``info``. Takes what :func:`load`, ``embed`` and ``strip`` give: a PIL image, an
    :class:`Image16`, or a uint8 / uint16 numpy array [H, W] / [H, W, C]."""
    import io

    from PIL import Image

    if isinstance(img, Image16):
        return encode_png(img.pixels, img.info)
    if isinstance(img, np.ndarray):
        return encode_png(img)
    if not isinstance(img, Image.Image):
        raise TypeError(f"png_bytes takes a PIL image, Image16 or numpy array, got {type(img).__name__}")
    meta = _carried(img.info)
    if img.mode in ("I", "I;16L", "I;16N"):  # PIL writes neither as PNG: 16-bit grey, refused beyond its range
        a = np.asarray(img)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise ValueError(f"mode I values in [{int(a.min())}, {int(a.max())}] do not fit a 16-bit PNG")
        return encode_png(a.astype(np.uint16), meta)
    buf = io.BytesIO()
    img.save(buf, format="PNG", **meta)
    return buf.getvalue()


# -- batches -----------------------------------------------------------------------------------
def _from_any(it: Any) -> tuple[list[torch.Tensor], ImageMeta]:
    from PIL import Image

    if isinstance(it, Image.Image):
        x, m = from_pil(it)
        return [x], m
    if isinstance(it, Image16):
        x, m = from_image16(it)
        return [x], m
    if isinstance(it, np.ndarray):
        x, m = from_numpy(it)
        return [x], m
    if isinstance(it, torch.Tensor):
        return from_tensor(it)
    if isinstance(it, (str, os.PathLike)):
        return _from_any(load(it))
    raise ImageError(f"unsupported image type {type(it).__name__} (PIL image, Image16, numpy array, "
                     "tensor or file path)")


def is_single(images: Any) -> bool:
    """Whether an input is one image (its results: one, not a list)."""
    return not isinstance(images, (list, tuple)) and not (isinstance(images, torch.Tensor) and images.dim() == 4)


def iter_internal(images: Any) -> Iterator[tuple[list[torch.Tensor], ImageMeta]]:
    """:func:`to_internal` one input item at a time (its tensors, its meta), so that only one item's
    float copy need be held; the same errors."""
    single = is_single(images)
    if isinstance(images, (list, tuple)) and not images:
        raise ImageError("empty batch: no images given (pass at least one)")
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    for i, it in enumerate(items):
        try:
            t, m = _from_any(it)
        except ImageError as exc:
            if single or isinstance(images, torch.Tensor):
                raise
            raise ImageError(f"images[{i}]: {exc}") from None
        yield t, m


def to_internal(images: Any) -> tuple[list[torch.Tensor], list[ImageMeta], bool]:
    """Any supported input -> (list of [1, C, H, W] tensors, metas, was_single).

    A 4-D tensor batch stays one [B, C, H, W] tensor in the list (same size); lists may mix types.
    Raises :class:`ImageError` (a ValueError) for an empty batch and for anything refused."""
    xs: list[torch.Tensor] = []
    metas: list[ImageMeta] = []
    for t, m in iter_internal(images):
        xs.extend(t), metas.append(m)
    return xs, metas, is_single(images)


def from_internal(xs: list[torch.Tensor], metas: list[ImageMeta]) -> list:
    """Inverse of :func:`to_internal` for each item (list)."""
    out = []
    for x, m in zip(xs, metas):
        if m.kind == "pil":
            out.append(to_pil(x, m))
        elif m.kind == "image16":
            out.append(to_image16(x, m))
        elif m.kind == "numpy":
            out.append(to_numpy(x, m))
        else:
            out.append(to_tensor(x, m))
    return out


def check_key(key: Any) -> None:
    """Refuse anything but a :class:`wmark.keys.Key` with a ValueError saying how to make one."""
    from wmark.keys import Key

    if not isinstance(key, Key):
        raise ValueError(f"key must be a wmark.keys.Key (Key.generate(), Key.from_file(path), "
                         f"Key.from_passphrase(...)), got {type(key).__name__}")
