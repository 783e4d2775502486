"""wmark.runtime.manifest: what counts as finished work, torn lines, parameters."""
from __future__ import annotations

from wmark.assets import sha256_bytes
from wmark.runtime.manifest import MANIFEST_NAME, Manifest


def _finish(m: Manifest, d, name: str, blob: bytes, src, src_sha: str) -> None:
    (d / name).write_bytes(blob)
    m.record(d / name, src, src_sha, sha256_bytes(blob))


def test_complete_needs_same_input_params_and_bytes(tmp_path):
    src = tmp_path / "a.jpg"
    m = Manifest(tmp_path, {"key": "k1"})
    _finish(m, tmp_path, "a.png", b"out", src, "s1")
    again = Manifest(tmp_path, {"key": "k1"})
    assert again.complete(tmp_path / "a.png", "s1")
    assert not again.complete(tmp_path / "a.png", "s2")  # the input changed
    assert not Manifest(tmp_path, {"key": "k2"}).complete(tmp_path / "a.png", "s1")  # other settings
    (tmp_path / "a.png").write_bytes(b"edited")
    assert not again.complete(tmp_path / "a.png", "s1")  # the file is not what was written
    assert not again.complete(tmp_path / "b.png", "s1")  # never recorded


def test_a_torn_last_line_is_ignored_and_not_glued_to(tmp_path):
    m = Manifest(tmp_path, {})
    _finish(m, tmp_path, "a.png", b"A", tmp_path / "a", "sa")
    with open(tmp_path / MANIFEST_NAME, "a") as f:
        f.write('{"output": "b.png", "sha')  # a kill mid-line
    m2 = Manifest(tmp_path, {})
    assert m2.complete(tmp_path / "a.png", "sa") and not m2.complete(tmp_path / "b.png", "sb")
    _finish(m2, tmp_path, "c.png", b"C", tmp_path / "c", "sc")
    m3 = Manifest(tmp_path, {})
    assert m3.complete(tmp_path / "a.png", "sa") and m3.complete(tmp_path / "c.png", "sc")
