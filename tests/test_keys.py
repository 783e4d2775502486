import os
import stat

import pytest

from wmark.keys import DEMO_PASSPHRASE, InvalidKeyError, Key


def test_repr_never_shows_secret():
    secret = bytes(range(32))
    k = Key.from_bytes(secret)
    for text in (repr(k), str(k), f"{k}"):
        assert secret.hex() not in text and "fingerprint" in text


def test_derive_is_deterministic_and_purpose_separated():
    k = Key.from_passphrase("correct horse")
    assert k.derive("a") == Key.from_passphrase("correct horse").derive("a")
    assert k.derive("a") != k.derive("b")
    assert k.derive("a") != Key.from_passphrase("correct horse!").derive("a")
    assert 0 <= k.seed("x") < 2**31


def test_demo_key_is_the_documented_passphrase():
    assert Key.demo() == Key.from_passphrase(DEMO_PASSPHRASE)


def test_save_and_load_roundtrip_never_overwrites(tmp_path):
    k = Key.generate()
    p = tmp_path / "k.key"
    k.save(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert Key.from_file(p) == k
    with pytest.raises(FileExistsError):
        Key.generate().save(p)
    assert Key.from_file(p) == k


def test_passphrase_key_file(tmp_path):
    p = tmp_path / "k.txt"
    p.write_text("passphrase: hello world\n")
    assert Key.from_file(p) == Key.from_passphrase("hello world")


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"zz-not-hex", "hex"),
    (b"abcd", "16..64 bytes"),
    (b"\xff\xfe\x00binary", "not text"),
])
def test_bad_key_files(tmp_path, content, match):
    p = tmp_path / "bad.key"
    p.write_bytes(content)
    with pytest.raises(InvalidKeyError, match=match):
        Key.from_file(p)


def test_missing_key_file(tmp_path):
    with pytest.raises(InvalidKeyError, match="not found"):
        Key.from_file(tmp_path / "nope.key")


def test_short_key_rejected():
    with pytest.raises(InvalidKeyError):
        Key.from_bytes(b"short")
