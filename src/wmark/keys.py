"""Secret keys: one object drives every scheme, text and image.

A :class:`Key` holds secret bytes and derives independent per-purpose seeds with keyed BLAKE2b, so
the text green lists, the image payload scrambling and the loop's marks never share randomness.
Its ``repr`` shows only a public fingerprint; the secret is never printed or logged.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

#: The public demo passphrase used by examples, tests and ``make demo``. Anyone can read it:
#: never use it to mark anything that matters.
DEMO_PASSPHRASE = "wmark public demo key - do not use in production"

_MIN_BYTES = 16
_MAX_BYTES = 64  # BLAKE2b key limit
_PBKDF2_ROUNDS = 200_000
_SALT = b"wmark/passphrase/v1"


class InvalidKeyError(ValueError):
    """Raised for a missing, empty, short or malformed key."""


@dataclass(frozen=True, eq=False)
class Key:
    """A secret watermark key (16..64 bytes).

    Build it with :meth:`from_bytes`, :meth:`from_passphrase`, :meth:`from_file` or :meth:`generate`;
    there is no default key. ``derive(purpose)`` gives 32 independent bytes per purpose.
    """

    _secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self._secret, (bytes, bytearray)):
            raise InvalidKeyError(f"key must be bytes, got {type(self._secret).__name__}")
        if not _MIN_BYTES <= len(self._secret) <= _MAX_BYTES:
            raise InvalidKeyError(f"key must be {_MIN_BYTES}..{_MAX_BYTES} bytes, got {len(self._secret)}")
        object.__setattr__(self, "_secret", bytes(self._secret))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, secret: bytes) -> "Key":
        """Key from raw secret bytes (16..64 bytes)."""
        return cls(secret)

    @classmethod
    def from_passphrase(cls, passphrase: str) -> "Key":
        """Key stretched from a passphrase with PBKDF2-HMAC-SHA256 (deterministic)."""
        if not isinstance(passphrase, str) or not passphrase:
            raise InvalidKeyError("passphrase must be a non-empty string")
        return cls(hashlib.pbkdf2_hmac("sha256", passphrase.encode(), _SALT, _PBKDF2_ROUNDS))

    @classmethod
    def demo(cls) -> "Key":
        """The public demo key (:data:`DEMO_PASSPHRASE`): for examples and tests only."""
        return cls.from_passphrase(DEMO_PASSPHRASE)

    @classmethod
    def generate(cls, nbytes: int = 32) -> "Key":
        """A fresh random key from the OS CSPRNG."""
        return cls(secrets.token_bytes(nbytes))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Key":
        """Key from a key file: one line of hex (as written by :meth:`save`), or a line
        ``passphrase:TEXT``."""
        p = Path(path)
        if not p.is_file():
            raise InvalidKeyError(f"key file not found: {p}")
        try:
            text = p.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise InvalidKeyError(f"key file is not text (expected hex or 'passphrase:...'): {p}") from None
        if not text:
            raise InvalidKeyError(f"key file is empty: {p}")
        if text.startswith("passphrase:"):
            return cls.from_passphrase(text[len("passphrase:"):].strip())
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise InvalidKeyError(f"key file does not hold hex (or 'passphrase:...'): {p}") from None
        if not _MIN_BYTES <= len(raw) <= _MAX_BYTES:
            raise InvalidKeyError(f"key in {p} must be {_MIN_BYTES}..{_MAX_BYTES} bytes, got {len(raw)}")
        return cls(raw)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the key as hex to a new file (mode 0600). Never overwrites an existing file."""
        p = Path(path)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._secret.hex() + "\n")
        return p

    # -- derivation -----------------------------------------------------------------------------
    def derive(self, purpose: str, nbytes: int = 32) -> bytes:
        """Independent pseudorandom bytes for ``purpose`` (keyed BLAKE2b)."""
        return hashlib.blake2b(purpose.encode(), key=self._secret, digest_size=nbytes,
                               person=b"wmark-derive").digest()

    def seed(self, purpose: str, bits: int = 31) -> int:
        """A non-negative integer seed < 2**bits derived for ``purpose``."""
        return int.from_bytes(self.derive(purpose, 8), "little") & ((1 << bits) - 1)

    @property
    def fingerprint(self) -> str:
        """Public 8-hex-digit identifier (safe to print; reveals nothing usable)."""
        return self.derive("fingerprint", 4).hex()

    def __repr__(self) -> str:
        return f"Key(fingerprint={self.fingerprint})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and secrets.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.derive("python-hash", 8))

    def __reduce__(self):  # pickling keeps the secret (needed for multiprocessing); repr does not
        return (Key, (self._secret,))
