"""What wmark reads and writes on disk: shipped weights (sha256-checked), the shared data folder, the
one atomic writer, image listing and the luma weights.

Standard library only at import; nothing here touches torch unless given a tensor.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: file suffixes listed as images (lower case)
IMAGE_EXTS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"})

#: Rec. 601 luma weights (R, G, B)
LUMA: tuple[float, float, float] = (0.299, 0.587, 0.114)


class WeightsIntegrityError(ValueError):
    """A shipped or trained weights file is missing its checksum or does not match it."""


# -- checksums and shipped blobs ------------------------------------------------------------------------
def sha256_bytes(blob: bytes) -> str:
    """Hex sha256 of ``blob``."""
    return hashlib.sha256(blob).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_blob(package: str, name: str, what: str = "weights") -> bytes:
    """The bytes of ``<package>/weights/<name>.pt``, verified against ``weights/<name>.sha256``.

    ``what`` names the weights in error messages. FileNotFoundError where the file is not shipped,
    :class:`WeightsIntegrityError` where its sha256 is missing or differs."""
    from importlib.resources import files

    root = files(package) / "weights"
    if not (root / f"{name}.pt").is_file():
        raise FileNotFoundError(f"no shipped {what} named {name!r} in {package}/weights")
    return verified_blob(root, name, what)


def verified_blob(folder, name: str, what: str = "weights") -> bytes:
    """The bytes of ``folder/<name>.pt`` (a path or an importlib.resources Traversable), verified
    against the first word of ``folder/<name>.sha256`` (:class:`WeightsIntegrityError` otherwise)."""
    wfile, sfile = folder / f"{name}.pt", folder / f"{name}.sha256"
    blob = wfile.read_bytes()
    digest = sha256_bytes(blob)
    expected = sfile.read_text().split()[0] if sfile.is_file() else None
    if expected != digest:
        raise WeightsIntegrityError(f"{what} {name!r} fail their sha256 check (got {digest[:12]}..., expected "
                                    f"{(expected or 'none')[:12]}...)")
    return blob


def verify_sums(folder: str | os.PathLike[str], names: Iterable[str], sums: str = "SHA256SUMS") -> None:
    """Check ``folder/<name>`` for each of ``names`` against ``folder/<sums>`` (``sha256sum`` format:
    ``<hex>  <name>`` per line). :class:`WeightsIntegrityError` where the list or an entry is missing
    or a digest differs; FileNotFoundError where a listed file is absent."""
    d = Path(folder)
    sums_path = d / sums
    if not sums_path.is_file():
        raise WeightsIntegrityError(f"missing {sums_path}: cannot verify the weights")
    expected: dict[str, str] = {}
    for line in sums_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            h, _, n = line.strip().partition("  ")
            expected[n] = h
    for n in names:
        p = d / n
        if n not in expected:
            raise WeightsIntegrityError(f"{p} is not listed in {sums_path}")
        if not p.is_file():
            raise FileNotFoundError(f"weights file not found: {p}")
        got = sha256_file(p)
        if got != expected[n]:
            raise WeightsIntegrityError(
                f"sha256 mismatch for {p}: expected {expected[n]}, got {got} (file corrupted or modified)")


def write_weights(folder: str | os.PathLike[str], name: str, blob: bytes) -> str:
    """Write ``folder/<name>.pt`` and ``folder/<name>.sha256`` (atomically); returns the digest."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    digest = sha256_bytes(blob)
    write_atomic(d / f"{name}.pt", blob)
    write_atomic(d / f"{name}.sha256", f"{digest}  {name}.pt\n")
    return digest


# -- writing --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read once (reading it means setting it, which is not thread-safe)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int | None = None,
                 overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part:
    a temporary file in the same folder, fsync, then ``os.replace`` (a symlink at ``path`` is
    replaced, never followed). ``overwrite=False``: FileExistsError where ``path`` exists (or is a
    link), checked atomically by hard-linking the temporary file into place. ``str`` is written as
    UTF-8; ``mode`` defaults to 0o666 less the umask, as ``open`` would give."""
    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if mode is None:
        mode = 0o666 & ~_umask()
    if not overwrite and os.path.lexists(p):
        raise FileExistsError(f"{p}: exists (pass --overwrite to replace it)")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)  # fails where anything, even a dangling link, is already at p
            except FileExistsError:
                raise FileExistsError(f"{p}: exists (pass --overwrite to replace it)") from None
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


class FolderLockedError(FileExistsError):
    """Another live wmark process holds the output folder."""


LOCK_NAME = ".wmark.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _read_lock(path: Path) -> dict:
    import json

    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _stale(info: dict) -> bool:
    """A lock whose process is gone: same host and a pid that no longer runs (or an unreadable lock
    left by a write that was cut short)."""
    import socket

    pid = info.get("pid")
    if not isinstance(pid, int):
        return True
    return info.get("host") == socket.gethostname() and not _pid_alive(pid)


def sweep_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the ``.NAME.XXXX.tmp`` files that :func:`write_atomic` leaves behind when a process is
    killed mid-write; only safe while holding the folder's lock. Returns what was removed."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], command: str) -> Iterator[Path]:
    """Hold ``folder`` for one writing run: creates ``folder/.wmark.lock`` (O_EXCL; JSON with pid,
    host, command, start time), sweeps temp files of interrupted writes, and removes the lock on exit.

    :class:`FolderLockedError` (one line: folder, command, pid) where a live process holds it; a
    lock left by a dead process on this host is taken over."""
    import json
    import socket
    import time

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    lock = d / LOCK_NAME
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileExistsError:
            held = _read_lock(lock)
            if not _stale(held):
                raise FolderLockedError(
                    f"{d} is in use by 'wmark {held.get('command', '?')}' (pid {held.get('pid')} on "
                    f"{held.get('host', '?')}, since {held.get('started', '?')}); wait for it, or delete "
                    f"{lock} if that process is gone") from None
            lock.unlink(missing_ok=True)  # the holder is dead: take over
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(info) + "\n")
        break
    else:  # pragma: no cover - three racers in a row
        raise FolderLockedError(f"{d}: could not take {lock} (another run keeps taking it)")
    try:
        sweep_temp_files(d)
        yield d
    finally:
        if _read_lock(lock).get("pid") == os.getpid():
            lock.unlink(missing_ok=True)


# -- the shared data folder -----------------------------------------------------------------------------
def shared_data(sub: str | None = None) -> Path:
    """The shared data folder (or its subfolder ``sub``): ``$WMARK_SHARED_DATA`` if set, else
    ``../shared/data`` beside the source checkout or the working directory (the first that exists)."""
    env = os.environ.get("WMARK_SHARED_DATA")
    if env:
        base = Path(env)
    else:
        repo = Path(__file__).resolve().parents[2]
        cands = [b.parent / "shared" / "data" for b in (repo, Path.cwd())]
        base = next((c for c in cands if c.is_dir()), cands[0])
    return base / sub if sub else base


# -- images ---------------------------------------------------------------------------------------------
def list_images(folder: str | os.PathLike[str], exts: Iterable[str] = IMAGE_EXTS) -> list[Path]:
    """The image files directly in ``folder``, sorted by name (ValueError if it is not a folder)."""
    d = Path(folder)
    if not d.is_dir():
        raise ValueError(f"{d}: not a folder of images")
    allowed = {e.lower() for e in exts}
    return sorted(p for p in d.iterdir() if p.suffix.lower() in allowed and p.is_file())


def luma(x: "torch.Tensor") -> "torch.Tensor":
    """``[B, 3, H, W]`` (or ``[B, 1, H, W]``) -> ``[B, 1, H, W]`` Rec. 601 luminance."""
    if x.shape[1] == 1:
        return x
    w = x.new_tensor(LUMA).view(1, 3, 1, 1)
    return (x[:, :3] * w).sum(1, keepdim=True)
