"""Property tests (hypothesis) of the image I/O round trip for every supported mode: in memory
(``to_internal`` -> ``from_internal``) and through files (``png_bytes`` / writers -> ``load``).

Shapes and dtypes are drawn by hypothesis; pixel values come from a numpy generator seeded by it
(drawing whole arrays element by element would be slow)."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from wmark.image import io as imio  # noqa: E402

FAST = settings(max_examples=25, deadline=None, database=None)
sides = st.integers(64, 96)
seeds = st.integers(0, 2 ** 32 - 1)


def pixels(seed: int, shape: tuple, dtype) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        a = rng.random(shape).astype(dtype)
        a.flat[:2] = (0.0, 1.0)  # the ends of the range
        return a
    top = np.iinfo(dtype).max
    a = rng.integers(0, top + 1, shape, dtype=np.int64)
    a.flat[:2] = (0, top)
    return a.astype(dtype)


def chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def png_with_filters(a: np.ndarray, types) -> bytes:
    """A reference 16-bit PNG writer, uint16 [H, W, C], with the given filter type (0..4) per row."""
    h, w, c = a.shape
    raw = a.astype(">u2").view(np.uint8).reshape(h, -1).astype(np.int32)
    bpp = 2 * c
    up = np.concatenate([np.zeros((1, raw.shape[1]), np.int32), raw[:-1]])
    left = np.pad(raw, ((0, 0), (bpp, 0)))[:, :-bpp]
    ul = np.pad(up, ((0, 0), (bpp, 0)))[:, :-bpp]
    p = left + up - ul
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - ul)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, ul))
    preds = [0, left, up, (left + up) // 2, paeth]
    rows = [bytes([t]) + ((raw[i] - (preds[t][i] if t else 0)) % 256).astype(np.uint8).tobytes()
            for i, t in enumerate(types)]
    head = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def round_trip(img):
    xs, metas, _ = imio.to_internal(img)
    return imio.from_internal(xs, metas)[0]


def reload(tmp_path, img, name: str = "x.png"):
    p = tmp_path / name
    p.write_bytes(imio.png_bytes(img))
    return imio.load(p)


@FAST
@given(h=sides, w=sides, c=st.sampled_from([None, 1, 2, 3, 4]),
       dtype=st.sampled_from(["uint8", "uint16", "float32", "float64"]), seed=seeds)
def test_numpy_round_trip(h, w, c, dtype, seed):
    a = pixels(seed, (h, w) if c is None else (h, w, c), dtype)
    out = round_trip(a)
    assert out.dtype == a.dtype and out.shape == a.shape
    if dtype == "float64":  # the working copy is float32
        assert np.abs(out - a).max() < 1e-7
    else:
        assert np.array_equal(out, a)


@FAST
@given(h=sides, w=sides, c=st.sampled_from([1, 2, 3, 4]), batch=st.sampled_from([None, 1, 3]), seed=seeds)
def test_tensor_round_trip(h, w, c, batch, seed):
    t = torch.from_numpy(pixels(seed, (c, h, w) if batch is None else (batch, c, h, w), "float32"))
    out = round_trip(t)
    assert out.shape == t.shape and torch.equal(out, t)


@FAST
@given(h=sides, w=sides, mode=st.sampled_from(["L", "LA", "RGB", "RGBA", "I;16", "I", "P"]), seed=seeds)
def test_pil_round_trip_and_png(tmp_path_factory, h, w, mode, seed):
    if mode in ("I;16", "I"):
        img = Image.fromarray(pixels(seed, (h, w), "uint16").astype(np.int32 if mode == "I" else np.uint16))
    elif mode == "P":
        img = Image.fromarray(pixels(seed, (h, w, 3), "uint8")).quantize(64)
    else:
        c = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
        a = pixels(seed, (h, w, c), "uint8")
        img = Image.fromarray(a[..., 0] if c == 1 else a, mode)
    want = np.asarray(img.convert("RGB") if mode == "P" else img)
    out = round_trip(img)
    assert out.size == img.size and np.array_equal(np.asarray(out), want)
    back = reload(tmp_path_factory.mktemp("pil"), out)
    assert np.array_equal(np.asarray(back).astype(want.dtype), want)


@FAST
@given(h=sides, w=sides, c=st.sampled_from([1, 2, 3, 4]), seed=seeds,
       dpi=st.sampled_from([None, (72.0, 72.0), (300.0, 150.0)]))
def test_image16_round_trip_and_png(tmp_path_factory, h, w, c, seed, dpi):
    a = pixels(seed, (h, w, c), "uint16")
    info = {"icc_profile": b"profile-%d" % seed} | ({"dpi": dpi} if dpi else {})
    img = imio.Image16(a, info)
    out = round_trip(img)
    assert isinstance(out, imio.Image16) and np.array_equal(out.pixels, a) and out.info == info
    back = reload(tmp_path_factory.mktemp("i16"), out)
    got = back.pixels if isinstance(back, imio.Image16) else np.asarray(back)[..., None]  # grey: PIL I;16
    assert np.array_equal(got, a)
    assert back.info["icc_profile"] == info["icc_profile"]
    if dpi:
        assert back.info["dpi"] == pytest.approx(dpi, abs=0.02)


@FAST
@given(h=sides, w=sides, c=st.sampled_from([1, 2, 3, 4]), depth=st.sampled_from(["uint8", "uint16"]), seed=seeds)
def test_encoder_is_standard(h, w, c, depth, seed):
    """What encode_png writes, PIL reads back (16 bits cut to 8 by PIL, except grey)."""
    a = pixels(seed, (h, w, c), depth)
    im = Image.open(io.BytesIO(imio.encode_png(a)))
    got = np.asarray(im)
    if depth == "uint8" or c == 1:
        assert np.array_equal(got.reshape(a.shape), a)
    else:
        want = (a >> 8).astype(np.uint8)
        got = np.asarray(im.convert({2: "LA", 3: "RGB", 4: "RGBA"}[c]))
        assert np.array_equal(got, want)


@FAST
@given(h=sides, w=sides, c=st.sampled_from([2, 3, 4]), seed=seeds, data=st.data())
def test_png16_decoder_any_filters(tmp_path_factory, h, w, c, seed, data):
    a = pixels(seed, (h, w, c), "uint16")
    types = data.draw(st.lists(st.integers(0, 4), min_size=h, max_size=h))
    p = tmp_path_factory.mktemp("f") / "f.png"
    p.write_bytes(png_with_filters(a, types))
    assert np.array_equal(imio.load(p).pixels, a)


@FAST
@given(h=sides, w=sides, c=st.sampled_from([2, 3, 4]), planar=st.booleans(),
       compression=st.sampled_from([None, "zlib"]), seed=seeds)
def test_tiff16_load(tmp_path_factory, h, w, c, planar, compression, seed):
    tifffile = pytest.importorskip("tifffile")
    a = pixels(seed, (h, w, c), "uint16")
    p = tmp_path_factory.mktemp("t") / "t.tif"
    kw = {"photometric": "rgb" if c >= 3 else "minisblack", "compression": compression}
    if c == 2:
        kw["extrasamples"] = ["unassalpha"]
    if planar:
        tifffile.imwrite(p, np.moveaxis(a, -1, 0), planarconfig="separate", **kw)
    else:
        tifffile.imwrite(p, a, **kw)
    img = imio.load(p)
    assert np.array_equal(img.pixels, a)
    assert np.array_equal(round_trip(img).pixels, a)


@FAST
@given(h=sides, w=sides, orientation=st.integers(1, 8), seed=seeds)
def test_orientation_upright(tmp_path_factory, h, w, orientation, seed):
    a = pixels(seed, (h, w, 3), "uint8")
    ex = Image.Exif()
    ex[imio.ORIENTATION] = orientation
    d = tmp_path_factory.mktemp("o")
    Image.fromarray(a).save(d / "o.png", exif=ex.tobytes())
    want = np.asarray(ImageOps.exif_transpose(Image.open(d / "o.png")))
    assert np.array_equal(np.asarray(imio.load(d / "o.png")), want)
    (d / "o16.png").write_bytes(imio.encode_png(a.astype(np.uint16) * 257, {"exif": ex.tobytes()}))
    assert np.array_equal(imio.load(d / "o16.png").pixels, want.astype(np.uint16) * 257)
