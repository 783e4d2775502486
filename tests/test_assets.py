"""wmark.assets: checksummed blobs, the atomic writer, the shared-data lookup, image listing, luma."""
from __future__ import annotations

import os

import pytest
import torch

from wmark import assets


def _weights(folder, name: str, blob: bytes) -> None:
    assets.write_weights(folder, name, blob)


def test_write_weights_round_trip(tmp_path):
    digest = assets.write_weights(tmp_path, "w", b"\x00\x01weights")
    assert (tmp_path / "w.sha256").read_text() == f"{digest}  w.pt\n"
    assert assets.verified_blob(tmp_path, "w") == b"\x00\x01weights"
    assert digest == assets.sha256_file(tmp_path / "w.pt") == assets.sha256_bytes(b"\x00\x01weights")


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-sum"])
def test_tampered_weights_are_refused(tmp_path, damage):
    _weights(tmp_path, "w", bytes(range(200)))
    if damage == "flip":
        blob = (tmp_path / "w.pt").read_bytes()
        (tmp_path / "w.pt").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    elif damage == "truncate":
        (tmp_path / "w.pt").write_bytes(bytes(range(199)))
    else:
        (tmp_path / "w.sha256").unlink()
    with pytest.raises(assets.WeightsIntegrityError, match="sha256"):
        assets.verified_blob(tmp_path, "w", "test weights")


def test_shipped_blobs_verify():
    for package, name in (("wmark.image", "default"), ("wmark.loop", "mnist_lenet"), ("wmark.attacks", "regen_ae")):
        assert len(assets.shipped_blob(package, name)) <= 8 * 2**20
    with pytest.raises(FileNotFoundError, match="no shipped"):
        assets.shipped_blob("wmark.image", "missing")


def test_write_atomic_replaces_whole_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.json"
    assets.write_atomic(p, "first")
    assets.write_atomic(p, b"second")
    assert p.read_bytes() == b"second"
    assert sorted(os.listdir(tmp_path)) == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == 0o666 & ~umask
    assets.write_atomic(tmp_path / "k", "secret", mode=0o600)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


def test_write_atomic_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "a.txt"
    p.write_text("old")

    def boom(*_a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        assets.write_atomic(p, "new")
    assert p.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_shared_data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WMARK_SHARED_DATA", str(tmp_path))
    assert assets.shared_data() == tmp_path and assets.shared_data("kodak") == tmp_path / "kodak"


def test_list_images(tmp_path):
    for n in ("b.PNG", "a.jpg", "c.txt", "d.webp"):
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "e.png").mkdir()
    assert [p.name for p in assets.list_images(tmp_path)] == ["a.jpg", "b.PNG", "d.webp"]
    assert [p.name for p in assets.list_images(tmp_path, (".jpg",))] == ["a.jpg"]
    with pytest.raises(ValueError, match="not a folder"):
        assets.list_images(tmp_path / "a.jpg")


def test_luma_closed_form():
    x = torch.zeros(2, 3, 4, 5)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 0.5, 0.25
    y = assets.luma(x)
    assert y.shape == (2, 1, 4, 5)
    assert torch.allclose(y, torch.full_like(y, 0.299 + 0.587 * 0.5 + 0.114 * 0.25))
    g = torch.rand(1, 1, 3, 3)
    assert assets.luma(g) is g


def test_set_threads_pins_and_restores():
    from wmark.runtime.threads import set_threads

    before = torch.get_num_threads()
    restore = set_threads(1)
    assert torch.get_num_threads() == 1
    restore()
    assert torch.get_num_threads() == before
    set_threads(None)()
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"):
        set_threads(0)


def test_write_atomic_without_overwrite_refuses_files_and_links(tmp_path):
    p = tmp_path / "out.png"
    assets.write_atomic(p, b"one", overwrite=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        assets.write_atomic(p, b"two", overwrite=False)
    assert p.read_bytes() == b"one"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.png"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        assets.write_atomic(link, b"evil", overwrite=False)
    assets.write_atomic(link, b"new", overwrite=True)  # replaces the link itself, never its target
    assert victim.read_text() == "keep me" and not link.is_symlink() and link.read_bytes() == b"new"
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        assets.write_atomic(tmp_path / "dangling.png", b"x", overwrite=False)
    assert not (tmp_path / "nowhere").exists()
    assert sorted(q.name for q in tmp_path.iterdir() if q.name.startswith(".")) == []


def test_folder_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    d = tmp_path / "out"
    with assets.folder_lock(d, "embed"):
        info = json.loads((d / assets.LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "embed"
        with pytest.raises(assets.FolderLockedError, match=f"pid {os.getpid()}"):
            with assets.folder_lock(d, "strip"):
                pass
        assert (d / assets.LOCK_NAME).exists()  # the refused run leaves the holder's lock alone
    assert not (d / assets.LOCK_NAME).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (d / assets.LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    (d / ".kodim01.png.x1y2.tmp").write_bytes(b"half a png")
    (d / "kept.png").write_bytes(b"a result")
    with assets.folder_lock(d, "embed"):
        assert not (d / ".kodim01.png.x1y2.tmp").exists() and (d / "kept.png").exists()
    assert not (d / assets.LOCK_NAME).exists()


def test_folder_lock_does_not_follow_a_planted_link(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("outside")
    (d / assets.LOCK_NAME).symlink_to(victim)
    with assets.folder_lock(d, "embed"):  # an unreadable (non-JSON) lock is stale: replaced, not written through
        pass
    assert victim.read_text() == "outside"
