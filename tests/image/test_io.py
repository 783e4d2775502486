"""Image I/O: faithful pixels and metadata, refused inputs, limits, API validation (files in tmp_path)."""
from __future__ import annotations

import functools
import io
import struct
import time
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image, ImageOps  # noqa: E402

from wmark.image import io as imio  # noqa: E402

RNG = np.random.default_rng(0)


# -- helpers -----------------------------------------------------------------------------------
def chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def png_header(w: int, h: int, depth: int, ctype: int, interlace: int = 0) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace))


def _paeth(a, b, c):
    a, b, c = (v.astype(np.int16) for v in (a, b, c))
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)


def png_with_filters(a: np.ndarray, types, extra: bytes = b"") -> bytes:
    """A reference PNG writer (all five filter types, given per row) for uint8 / uint16 [H, W, C]."""
    h, w, c = a.shape
    depth = 8 * a.dtype.itemsize
    raw = (a.astype(">u2") if depth == 16 else a).view(np.uint8).reshape(h, -1)
    bpp = c * depth // 8
    up = np.concatenate([np.zeros((1, raw.shape[1]), np.uint8), raw[:-1]])
    left = np.pad(raw, ((0, 0), (bpp, 0)))[:, :-bpp]
    ul = np.pad(up, ((0, 0), (bpp, 0)))[:, :-bpp]
    avg = ((left.astype(np.uint16) + up) // 2).astype(np.uint8)
    cands = [raw, raw - left, raw - up, raw - avg, raw - _paeth(left, up, ul)]
    rows = [bytes([t]) + cands[t][i].tobytes() for i, t in enumerate(types)]
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    return (png_header(w, h, depth, ctype) + extra + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def smooth(h: int = 96, w: int = 96, c: int = 3, scale: int = 255) -> np.ndarray:
    """A smooth image with mild noise [H, W, C] in 0..scale (float64): the mark reads well on it."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = [0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * np.sin(6 * xx * yy), 0.3 + 0.5 * xx * yy][:c]
    a = np.stack(base, -1) + RNG.normal(0, 0.02, (h, w, c))
    return np.clip(a, 0, 1) * scale


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def refused(path, match: str) -> str:
    with pytest.raises(ValueError) as info:
        imio.load(path)
    msg = one_line(info.value)
    assert msg.startswith(str(path)) and match in msg, msg
    return msg


@functools.lru_cache(maxsize=1)
def icc_profile() -> bytes:
    """A real sRGB profile (it embeds its creation time: made once per run)."""
    try:
        from PIL import ImageCms

        return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    except Exception:  # noqa: BLE001 - PIL built without littlecms: any bytes are carried alike
        return b"\x00\x00\x02\x0cfake icc profile" * 8


def internal_round_trip(img):
    xs, metas, _ = imio.to_internal(img)
    return imio.from_internal(xs, metas)[0]


# -- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,c", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
def test_pil_8bit_round_trips(tmp_path, mode, c):
    a = RNG.integers(0, 256, (70, 90, c), dtype=np.uint8)
    img = Image.fromarray(a[..., 0] if c == 1 else a, mode=mode)
    out = internal_round_trip(img)
    assert out.mode == mode and np.array_equal(np.asarray(out), np.asarray(img))
    p = tmp_path / "x.png"
    p.write_bytes(imio.png_bytes(out))
    back = imio.load(p)
    assert back.mode == mode and np.array_equal(np.asarray(back), np.asarray(img))


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_grey16_round_trips(tmp_path, fmt):
    a = RNG.integers(0, 65536, (70, 90), dtype=np.uint16)
    p = tmp_path / f"g.{fmt}"
    Image.fromarray(a).save(p)
    img = imio.load(p)
    assert img.mode.startswith("I;16") and np.array_equal(np.asarray(img), a)
    out = internal_round_trip(img)
    assert np.array_equal(np.asarray(out), a)
    q = tmp_path / "g2.png"
    q.write_bytes(imio.png_bytes(out))
    assert np.array_equal(np.asarray(imio.load(q)), a)


def test_int32_in_16bit_range_round_trips(tmp_path):
    a = RNG.integers(0, 65536, (70, 90)).astype(np.int32)
    p = tmp_path / "i.tif"
    Image.fromarray(a).save(p)
    img = imio.load(p)
    assert img.mode == "I"
    out = internal_round_trip(img)
    assert out.mode == "I" and np.array_equal(np.asarray(out), a)
    q = tmp_path / "i.png"
    q.write_bytes(imio.png_bytes(out))  # PIL writes no mode I PNG: 16-bit grey
    assert np.array_equal(np.asarray(imio.load(q)).astype(np.int32), a)


@pytest.mark.parametrize("c", [2, 3, 4])
def test_png16_colour_round_trips(tmp_path, c):
    a = RNG.integers(0, 65536, (70, 90, c), dtype=np.uint16)
    p = tmp_path / "c16.png"
    p.write_bytes(imio.encode_png(a))
    # a standard PNG: PIL reads the same file (cut to 8 bits)
    pil = np.asarray(Image.open(p).convert({2: "LA", 3: "RGB", 4: "RGBA"}[c]))
    assert np.array_equal(pil, (a >> 8).astype(np.uint8))
    img = imio.load(p)
    assert isinstance(img, imio.Image16) and img.pixels.dtype == np.uint16 and np.array_equal(img.pixels, a)
    out = internal_round_trip(img)
    assert isinstance(out, imio.Image16) and np.array_equal(out.pixels, a)
    q = tmp_path / "c16b.png"
    q.write_bytes(imio.png_bytes(out))
    assert np.array_equal(imio.load(q).pixels, a)


@pytest.mark.parametrize("c", [3, 4])
def test_png16_every_filter_type(tmp_path, c):
    """The 16-bit decoder against a reference writer using all five filter types (Average included)."""
    a = RNG.integers(0, 65536, (80, 67, c), dtype=np.uint16)
    p = tmp_path / "f.png"
    p.write_bytes(png_with_filters(a, [i % 5 for i in range(80)]))
    assert np.array_equal(imio.load(p).pixels, a)


def test_png16_transparent_colour_becomes_alpha(tmp_path):
    a = RNG.integers(0, 65536, (70, 80, 3), dtype=np.uint16)
    a[:10, :10] = (1000, 2000, 3000)
    p = tmp_path / "t.png"
    p.write_bytes(png_with_filters(a, [0] * 70, extra=chunk(b"tRNS", struct.pack(">HHH", 1000, 2000, 3000))))
    img = imio.load(p)
    assert img.pixels.shape == (70, 80, 4) and np.array_equal(img.pixels[..., :3], a)
    assert (img.pixels[:10, :10, 3] == 0).all() and img.pixels[..., 3].sum() > 0


@pytest.mark.parametrize("c,planar,compression", [(3, False, None), (4, False, "zlib"), (3, True, None),
                                                  (2, False, None)])
def test_tiff16_colour_round_trips(tmp_path, c, planar, compression):
    tifffile = pytest.importorskip("tifffile")
    a = RNG.integers(0, 65536, (70, 90, c), dtype=np.uint16)
    p = tmp_path / "c16.tif"
    kw = {"photometric": "rgb" if c >= 3 else "minisblack", "compression": compression,
          "resolution": (300, 300), "resolutionunit": "INCH", "iccprofile": b"icc!" * 10}
    if c == 2:
        kw["extrasamples"] = ["unassalpha"]
    if planar:
        tifffile.imwrite(p, np.moveaxis(a, -1, 0), planarconfig="separate", **kw)
    else:
        tifffile.imwrite(p, a, **kw)
    img = imio.load(p)
    assert isinstance(img, imio.Image16) and np.array_equal(img.pixels, a)
    assert img.info["icc_profile"] == b"icc!" * 10 and img.info["dpi"] == pytest.approx((300, 300))
    q = tmp_path / "c16.png"
    q.write_bytes(imio.png_bytes(internal_round_trip(img)))
    back = imio.load(q)
    assert np.array_equal(back.pixels, a) and back.info["icc_profile"] == b"icc!" * 10


def test_numpy_and_tensor_round_trips():
    for dtype, scale in ((np.uint8, 255), (np.uint16, 65535)):
        for shape in ((70, 80), (70, 80, 1), (70, 80, 2), (70, 80, 3), (70, 80, 4)):
            a = RNG.integers(0, scale + 1, shape).astype(dtype)
            out = internal_round_trip(a)
            assert out.dtype == dtype and np.array_equal(out, a)
    f = RNG.random((70, 80, 3)).astype(np.float32)
    assert np.array_equal(internal_round_trip(f), f)
    t = torch.rand(2, 4, 70, 80)
    assert torch.equal(internal_round_trip(t), t)
    t3 = torch.rand(3, 70, 80, dtype=torch.float64)
    out = internal_round_trip(t3)
    assert out.dtype == torch.float64 and torch.allclose(out, t3, atol=1e-7)


def test_palette_becomes_rgb_and_says_so(tmp_path):
    img = Image.fromarray(RNG.integers(0, 256, (70, 80, 3), dtype=np.uint8)).quantize(16)
    p = tmp_path / "p.png"
    img.save(p)
    loaded = imio.load(p)
    xs, metas, _ = imio.to_internal(loaded)
    assert metas[0].mode == "P"
    out = imio.from_internal(xs, metas)[0]
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(img.convert("RGB")))
    img.info["transparency"] = 0  # a transparent palette entry: RGBA
    out = internal_round_trip(img)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out), np.asarray(img.convert("RGBA")))


def test_transparent_colour_8bit_becomes_alpha():
    a = RNG.integers(1, 256, (70, 80), dtype=np.uint8)
    a[:5] = 0
    img = Image.fromarray(a)
    img.info["transparency"] = 0
    out = internal_round_trip(img)
    assert out.mode == "LA"
    o = np.asarray(out)
    assert np.array_equal(o[..., 0], a) and (o[:5, :, 1] == 0).all() and (o[5:, :, 1] == 255).all()


# -- orientation and metadata ------------------------------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_exif_transpose(tmp_path, orientation):
    a = RNG.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    ex = Image.Exif()
    ex[imio.ORIENTATION] = orientation
    p = tmp_path / "o.png"
    Image.fromarray(a).save(p, exif=ex.tobytes())
    want = np.asarray(ImageOps.exif_transpose(Image.open(p)))
    img = imio.load(p)
    assert np.array_equal(np.asarray(img), want)
    assert img.getexif().get(imio.ORIENTATION, 1) == 1
    assert np.array_equal(imio.orient_array(a, orientation), want)
    # 16-bit colour: the same geometry through the numpy path
    q = tmp_path / "o16.png"
    q.write_bytes(imio.encode_png(a.astype(np.uint16) * 257, {"exif": ex.tobytes()}))
    img16 = imio.load(q)
    assert np.array_equal(img16.pixels, want.astype(np.uint16) * 257)
    out = Image.open(io.BytesIO(imio.png_bytes(img16)))
    assert out.getexif().get(imio.ORIENTATION, 1) == 1


def test_exif_rotated_jpeg_loads_upright(tmp_path):
    a = np.zeros((80, 120, 3), np.uint8)
    a[:40, :60] = 255  # bright top-left quadrant of the stored pixels
    ex = Image.Exif()
    ex[imio.ORIENTATION] = 6  # display = stored rotated 90 degrees clockwise
    ex[0x010F] = "TestCam"
    p = tmp_path / "phone.jpg"
    Image.fromarray(a).save(p, exif=ex.tobytes(), quality=95)
    img = imio.load(p)
    assert img.size == (80, 120)  # portrait
    b = np.asarray(img.convert("L"), np.float64)
    assert b[:60, 40:].mean() > 200 and b[60:, :].mean() < 50  # bright quadrant now top-right
    out = Image.open(io.BytesIO(imio.png_bytes(internal_round_trip(img))))
    assert out.size == (80, 120)
    assert out.getexif().get(imio.ORIENTATION) == 1 and out.getexif().get(0x010F) == "TestCam"
    # a PIL image given straight to the API is turned upright too
    assert internal_round_trip(Image.open(p)).size == (80, 120)


def test_icc_exif_dpi_survive_png_bytes(tmp_path):
    icc = icc_profile()
    ex = Image.Exif()
    ex[0x010F] = "TestCam"
    a = smooth(80, 100).astype(np.uint8)
    p = tmp_path / "m.jpg"
    Image.fromarray(a).save(p, icc_profile=icc, exif=ex.tobytes(), dpi=(240, 240))
    img = internal_round_trip(imio.load(p))
    out = Image.open(io.BytesIO(imio.png_bytes(img)))
    assert out.info["icc_profile"] == icc
    assert out.info["dpi"] == pytest.approx((240, 240), abs=0.02)
    assert out.getexif().get(0x010F) == "TestCam"
    # 16-bit colour
    q = tmp_path / "m16.png"
    q.write_bytes(imio.encode_png(a.astype(np.uint16) * 257, {"icc_profile": icc, "dpi": (240, 240),
                                                             "exif": ex.tobytes()}))
    img16 = internal_round_trip(imio.load(q))
    r = tmp_path / "m16b.png"
    r.write_bytes(imio.png_bytes(img16))
    back = imio.load(r)
    assert back.info["icc_profile"] == icc and back.info["dpi"] == pytest.approx((240, 240), abs=0.02)
    assert Image.open(r).getexif().get(0x010F) == "TestCam"


# -- refused inputs ----------------------------------------------------------------------------
def test_refuses_1bit(tmp_path):
    p = tmp_path / "bw.png"
    Image.fromarray(RNG.integers(0, 2, (70, 80)).astype(bool)).save(p)
    refused(p, "1-bit")
    with pytest.raises(ValueError, match="1-bit"):
        imio.to_internal(Image.open(p))


def test_refuses_float_tiff(tmp_path):
    p = tmp_path / "f.tif"
    Image.fromarray(RNG.random((70, 80)).astype(np.float32)).save(p)
    refused(p, "float")


def test_refuses_float_colour_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    p = tmp_path / "f3.tif"
    tifffile.imwrite(p, RNG.random((70, 80, 3)).astype(np.float32), photometric="rgb")
    refused(p, "floating-point TIFF")


@pytest.mark.parametrize("lo,hi", [(0, 70000), (-5, 100)])
def test_refuses_int32_beyond_16bit(tmp_path, lo, hi):
    a = RNG.integers(lo, hi, (70, 80)).astype(np.int32)
    a[0, 0], a[0, 1] = lo, hi
    p = tmp_path / "i.tif"
    Image.fromarray(a).save(p)
    refused(p, "outside the unsigned 16-bit range")
    with pytest.raises(ValueError, match="outside the unsigned 16-bit range"):
        imio.to_internal(Image.fromarray(a))


def test_refuses_animated_gif(tmp_path):
    frames = [Image.fromarray(RNG.integers(0, 256, (70, 80, 3), dtype=np.uint8)).convert("P") for _ in range(3)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100)
    refused(p, "3 frames")


def test_api_refuses_animation_and_pil_cut_16bit(tmp_path):
    frames = [Image.fromarray(RNG.integers(0, 256, (70, 80, 3), dtype=np.uint8)).convert("P") for _ in range(2)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ValueError, match="2 frames"):
        imio.to_internal(Image.open(p))
    q = tmp_path / "c16.png"
    q.write_bytes(imio.encode_png(RNG.integers(0, 65536, (70, 80, 3), dtype=np.uint16)))
    with pytest.raises(ValueError, match="cuts it to 8 bits: pass the path"):
        imio.to_internal(Image.open(q))
    assert isinstance(imio.to_internal(str(q))[1][0], imio.ImageMeta)


def test_mpo_primary_image_is_read(tmp_path):
    a = RNG.integers(0, 256, (70, 80, 3), dtype=np.uint8)
    p = tmp_path / "x.mpo"
    Image.fromarray(a).save(p, "MPO", save_all=True, append_images=[Image.fromarray(255 - a)], quality=95)
    with Image.open(p) as im:
        assert im.format == "MPO" and im.n_frames == 2
        want = np.asarray(im.convert("RGB"))
    img = imio.load(p)
    assert img.size == (80, 70) and np.array_equal(np.asarray(img), want)


def test_png16_grey_with_transparent_colour_becomes_grey_alpha(tmp_path):
    a = RNG.integers(1, 65536, (70, 80, 1), dtype=np.uint16)
    a[:3] = 0
    p = tmp_path / "gt.png"
    p.write_bytes(png_with_filters(a, [2] * 70, extra=chunk(b"tRNS", struct.pack(">H", 0))))
    img = imio.load(p)
    assert isinstance(img, imio.Image16) and img.pixels.shape == (70, 80, 2)
    assert np.array_equal(img.pixels[..., :1], a) and (img.pixels[:3, :, 1] == 0).all()
    assert (img.pixels[3:, :, 1] == 65535).all()


def test_refuses_multipage_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    p = tmp_path / "pages.tif"
    with tifffile.TiffWriter(p) as tw:
        for _ in range(2):
            tw.write(RNG.integers(0, 256, (70, 80, 3), dtype=np.uint8), photometric="rgb")
    refused(p, "multi-page TIFF (2 pages)")


def test_refuses_animated_webp(tmp_path):
    from PIL import features

    if not features.check("webp"):
        pytest.skip("PIL without WebP")
    frames = [Image.fromarray(RNG.integers(0, 256, (70, 80, 3), dtype=np.uint8)) for _ in range(2)]
    p = tmp_path / "anim.webp"
    frames[0].save(p, save_all=True, append_images=frames[1:], lossless=True)
    refused(p, "2 frames")


def test_refuses_cmyk(tmp_path):
    p = tmp_path / "c.jpg"
    Image.new("CMYK", (80, 70), (10, 20, 30, 40)).save(p)
    refused(p, "CMYK")


def test_only_accepted_formats_are_opened(tmp_path):
    p = tmp_path / "x.pcx"
    Image.fromarray(RNG.integers(0, 256, (70, 80, 3), dtype=np.uint8)).save(p)
    refused(p, "not an image (unrecognised format; accepted: PNG, JPEG")
    q = tmp_path / "x.pgm"
    Image.fromarray(RNG.integers(0, 256, (70, 80), dtype=np.uint8)).save(q)
    assert imio.load(q).mode == "L"


def test_refuses_interlaced_png16(tmp_path):
    p = tmp_path / "il.png"
    p.write_bytes(png_header(80, 70, 16, 2, interlace=1) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                  + chunk(b"IEND", b""))
    refused(p, "interlaced 16-bit PNG")


@pytest.mark.parametrize("kind", ["empty", "text", "png_cut", "jpeg_cut", "png16_cut", "png16_crc"])
def test_bad_files_one_line(tmp_path, kind):
    a = RNG.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    p = tmp_path / "bad.img"
    if kind == "empty":
        p.write_bytes(b"")
        refused(p, "empty file (0 bytes)")
        return
    if kind == "text":
        p.write_bytes(b"hello, not an image\n" * 10)
        refused(p, "not an image")
        return
    buf = io.BytesIO()
    if kind == "png_cut":
        Image.fromarray(a).save(buf, "PNG")
    elif kind == "jpeg_cut":
        Image.fromarray(a).save(buf, "JPEG")
    else:
        buf.write(imio.encode_png(a.astype(np.uint16) * 257))
    data = buf.getvalue()
    if kind == "png16_crc":
        i = data.index(b"IDAT") + 10
        p.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
        refused(p, "bad checksum")
    else:
        p.write_bytes(data[:len(data) // 2])
        refused(p, "truncated")


def test_truncated_stays_an_error_when_pil_is_lenient(tmp_path, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (100, 120, 3), dtype=np.uint8)).save(buf, "PNG")
    p = tmp_path / "cut.png"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    refused(p, "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


# -- limits ------------------------------------------------------------------------------------
def bomb_png(w: int = 20000, h: int = 12000) -> bytes:
    """A tiny PNG whose header claims w x h RGB pixels."""
    return png_header(w, h, 8, 2) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_quickly(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(bomb_png())
    assert p.stat().st_size < 200
    t0 = time.perf_counter()
    msg = refused(p, f"240 MP exceeds the limit of {imio.MAX_PIXELS / 1e6:g} MP")
    assert time.perf_counter() - t0 < 2.0
    assert "WMARK_MAX_PIXELS" in msg
    assert Image.MAX_IMAGE_PIXELS is not None  # PIL's own check restored


def test_pixel_limit_env_and_argument(tmp_path, monkeypatch):
    p = tmp_path / "ok.png"
    Image.fromarray(RNG.integers(0, 256, (100, 200, 3), dtype=np.uint8)).save(p)
    monkeypatch.setenv("WMARK_MAX_PIXELS", "10000")
    refused(p, "0.02 MP exceeds the limit of 0.01 MP")
    with pytest.raises(ValueError, match="exceeds the limit"):
        imio.to_internal(np.zeros((100, 200), np.uint8))
    assert imio.load(p, max_pixels=20000).size == (200, 100)
    monkeypatch.setenv("WMARK_MAX_PIXELS", "2e4")
    assert imio.pixel_limit() == 20000 and imio.load(p).size == (200, 100)
    monkeypatch.setenv("WMARK_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="WMARK_MAX_PIXELS must be a number"):
        imio.load(p)
    monkeypatch.delenv("WMARK_MAX_PIXELS")
    assert imio.pixel_limit() == imio.MAX_PIXELS


def test_limit_above_pils_own(tmp_path, monkeypatch):
    """PIL's DecompressionBombError is not the limit: ours is, and PIL's setting comes back."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    p = tmp_path / "ok.png"
    a = RNG.integers(0, 256, (100, 200, 3), dtype=np.uint8)
    Image.fromarray(a).save(p)
    assert np.array_equal(np.asarray(imio.load(p)), a)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_too_small_names_size_and_minimum(tmp_path):
    p = tmp_path / "tiny.png"
    Image.new("RGB", (16, 16)).save(p)
    refused(p, "image is 16x16 px; at least 64 px per side is needed")
    with pytest.raises(ValueError, match="image is 10x20 px; at least 64 px"):
        imio.to_internal(np.zeros((20, 10, 3), np.uint8))


# -- API validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("bad,match", [
    (np.full((70, 80, 3), np.nan, np.float32), "NaN or inf"),
    (torch.tensor(float("inf")).expand(3, 70, 80).clone(), "NaN or inf"),
    (np.linspace(0, 255, 70 * 80 * 3).reshape(70, 80, 3),
     r"floats must be in \[0, 1\]; got range \[0, 255\] — divide by 255\?"),
    (torch.linspace(-1, 1, 3 * 70 * 80).reshape(3, 70, 80), r"got range \[-1, 1\] — map -1..1"),
    ([], "empty batch"),
    (torch.zeros(0, 3, 70, 80), "empty batch"),
    (np.zeros((3, 70, 80), np.uint8),
     r"numpy images are \[H, W\] or \[H, W, C\]; this looks channels-first \[C, H, W\]"),
    (torch.zeros(70, 80, 3), "this looks channels-last"),
    (np.zeros((2, 70, 80, 3), np.uint8), "pass a list for a batch"),
    (np.zeros((70, 80), np.int64), "dtype must be uint8, uint16 or float"),
    (torch.zeros(3, 70, 80, dtype=torch.uint8), "divide by 255"),
    ("no/such/file.png", "no such file"),
    (42, "unsupported image type int"),
])
def test_api_refusals(bad, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match) as info:
        imio.to_internal(bad)
    one_line(info.value)


def test_batch_errors_name_the_item():
    with pytest.raises(ValueError, match=r"images\[1\]: image contains"):
        imio.to_internal([np.zeros((70, 80), np.uint8), np.full((70, 80), np.nan)])


def test_float_rounding_tolerated():
    a = np.full((70, 80), 1 + 1e-7, np.float64)
    a[0, 0] = -1e-7
    out = internal_round_trip(a)
    assert out.min() >= 0 and out.max() <= 1


# -- the model end to end with each supported type ---------------------------------------------
def _inputs() -> dict:
    s8 = smooth()
    s16 = smooth(scale=65535)
    rgba = smooth(c=4).astype(np.uint8)
    return {
        "pil-L": Image.fromarray(s8[..., 0].astype(np.uint8), "L"),
        "pil-LA": Image.fromarray(rgba[..., [0, 3]], "LA"),
        "pil-RGB": Image.fromarray(s8.astype(np.uint8), "RGB"),
        "pil-RGBA": Image.fromarray(rgba, "RGBA"),
        "pil-I;16": Image.fromarray(s16[..., 0].astype(np.uint16)),
        "pil-I": Image.fromarray(s16[..., 0].astype(np.int32)),
        "pil-P": Image.fromarray(s8.astype(np.uint8)).quantize(256),
        "np-u8": s8.astype(np.uint8),
        "np-u16-gray": s16[..., 0].astype(np.uint16),
        "np-f32": (s8 / 255).astype(np.float32),
        "tensor-CHW": torch.from_numpy(s8 / 255).permute(2, 0, 1).float(),
        "tensor-BCHW": torch.from_numpy(s8 / 255).permute(2, 0, 1).float()[None],
        "image16-RGB": imio.Image16(s16.astype(np.uint16), {"dpi": (300.0, 300.0)}),
        "image16-RGBA": imio.Image16(smooth(c=4, scale=65535).astype(np.uint16)),
        "image16-LA": imio.Image16(smooth(c=2, scale=65535).astype(np.uint16)),
    }


STRIPPED = ("pil-RGBA", "pil-I;16", "np-f32", "tensor-BCHW", "image16-LA")


@pytest.mark.parametrize("name", list(_inputs()))
def test_model_end_to_end(wm, demo_key, name):
    img = _inputs()[name]
    res = wm.embed(img, demo_key)
    out = res.images
    assert type(out) is type(img) or (isinstance(img, Image.Image) and isinstance(out, Image.Image))
    if isinstance(img, Image.Image):
        assert out.mode == ({"P": "RGB"}.get(img.mode, img.mode)) and out.size == img.size
        if "A" in img.mode:
            assert np.array_equal(np.asarray(out)[..., -1], np.asarray(img)[..., -1])
    elif isinstance(img, imio.Image16):
        assert out.pixels.dtype == np.uint16 and out.pixels.shape == img.pixels.shape and out.info == img.info
        if img.pixels.shape[2] in (2, 4):
            assert np.array_equal(out.pixels[..., -1], img.pixels[..., -1])
        assert np.abs(out.pixels.astype(int) - img.pixels).max() > 0
    elif isinstance(img, np.ndarray):
        assert out.dtype == img.dtype and out.shape == img.shape
    else:
        assert out.dtype == img.dtype and out.shape == img.shape
    d = wm.detect(out, demo_key, search=False)
    d = d[0] if isinstance(d, list) else d
    assert d.detected, (name, d.p_value)
    if name in STRIPPED:  # strip is slow (fixed-point iterations): a few representative types
        s = wm.strip(out, demo_key)
        assert s.removed == (True,) and type(s.images) is type(out)


def test_cli_chain_16bit_png_stays_faithful(wm, demo_key, tmp_path):
    """load -> embed -> png_bytes -> load: 16 bits, ICC and DPI kept, the mark detected."""
    a = smooth(scale=65535).astype(np.uint16)
    p = tmp_path / "in.png"
    p.write_bytes(imio.encode_png(a, {"icc_profile": icc_profile(), "dpi": (300, 300)}))
    marked = wm.embed(imio.load(p), demo_key).images
    q = tmp_path / "out.png"
    q.write_bytes(imio.png_bytes(marked))
    back = imio.load(q)
    assert isinstance(back, imio.Image16) and np.array_equal(back.pixels, marked.pixels)
    assert len(np.unique(back.pixels & 0xFF)) > 16  # the low byte is carried
    assert back.info["icc_profile"] == icc_profile() and back.info["dpi"] == pytest.approx((300, 300), abs=0.02)
    assert wm.detect(back, demo_key, search=False).detected


@pytest.mark.parametrize("key", [None, "passphrase", b"\x00" * 32])
def test_model_refuses_non_key(wm, key):
    img = np.zeros((70, 80), np.uint8)
    for call in (wm.embed, wm.detect, wm.strip):
        with pytest.raises(ValueError, match="key must be a wmark.keys.Key"):
            call(img, key)


@pytest.mark.parametrize("alpha", [0, 1, 2, -0.1, float("nan")])
def test_detect_refuses_bad_alpha(wm, demo_key, alpha):
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        wm.detect(np.zeros((70, 80), np.uint8), demo_key, alpha=alpha)


def test_model_empty_batch(wm, demo_key):
    for call in (wm.embed, wm.detect, wm.strip):
        with pytest.raises(ValueError, match="empty batch"):
            call([], demo_key)
        with pytest.raises(ValueError, match="empty batch"):
            call(torch.zeros(0, 3, 96, 96), demo_key)


@pytest.mark.parametrize("elements", [1, 997, 1 << 20])
def test_conversion_in_row_chunks_is_exact(monkeypatch, elements):
    """Row-chunked conversion gives the values of one whole-image float64 division, both ways."""
    monkeypatch.setattr(imio, "CONVERT_ELEMENTS", elements)
    for dtype, scale in ((np.uint8, 255.0), (np.uint16, 65535.0), (np.float64, 1.0)):
        for shape in ((67, 71), (67, 71, 2), (67, 71, 3), (67, 71, 4)):
            a = RNG.random(shape) if scale == 1.0 else RNG.integers(0, int(scale) + 1, shape).astype(dtype)
            x, meta = imio.from_numpy(a)
            full = x if meta.alpha is None else torch.cat([x, meta.alpha], 1)
            ref = (a.astype(np.float64) / scale).reshape(67, 71, -1).transpose(2, 0, 1)
            assert torch.equal(full, torch.from_numpy(ref.copy()).float()[None])
            y = torch.rand_like(x) * 1.2 - 0.1  # out of range too: clamped
            out = imio.to_numpy(y, meta)
            yy = (y if meta.alpha is None else torch.cat([y, meta.alpha], 1))[0].clamp(0, 1).double().numpy()
            want = (np.rint(yy * scale) if scale > 1 else yy).astype(dtype).transpose(1, 2, 0)
            assert out.dtype == dtype and np.array_equal(out, want[..., 0] if a.ndim == 2 else want)
    img = Image.fromarray(RNG.integers(0, 256, (67, 71, 3)).astype(np.uint8))
    x, meta = imio.from_pil(img)
    assert torch.equal(x, torch.from_numpy(np.asarray(img, np.float64).transpose(2, 0, 1) / 255).float()[None])
    assert np.array_equal(np.asarray(imio.to_pil(x, meta)), np.asarray(img))


def test_iter_internal_is_to_internal_one_item_at_a_time():
    items = [RNG.integers(0, 256, (70, 80, 3)).astype(np.uint8), torch.rand(2, 1, 64, 66)]
    xs, metas, single = imio.to_internal(items)
    got = list(imio.iter_internal(items))
    assert not single and [m.kind for _, m in got] == [m.kind for m in metas]
    assert all(torch.equal(a, b) for (t, _), a in zip(got, xs) for b in t)
    assert imio.is_single(items[0]) and not imio.is_single(items[1]) and imio.is_single(items[1][0])
    with pytest.raises(ValueError, match=r"images\[1\]: .*at least 64 px"):
        list(imio.iter_internal([items[0], np.zeros((10, 10), np.uint8)]))
