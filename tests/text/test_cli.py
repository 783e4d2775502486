"""Round trips through `wmark text generate` / `wmark text detect` and their one-line errors."""
import json

import pytest

from wmark.cli import main


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    from wmark.keys import Key

    p = tmp_path_factory.mktemp("keys") / "k.key"
    Key.from_passphrase("cli test key").save(p)
    return p


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_generate_then_detect_roundtrip(tmp_path, capsys, key_file):
    rc, out, _ = _run(capsys, ["text", "generate", "--key-file", str(key_file), "--prompt", "ROMEO:",
                               "--length", "150", "--seed", "1", "--json", "--scheme", "kgw-lefthash"])
    assert rc == 0
    rec = json.loads(out.splitlines()[0])
    assert rec["scheme"] == "kgw" and rec["seeding"] == "lefthash" and "key_fingerprint" in rec
    assert key_file.read_text().strip() not in out  # the secret never appears
    marked = tmp_path / "marked.txt"
    marked.write_text(rec["prompt"] + rec["text"])
    rc, out, _ = _run(capsys, ["text", "generate", "--key-file", str(key_file), "--prompt", "ROMEO:",
                               "--length", "150", "--seed", "1", "--json", "--no-watermark"])
    plain = tmp_path / "plain.txt"
    plain.write_text(json.loads(out)["prompt"] + json.loads(out)["text"])
    rc, out, _ = _run(capsys, ["text", "detect", str(marked), str(plain), "--key-file", str(key_file),
                               "--scheme", "kgw-lefthash", "--json", "--windowed"])
    assert rc == 0
    a, b = (json.loads(line) for line in out.splitlines())
    assert a["path"] == str(marked) and a["detected"] and a["p_value"] < 1e-4 and "window" in a
    assert not b["detected"] and b["p_value"] > 1e-3
    assert set(a) >= {"z_score", "p_value", "num_scored", "detected"}


def test_detect_human_text_with_demo_key(tmp_path, capsys, shared_data):
    text = (shared_data / "text" / "pg84.txt").read_text(encoding="utf-8")[20000:24000]
    f = tmp_path / "human.txt"
    f.write_text(text)
    rc, out, _ = _run(capsys, ["text", "detect", str(f), "--demo-key", "--json"])
    assert rc == 0 and not json.loads(out)["detected"]


@pytest.mark.parametrize("content, match", [("", "empty"), (b"\xff\xfe\x00\x81", "UTF-8")])
def test_detect_bad_inputs(tmp_path, capsys, key_file, content, match):
    f = tmp_path / "bad.txt"
    f.write_bytes(content.encode() if isinstance(content, str) else content)
    rc, _, err = _run(capsys, ["text", "detect", str(f), "--key-file", str(key_file)])
    assert rc == 1 and match in err and len(err.strip().splitlines()) == 1 and str(f) in err


def test_bad_key_file_and_missing_file(tmp_path, capsys, key_file):
    bad = tmp_path / "bad.key"
    bad.write_text("not hex")
    rc, _, err = _run(capsys, ["text", "detect", str(key_file), "--key-file", str(bad)])
    assert rc == 2 and "hex" in err
    rc, _, err = _run(capsys, ["text", "detect", str(tmp_path / "nope.txt"), "--key-file", str(key_file)])
    assert rc == 1 and "no such file" in err


def test_wrong_vocab_size_is_reported(tmp_path, capsys, key_file):
    f = tmp_path / "t.txt"
    f.write_text("some ordinary words to tokenize " * 10)
    rc, _, err = _run(capsys, ["text", "detect", str(f), "--key-file", str(key_file), "--vocab-size", "10"])
    assert rc == 1 and "out of range for vocab_size 10" in err


def test_key_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["text", "detect", "x.txt"])


def test_detect_goes_on_past_bad_files(tmp_path, capsys, key_file):
    good = tmp_path / "a.txt"
    good.write_text("some ordinary words to tokenize " * 10)
    (tmp_path / "empty.txt").write_text("")
    files = [str(good), str(tmp_path / "empty.txt"), str(tmp_path / "missing.txt"), str(good)]
    rc, out, err = _run(capsys, ["text", "detect", *files, "--key-file", str(key_file), "--json"])
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 1 and [("error" in r) for r in rows] == [False, True, True, False]
    assert rows[0]["p_value"] == rows[3]["p_value"] and "empty" in rows[1]["error"] and "no such file" in rows[2]["error"]
    assert err.strip().splitlines()[-1] == "2 of 4 file(s) failed"


@pytest.mark.parametrize("bad", ["2", "0", "-0.1", "1", "x"])
def test_alpha_must_be_a_level(tmp_path, capsys, bad):
    for argv in (["text", "detect", "x.txt", "--demo-key", "--alpha", bad],
                 ["detect", "x.png", "--key-file", "k", "--alpha", bad]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and "--alpha" in capsys.readouterr().err
