"""`wmark keygen`: mode 0600, never over anything at OUT, salted passphrase keys, no secret printed."""
import io
import os
import stat
import sys
import warnings

import pytest

from wmark.cli import main
from wmark.keys import Key

PASS = "a long enough passphrase for tests"


def run(argv, capsys, stdin: str | None = None, monkeypatch=None):
    """(rc, stdout, stderr, warning texts): warnings either recorded here or printed by main."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))  # StringIO.isatty() is False
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    texts = [str(w.message) for w in rec] + [ln for ln in err.splitlines() if ln.startswith("wmark: warning:")]
    return rc, out, err, texts


def test_keygen_writes_private_hex_and_prints_only_the_fingerprint(tmp_path, capsys):
    p = tmp_path / "k.key"
    rc, out, err, warned = run(["keygen", p], capsys)
    assert rc == 0 and not warned
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    key = Key.from_file(p)
    secret = p.read_text().strip()
    assert len(bytes.fromhex(secret)) == 32
    assert out == f"wrote key {key.fingerprint} to {p}\n"
    assert secret not in out + err
    assert [q.name for q in tmp_path.iterdir()] == ["k.key"]


def test_keygen_bytes(tmp_path, capsys):
    p = tmp_path / "k.key"
    assert run(["keygen", p, "--bytes", 64], capsys)[0] == 0
    assert len(bytes.fromhex(p.read_text())) == 64
    rc, out, err, _ = run(["keygen", tmp_path / "short.key", "--bytes", 8], capsys)
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "16..64" in err
    assert not (tmp_path / "short.key").exists()


def test_keygen_refuses_existing_file(tmp_path, capsys):
    p = tmp_path / "k.key"
    p.write_text("precious\n")
    rc, out, err, _ = run(["keygen", p], capsys)
    assert rc != 0 and out == ""
    assert err.strip().splitlines() == [f"wmark: error: refusing to overwrite existing file: {p}"]
    assert p.read_text() == "precious\n"


@pytest.mark.parametrize("dangling", [False, True])
def test_keygen_refuses_planted_symlink(tmp_path, capsys, dangling):
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_text("precious\n")
    link = tmp_path / "k.key"
    link.symlink_to(victim)
    rc, out, err, _ = run(["keygen", link], capsys)
    assert rc != 0 and "refusing to overwrite" in err and len(err.strip().splitlines()) == 1
    assert link.is_symlink()
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_text() == "precious\n"


def test_keygen_passphrase_from_stdin_is_salted(tmp_path, capsys, monkeypatch):
    p = tmp_path / "k.key"
    rc, out, err, warned = run(["keygen", p, "--passphrase"], capsys, PASS + "\n", monkeypatch)
    assert rc == 0 and not warned
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    text = p.read_text()
    assert text.startswith("pbkdf2-sha256:200000:") and PASS not in text
    key = Key.from_file(p)
    assert key == Key.from_passphrase(PASS, key.salt) and key != Key.from_passphrase(PASS)
    assert key.fingerprint in out and key.salt.hex() in out
    for secret in (PASS, key._secret.hex()):
        assert secret not in out + err

    # a second key from the same passphrase gets another salt, hence another key
    q = tmp_path / "k2.key"
    assert run(["keygen", q, "--passphrase"], capsys, PASS + "\n", monkeypatch)[0] == 0
    assert Key.from_file(q) != key

    # the passphrase and the recorded salt recreate the first key
    r = tmp_path / "again.key"
    rc, out, *_ = run(["keygen", r, "--passphrase", "--salt", key.salt.hex()], capsys, PASS + "\r\n", monkeypatch)
    assert rc == 0 and Key.from_file(r) == key and r.read_text() == text


def test_keygen_passphrase_from_terminal_asks_twice(tmp_path, capsys, monkeypatch):
    import getpass

    answers = iter([PASS, PASS])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    p = tmp_path / "k.key"
    rc, out, err, _ = run(["keygen", p, "--passphrase"], capsys)
    assert rc == 0 and Key.from_file(p) == Key.from_passphrase(PASS, Key.from_file(p).salt)
    assert PASS not in out + err

    answers = iter([PASS, PASS + "x"])
    q = tmp_path / "q.key"
    rc, out, err, _ = run(["keygen", q, "--passphrase"], capsys)
    assert rc != 0 and "differ" in err and not q.exists()
    assert PASS not in out + err


def test_keygen_short_passphrase_warns_but_writes(tmp_path, capsys, monkeypatch):
    p = tmp_path / "k.key"
    rc, out, err, warned = run(["keygen", p, "--passphrase"], capsys, "hunter2\n", monkeypatch)
    assert rc == 0 and p.exists()
    assert len(warned) == 1 and "shorter than 12" in warned[0]
    assert "hunter2" not in out + err + warned[0]


@pytest.mark.parametrize("argv, stdin, match", [
    (["--salt", "00" * 16], None, "--salt applies only with --passphrase"),
    (["--passphrase", "--bytes", "32"], PASS, "--bytes applies only"),
    (["--passphrase", "--salt", "zz"], PASS, "--salt must be hex"),
    (["--passphrase", "--salt", "abcd"], PASS, "salt must be 16..64"),
    (["--passphrase"], "", "no passphrase on stdin"),
    (["--passphrase"], "\n", "no passphrase on stdin"),
])
def test_keygen_usage_errors(tmp_path, capsys, monkeypatch, argv, stdin, match):
    p = tmp_path / "k.key"
    rc, out, err, _ = run(["keygen", p, *argv], capsys, stdin, monkeypatch)
    assert rc != 0 and match in err and len(err.strip().splitlines()) == 1
    assert not p.exists()
    assert PASS not in out + err
