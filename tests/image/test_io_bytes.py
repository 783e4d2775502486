"""``io.load_bytes``: the same decoder as ``io.load``. Every file test of test_io.py runs again here
with ``io.load`` replaced by "read the file, then ``load_bytes(data, str(path))``", so each check and
refusal (limits, truncation, formats, EXIF orientation, 16-bit) holds for bytes in memory too, with
the same one-line messages opened by the name."""
from __future__ import annotations

import importlib.util
import inspect
import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from wmark.image import io as imio  # noqa: E402

_spec = importlib.util.spec_from_file_location("_test_io_via_bytes", Path(__file__).with_name("test_io.py"))
_T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_T)

_MODEL_FIXTURES = {"wm", "demo_key", "key"}
for _name, _fn in vars(_T).copy().items():
    if _name.startswith("test_") and callable(_fn) and not _MODEL_FIXTURES & set(inspect.signature(_fn).parameters):
        globals()[_name] = _fn  # collected here, run under the fixture below


@pytest.fixture(autouse=True)
def load_goes_through_bytes(monkeypatch):
    real = imio.load_bytes
    calls = []

    def via_bytes(path, max_pixels=None):
        p = Path(path)
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a directory")
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")
        calls.append(p)
        return real(p.read_bytes(), str(p), max_pixels=max_pixels)

    monkeypatch.setattr(imio, "load", via_bytes)
    yield calls


def test_load_bytes_equals_load_and_names_the_sample(tmp_path):
    a = np.random.default_rng(3).integers(0, 256, (90, 110, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    img = imio.load_bytes(buf.getvalue(), "shard.tar/s001.png")
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), a)
    assert np.array_equal(np.asarray(imio.load_bytes(bytearray(buf.getvalue()), "x")), a)
    assert np.array_equal(np.asarray(imio.load_bytes(memoryview(buf.getvalue()), "x")), a)
    with pytest.raises(imio.ImageError, match=r"^shard\.tar/s001\.png: truncated|^shard\.tar/s001\.png: cannot read"):
        imio.load_bytes(buf.getvalue()[:200], "shard.tar/s001.png")
    with pytest.raises(imio.ImageError, match=r"^s: empty file \(0 bytes\)"):
        imio.load_bytes(b"", "s")
    with pytest.raises(imio.ImageError, match="exceeds the limit"):
        imio.load_bytes(buf.getvalue(), "s", max_pixels=5000)
    with pytest.raises(TypeError, match="bytes"):
        imio.load_bytes("not bytes", "s")


def test_the_real_load_reads_through_the_same_decoder(tmp_path, monkeypatch):
    monkeypatch.undo()  # the real load
    seen = []
    real = imio._decode
    monkeypatch.setattr(imio, "_decode", lambda data, name, limit: seen.append(name) or real(data, name, limit))
    p = tmp_path / "a.png"
    Image.new("RGB", (80, 70), (10, 20, 30)).save(p)
    assert imio.load(p).size == (80, 70) and seen == [str(p)]
