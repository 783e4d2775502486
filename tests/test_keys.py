import contextlib
import hashlib
import os
import pickle
import stat
import warnings

import pytest

from wmark import keys as keys_mod
from wmark.keys import (DEMO_PASSPHRASE, MIN_PASSPHRASE_CHARS, SALT_BYTES, InvalidKeyError, Key,
                        KeyWarning)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX mode bits")
LONG = "a long enough passphrase"  # >= MIN_PASSPHRASE_CHARS
SALT = bytes(range(SALT_BYTES))


def _write(path, text: str, mode: int = 0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


@contextlib.contextmanager
def no_key_warning():
    """Any KeyWarning inside is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyWarning)
        yield


# -- basics ---------------------------------------------------------------------------------------
def test_repr_never_shows_secret():
    secret = bytes(range(32))
    for k in (Key.from_bytes(secret), Key(secret, SALT)):
        for text in (repr(k), str(k), f"{k}"):
            assert secret.hex() not in text and "fingerprint" in text


def test_derive_is_deterministic_and_purpose_separated():
    k = Key.from_passphrase("correct horse")
    assert k.derive("a") == Key.from_passphrase("correct horse").derive("a")
    assert k.derive("a") != k.derive("b")
    assert k.derive("a") != Key.from_passphrase("correct horse!").derive("a")
    assert 0 <= k.seed("x") < 2**31


def test_short_key_rejected():
    with pytest.raises(InvalidKeyError):
        Key.from_bytes(b"short")
    with pytest.raises(InvalidKeyError, match="16..64"):
        Key.generate(8)


def test_pickle_keeps_secret_and_salt():
    k = Key.from_passphrase(LONG, SALT)
    k2 = pickle.loads(pickle.dumps(k))
    assert k2 == k and k2.salt == SALT


# -- legacy forms keep their bytes ----------------------------------------------------------------
def test_demo_key_is_the_documented_passphrase_and_unchanged():
    with no_key_warning():  # Key.demo() is for examples: no warning
        demo = Key.demo()
    assert demo == Key.from_passphrase(DEMO_PASSPHRASE)
    assert demo.fingerprint == "d633afc2"
    assert demo._secret.hex().startswith("c5263d28dfcbfc78")
    assert hashlib.sha256(demo._secret).hexdigest() == keys_mod._DEMO_SHA256
    assert demo.salt is None


def test_unsalted_passphrase_unchanged():
    k = Key.from_passphrase("correct horse battery staple")
    assert k.fingerprint == "6694a68f" and k.salt is None
    assert k == Key.from_passphrase("correct horse battery staple", salt=None)


def test_passphrase_key_file(tmp_path):
    p = _write(tmp_path / "k.txt", f"passphrase: {LONG}\n")
    with no_key_warning():
        assert Key.from_file(p) == Key.from_passphrase(LONG)


# -- salted passphrase keys -----------------------------------------------------------------------
def test_salted_keys():
    a = Key.from_passphrase(LONG, SALT)
    assert a == Key.from_passphrase(LONG, bytes(SALT)) and a.salt == SALT
    assert a != Key.from_passphrase(LONG, bytes(reversed(SALT)))
    assert a != Key.from_passphrase(LONG)  # the fixed salt is a different key
    assert a != Key.from_passphrase(LONG + "!", SALT)


@pytest.mark.parametrize("salt", [b"", b"short", bytes(65), "not bytes"])
def test_bad_salt_rejected(salt):
    with pytest.raises(InvalidKeyError, match="salt"):
        Key.from_passphrase(LONG, salt)


def test_salted_file_roundtrip(tmp_path):
    k = Key.from_passphrase(LONG, SALT)
    p = k.save(tmp_path / "k.key")
    text = p.read_text()
    assert text == f"pbkdf2-sha256:200000:{SALT.hex()}:{k._secret.hex()}\n"
    assert LONG not in text  # the file holds the derived key, never the passphrase
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    with no_key_warning():
        back = Key.from_file(p)
    assert back == k and back.salt == SALT
    assert back == Key.from_passphrase(LONG, back.salt)  # passphrase + stored salt recreate it


# -- saving ---------------------------------------------------------------------------------------
def test_save_and_load_roundtrip_never_overwrites(tmp_path):
    k = Key.generate()
    p = tmp_path / "k.key"
    k.save(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert p.read_text() == k._secret.hex() + "\n"
    assert Key.from_file(p) == k
    with pytest.raises(FileExistsError):
        Key.generate().save(p)
    assert Key.from_file(p) == k
    assert [q.name for q in tmp_path.iterdir()] == ["k.key"]  # no temporary left behind


def test_save_refuses_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "k.key"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        Key.generate().save(link)
    assert victim.read_text() == "precious\n" and link.is_symlink()
    dangling = tmp_path / "d.key"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        Key.generate().save(dangling)
    assert not (tmp_path / "nowhere").exists()


def test_save_uses_the_one_writer(tmp_path, monkeypatch):
    import wmark.assets

    calls = []
    real = wmark.assets.write_atomic
    monkeypatch.setattr(wmark.assets, "write_atomic", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    Key.generate().save(tmp_path / "k.key")
    assert calls == [{"mode": 0o600, "overwrite": False}]


# -- warnings -------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["passphrase", "hex"])
def test_demo_key_file_warns(tmp_path, form):
    text = f"passphrase:{DEMO_PASSPHRASE}" if form == "passphrase" else Key.demo()._secret.hex()
    p = _write(tmp_path / "demo.key", text + "\n", 0o644)
    with pytest.warns(KeyWarning, match="public demo key") as rec:
        assert Key.from_file(p) == Key.demo()
    assert len(rec) == 1  # the demo key is public: its file mode does not matter
    assert str(p) in str(rec[0].message) and "wmark keygen" in str(rec[0].message)
    assert rec[0].filename == __file__  # points at the caller


@posix_only
@pytest.mark.parametrize("mode, how", [(0o644, "readable"), (0o640, "readable"), (0o604, "readable"),
                                       (0o620, "writable"), (0o602, "writable")])
def test_open_key_file_warns(tmp_path, mode, how):
    k = Key.generate()
    p = k.save(tmp_path / "k.key")
    os.chmod(p, mode)
    with pytest.warns(KeyWarning) as rec:
        assert Key.from_file(p) == k
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert msg == f"{p} is {how} by other users (mode {mode:04o}); chmod 600 {p}"
    assert k._secret.hex() not in msg


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_private_key_file_does_not_warn(tmp_path, mode):
    p = Key.generate().save(tmp_path / "k.key")
    os.chmod(p, mode)
    with no_key_warning():
        Key.from_file(p)


def test_short_passphrase_warns_never_refuses():
    short = "x" * (MIN_PASSPHRASE_CHARS - 1)
    with pytest.warns(KeyWarning, match=f"shorter than {MIN_PASSPHRASE_CHARS}") as rec:
        k = Key.from_passphrase(short)
    assert len(rec) == 1 and short not in str(rec[0].message)
    assert rec[0].filename == __file__
    with pytest.warns(KeyWarning):
        assert k == Key.from_passphrase(short)
    with pytest.warns(KeyWarning):
        Key.from_passphrase("x", SALT)
    with no_key_warning():
        Key.from_passphrase("x" * MIN_PASSPHRASE_CHARS)
        Key.from_passphrase("y" * MIN_PASSPHRASE_CHARS, SALT)


def test_short_passphrase_file_warns_with_file_name(tmp_path):
    p = _write(tmp_path / "k.txt", "passphrase:hunter2\n")
    with pytest.warns(KeyWarning) as rec:
        k = Key.from_file(p)
    assert len(rec) == 1
    with pytest.warns(KeyWarning):
        assert k == Key.from_passphrase("hunter2")
    msg = str(rec[0].message)
    assert str(p) in msg and "hunter2" not in msg and rec[0].filename == __file__


# -- bad key files --------------------------------------------------------------------------------
SECRET_HEX = "ab" * 15  # 15 bytes: too short, and must not be echoed


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"  \n", "empty"),
    (b"zz-not-hex", "hex"),
    (b"abcd", "16..64 bytes"),
    (SECRET_HEX.encode(), "16..64 bytes"),
    (b"\xff\xfe\x00binary", "not text"),
    (b"passphrase:", "non-empty"),
    (b"passphrase:   \n", "non-empty"),
    (b"pbkdf2-sha256:200000:" + SALT.hex().encode(), "ROUNDS:SALT_HEX:KEY_HEX"),
    (b"pbkdf2-sha256:x:" + SALT.hex().encode() + b":" + b"ab" * 32, "ROUNDS"),
    (b"pbkdf2-sha256:0:" + SALT.hex().encode() + b":" + b"ab" * 32, "ROUNDS"),
    (b"pbkdf2-sha256:200000:zz:" + b"ab" * 32, "salt is not hex"),
    (b"pbkdf2-sha256:200000:abcd:" + b"ab" * 32, "salt must be 16..64"),
    (b"pbkdf2-sha256:200000:" + SALT.hex().encode() + b":" + SECRET_HEX.encode(), "key must be 16..64"),
    (b"pbkdf2-sha256:200000:" + SALT.hex().encode() + b":zz" + b"ab" * 31, "key is not hex"),
    (b"0" * (keys_mod.MAX_KEY_FILE_BYTES + 1), "larger than"),
])
def test_bad_key_files(tmp_path, content, match):
    p = tmp_path / "bad.key"
    p.write_bytes(content)
    with pytest.raises(InvalidKeyError, match=match) as exc:
        Key.from_file(p)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg
    assert SECRET_HEX not in msg and "ab" * 31 not in msg and "zz-not" not in msg


def test_missing_key_file(tmp_path):
    with pytest.raises(InvalidKeyError, match="not found") as exc:
        Key.from_file(tmp_path / "nope.key")
    assert str(tmp_path / "nope.key") in str(exc.value)


def test_directory_is_not_a_key_file(tmp_path):
    with pytest.raises(InvalidKeyError, match="not a regular file") as exc:
        Key.from_file(tmp_path)
    assert str(tmp_path) in str(exc.value)


@posix_only
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_key_file(tmp_path):
    p = Key.generate().save(tmp_path / "k.key")
    os.chmod(p, 0o000)
    try:
        with pytest.raises(InvalidKeyError, match="permission denied") as exc:
            Key.from_file(p)
        assert str(p) in str(exc.value)
    finally:
        os.chmod(p, 0o600)
