"""Secret keys: one object drives every scheme, text and image.

A :class:`Key` holds secret bytes and derives independent per-purpose seeds with keyed BLAKE2b, so
the text green lists, the image payload scrambling and the loop's marks never share randomness.
Its ``repr`` shows only a public fingerprint; the secret is never printed, logged or put in an
exception or warning.

Key files (one line, UTF-8; at most :data:`MAX_KEY_FILE_BYTES`):

- ``HEX``: the raw key, as written by :meth:`Key.save` and ``wmark keygen``.
- ``pbkdf2-sha256:ROUNDS:SALT_HEX:KEY_HEX``: a key derived from a passphrase with a random salt
  (``wmark keygen OUT --passphrase``). The file holds the derived key and its recipe, never the
  passphrase: a leaked file then gives away this key only, not a passphrase its owner may use
  elsewhere, and loading costs no key stretching. The salt is not secret; the passphrase and the
  salt recreate the key (``wmark keygen OUT --passphrase --salt SALT_HEX``).
- ``passphrase:TEXT``: the unsalted form (fixed salt), for a passphrase shared by word, which must
  give the same key on any machine with nothing else to exchange. A fixed salt lets one precomputed
  dictionary attack every such key at once, so new keys should be random or salted.

Loading a key file warns (:class:`KeyWarning`) when it holds the public demo key, when other users
may read or change it (POSIX mode bits ``0o077``), and when its passphrase is shorter than
:data:`MIN_PASSPHRASE_CHARS`.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

#: The public demo passphrase used by examples, tests and ``make demo``. Anyone can read it:
#: never use it to mark anything that matters.
DEMO_PASSPHRASE = "wmark public demo key - do not use in production"

#: Passphrases shorter than this warn (they are still accepted).
MIN_PASSPHRASE_CHARS = 12

#: Bytes of random salt drawn for a new passphrase-derived key.
SALT_BYTES = 16

#: A key file larger than this is refused unread.
MAX_KEY_FILE_BYTES = 4096

_MIN_BYTES = 16
_MAX_BYTES = 64  # BLAKE2b key limit
_PBKDF2_ROUNDS = 200_000
_PBKDF2_BYTES = 32
_FIXED_SALT = b"wmark/passphrase/v1"  # the unsalted form; changing it changes every such key
_PASSPHRASE_PREFIX = "passphrase:"
_SALTED_PREFIX = "pbkdf2-sha256:"
# sha256 of the demo key's secret: recognises it without running the KDF on every load
_DEMO_SHA256 = "56ea3d3562d0d4af145dc23a0aac0aed9f9f8aa9c4e4b5718747bdd11467a275"


class InvalidKeyError(ValueError):
    """Raised for a missing, empty, short or malformed key."""


class KeyWarning(UserWarning):
    """A key that works but is unsafe: the public demo key, a key file others can read, a short
    passphrase."""


def _warn(message: str, stacklevel: int) -> None:
    warnings.warn(KeyWarning(message), stacklevel=stacklevel + 1)


def _check_salt(salt: object) -> bytes:
    if not isinstance(salt, (bytes, bytearray)):
        raise InvalidKeyError(f"salt must be bytes, got {type(salt).__name__}")
    if not SALT_BYTES <= len(salt) <= _MAX_BYTES:
        raise InvalidKeyError(f"salt must be {SALT_BYTES}..{_MAX_BYTES} bytes, got {len(salt)}")
    return bytes(salt)


def _stretch(passphrase: str, salt: bytes | None, where: str, stacklevel: int) -> bytes:
    """PBKDF2-HMAC-SHA256 of ``passphrase``; warns (never refuses) when it is short. ``where``
    prefixes the warning; ``stacklevel`` counts from the caller of this function."""
    if not isinstance(passphrase, str) or not passphrase:
        raise InvalidKeyError("passphrase must be a non-empty string")
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        _warn(f"{where}passphrase is shorter than {MIN_PASSPHRASE_CHARS} characters and can be guessed; "
              "use a longer one or a random key from `wmark keygen`", stacklevel + 1)
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode(), _FIXED_SALT if salt is None else salt,
                               _PBKDF2_ROUNDS, _PBKDF2_BYTES)


def _hex_bytes(text: str, what: str, lo: int, hi: int) -> bytes:
    """Hex ``text`` as lo..hi bytes; the error names ``what`` and never echoes the text."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidKeyError(f"{what} is not hex") from None
    if not lo <= len(raw) <= hi:
        raise InvalidKeyError(f"{what} must be {lo}..{hi} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True, eq=False)
class Key:
    """A secret watermark key (16..64 bytes).

    Build it with :meth:`from_bytes`, :meth:`from_passphrase`, :meth:`from_file` or :meth:`generate`;
    there is no default key. ``derive(purpose)`` gives 32 independent bytes per purpose. ``salt`` is
    the public salt of a salted passphrase key (``None`` otherwise); equality ignores it.
    """

    _secret: bytes = field(repr=False)
    _salt: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self._secret, (bytes, bytearray)):
            raise InvalidKeyError(f"key must be bytes, got {type(self._secret).__name__}")
        if not _MIN_BYTES <= len(self._secret) <= _MAX_BYTES:
            raise InvalidKeyError(f"key must be {_MIN_BYTES}..{_MAX_BYTES} bytes, got {len(self._secret)}")
        object.__setattr__(self, "_secret", bytes(self._secret))
        if self._salt is not None:
            object.__setattr__(self, "_salt", _check_salt(self._salt))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, secret: bytes) -> "Key":
        """Key from raw secret bytes (16..64 bytes)."""
        return cls(secret)

    @classmethod
    def from_passphrase(cls, passphrase: str, salt: bytes | None = None) -> "Key":
        """Key stretched from a passphrase with PBKDF2-HMAC-SHA256 (200 000 rounds, 32 bytes).

        ``salt=None`` uses the fixed salt of the ``passphrase:TEXT`` form (same passphrase, same key
        everywhere); a salt (16..64 bytes, e.g. ``secrets.token_bytes(16)``) is kept on the key and
        written by :meth:`save`. Warns (:class:`KeyWarning`) below :data:`MIN_PASSPHRASE_CHARS`.
        """
        if salt is not None:
            salt = _check_salt(salt)
        return cls(_stretch(passphrase, salt, "", stacklevel=2), salt)

    @classmethod
    def demo(cls) -> "Key":
        """The public demo key (:data:`DEMO_PASSPHRASE`): for examples and tests only."""
        return cls.from_passphrase(DEMO_PASSPHRASE)

    @classmethod
    def generate(cls, nbytes: int = 32) -> "Key":
        """A fresh random key from the OS CSPRNG."""
        if not isinstance(nbytes, int) or not _MIN_BYTES <= nbytes <= _MAX_BYTES:
            raise InvalidKeyError(f"key must be {_MIN_BYTES}..{_MAX_BYTES} bytes, got {nbytes}")
        return cls(secrets.token_bytes(nbytes))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "Key":
        """Key from a key file (any form in the module docstring). Errors are one-line
        :class:`InvalidKeyError` naming the file; warnings are :class:`KeyWarning`."""
        p = Path(path)
        try:
            with open(p, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise InvalidKeyError(f"key file is not a regular file: {p}")
                blob = f.read(MAX_KEY_FILE_BYTES + 1)
        except FileNotFoundError:
            raise InvalidKeyError(f"key file not found: {p}") from None
        except IsADirectoryError:
            raise InvalidKeyError(f"key file is not a regular file: {p}") from None
        except PermissionError:
            raise InvalidKeyError(f"key file cannot be read (permission denied): {p}") from None
        except OSError as exc:
            raise InvalidKeyError(f"key file cannot be read ({exc.strerror or type(exc).__name__}): {p}") from None
        if len(blob) > MAX_KEY_FILE_BYTES:
            raise InvalidKeyError(f"key file is larger than {MAX_KEY_FILE_BYTES} bytes: {p}")
        try:
            text = blob.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InvalidKeyError(f"key file is not text (expected hex or 'passphrase:...'): {p}") from None
        if not text:
            raise InvalidKeyError(f"key file is empty: {p}")
        try:
            key = cls._parse(text, where=f"{p}: ")
        except InvalidKeyError as exc:
            raise InvalidKeyError(f"key file {p}: {exc}") from None
        if hashlib.sha256(key._secret).hexdigest() == _DEMO_SHA256:
            _warn(f"{p}: this is the public demo key: anyone can detect and strip its marks; "
                  "use `wmark keygen` for real work", stacklevel=2)
        elif os.name == "posix" and st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            how = "readable" if mode & 0o044 else "writable"
            _warn(f"{p} is {how} by other users (mode {mode:04o}); chmod 600 {p}", stacklevel=2)
        return key

    @classmethod
    def _parse(cls, text: str, where: str) -> "Key":
        """The key in a key file's stripped text; messages never quote the text."""
        if text.startswith(_PASSPHRASE_PREFIX):
            # where names the file in the warning; errors get it from from_file
            return cls(_stretch(text[len(_PASSPHRASE_PREFIX):].strip(), None, where, stacklevel=3))
        if text.startswith(_SALTED_PREFIX):
            parts = text[len(_SALTED_PREFIX):].split(":")
            if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) < 1:
                raise InvalidKeyError(f"expected one line '{_SALTED_PREFIX}ROUNDS:SALT_HEX:KEY_HEX'")
            salt = _hex_bytes(parts[1], "salt", SALT_BYTES, _MAX_BYTES)
            return cls(_hex_bytes(parts[2], "key", _MIN_BYTES, _MAX_BYTES), salt)
        try:
            return cls(_hex_bytes(text, "key", _MIN_BYTES, _MAX_BYTES))
        except InvalidKeyError as exc:
            if "not hex" in str(exc):
                raise InvalidKeyError(f"does not hold hex, '{_SALTED_PREFIX}...' or 'passphrase:...'") from None
            raise

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the key to a new file, mode 0600: hex, or the ``pbkdf2-sha256`` line when it has a
        salt. Atomic; FileExistsError where anything (a file, a symlink) is at ``path``."""
        from wmark.assets import write_atomic

        if self._salt is None:
            line = self._secret.hex()
        else:
            line = f"{_SALTED_PREFIX}{_PBKDF2_ROUNDS}:{self._salt.hex()}:{self._secret.hex()}"
        return write_atomic(path, line + "\n", mode=0o600, overwrite=False)

    # -- derivation -----------------------------------------------------------------------------
    def derive(self, purpose: str, nbytes: int = 32) -> bytes:
        """Independent pseudorandom bytes for ``purpose`` (keyed BLAKE2b)."""
        return hashlib.blake2b(purpose.encode(), key=self._secret, digest_size=nbytes,
                               person=b"wmark-derive").digest()

    def seed(self, purpose: str, bits: int = 31) -> int:
        """A non-negative integer seed < 2**bits derived for ``purpose``: for seeding a non-secret
        RNG (the loop's toy marker). It holds at most 64 bits of key material, so it is no keyed hash:
        text schemes take 256-bit subkeys from :meth:`derive` (see :mod:`wmark.text.hashing`)."""
        return int.from_bytes(self.derive(purpose, 8), "little") & ((1 << bits) - 1)

    @property
    def fingerprint(self) -> str:
        """Public 8-hex-digit identifier (safe to print; reveals nothing usable)."""
        return self.derive("fingerprint", 4).hex()

    @property
    def salt(self) -> bytes | None:
        """The public salt of a salted passphrase key, else ``None``."""
        return self._salt

    def __repr__(self) -> str:
        return f"Key(fingerprint={self.fingerprint})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and secrets.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.derive("python-hash", 8))

    def __reduce__(self):  # pickling keeps the secret (needed for multiprocessing); repr does not
        return (Key, (self._secret, self._salt))
