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
    assert rec["scheme"] == "kgw-lefthash" and rec["seeding"] == "lefthash" and "key_fingerprint" in rec
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
    assert set(a) >= {"z_score", "p_value", "num_scored", "detected"} and a["scheme"] == "kgw-lefthash"


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


@pytest.mark.parametrize("scheme", [None, "gumbel"])
def test_generate_json_scheme_name_detects_the_text(tmp_path, capsys, key_file, scheme):
    extra = [] if scheme is None else ["--scheme", scheme]
    rc, out, _ = _run(capsys, ["text", "generate", "--key-file", str(key_file), "--length", "120", "--seed", "3",
                               "--json", *extra])
    rec = json.loads(out)
    assert rc == 0 and rec["scheme"] == (scheme or "kgw-selfhash")
    f = tmp_path / "marked.txt"
    f.write_text(rec["prompt"] + rec["text"])
    rc, out, _ = _run(capsys, ["text", "detect", str(f), "--key-file", str(key_file), "--scheme", rec["scheme"],
                               "--json"])
    row = json.loads(out)
    assert rc == 0 and row["detected"] and row["p_value"] < 1e-6 and row["scheme"] == rec["scheme"]


def test_kgw_is_an_alias_never_printed_back(tmp_path, capsys, key_file):
    rc, out, _ = _run(capsys, ["text", "generate", "--key-file", str(key_file), "--scheme", "kgw", "--length", "120",
                               "--seed", "3", "--json"])
    rec = json.loads(out)
    assert rc == 0 and rec["scheme"] == "kgw-selfhash" and '"kgw"' not in out
    f = tmp_path / "marked.txt"
    f.write_text(rec["prompt"] + rec["text"])
    for name in ("kgw", "kgw-selfhash"):
        rc, out, _ = _run(capsys, ["text", "detect", str(f), "--key-file", str(key_file), "--scheme", name, "--json"])
        row = json.loads(out)
        assert rc == 0 and row["detected"] and row["scheme"] == "kgw-selfhash"
    rc, out, err = _run(capsys, ["text", "detect", str(f), "--key-file", str(key_file), "--scheme", "kgw-lefthash"])
    assert rc == 0 and "not detected" in out  # another seeding does not read it
    rc, _, err = _run(capsys, ["text", "detect", str(f), "--key-file", str(key_file), "--scheme", "nope"])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "unknown text scheme 'nope'; choose from kgw-lefthash" in err


def test_size_limit_is_one_line_and_the_batch_goes_on(tmp_path, capsys, key_file, monkeypatch):
    monkeypatch.delenv("WMARK_MAX_TEXT_BYTES", raising=False)
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("some ordinary words to tokenize " * 10)
    big.write_text("some ordinary words to tokenize " * 100)
    rc, out, err = _run(capsys, ["text", "detect", str(big), str(small), "--key-file", str(key_file),
                                 "--max-bytes", "1K", "--json"])
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 1 and "error" in rows[0] and "error" not in rows[1]
    assert rows[0]["error"] == (f"{big}: 3.12 KiB (3200 bytes) is above the text size limit of 1 KiB "
                                "(raise it with --max-bytes or WMARK_MAX_TEXT_BYTES)")
    assert err.strip().splitlines() == [f"wmark: error: {rows[0]['error']}", "1 of 2 file(s) failed"]
    monkeypatch.setenv("WMARK_MAX_TEXT_BYTES", "1K")
    rc, _, err = _run(capsys, ["text", "detect", str(big), "--key-file", str(key_file)])
    assert rc == 1 and "limit of 1 KiB" in err
    rc, _, err = _run(capsys, ["text", "detect", str(big), "--key-file", str(key_file), "--max-bytes", "0"])
    assert rc == 0  # 0: no limit
    rc, _, err = _run(capsys, ["text", "detect", str(big), "--key-file", str(key_file), "--max-bytes", "lots"])
    assert rc == 2 and err.startswith("wmark: error: --max-bytes: not a size") and len(err.strip().splitlines()) == 1


def test_stdin_over_the_limit(capsys, key_file, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"word " * 400)))
    rc, _, err = _run(capsys, ["text", "detect", "-", "--key-file", str(key_file), "--max-bytes", "1000"])
    assert rc == 1 and err.startswith("wmark: error: -: more than 1000 bytes") and len(err.strip().splitlines()) == 1


def test_every_bad_input_is_one_line_naming_the_file(tmp_path, capsys, key_file):
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait ".encode("latin-1") * 3)
    (tmp_path / "good.txt").write_text("some ordinary words to tokenize " * 10)
    want = {"folder": "is a directory (give text files)", "empty.txt": "empty file (0 bytes)",
            "missing.txt": "no such file", "latin1.txt": "not UTF-8 text (byte 0xe9 at offset 3)"}
    files = [str(tmp_path / n) for n in [*want, "good.txt"]]
    rc, out, err = _run(capsys, ["text", "detect", *files, "--key-file", str(key_file)])
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == len(want) + 1 and lines[-1] == "4 of 5 file(s) failed"
    for line, (name, reason) in zip(lines, want.items()):
        assert line == f"wmark: error: {tmp_path / name}: {reason}"
    assert out.startswith(f"{tmp_path / 'good.txt'}: not detected")
    rc, out, err = _run(capsys, ["text", "detect", *files, "--key-file", str(key_file), "--ignore-prefix", "-1"])
    assert rc == 2 and not out and err == "wmark: error: --ignore-prefix must be >= 0, got -1\n"


def test_cli_streams_in_pieces_like_the_whole_file(shared_data, tmp_path, capsys, monkeypatch):
    import wmark.lm
    import wmark.text.stream
    from wmark.keys import Key
    from wmark.text import make_scheme

    text = (shared_data / "text" / "pg84.txt").read_text(encoding="utf-8")[:40_000]
    f = tmp_path / "book.txt"
    f.write_text(text)
    monkeypatch.setattr(wmark.text.stream, "CHUNK_BYTES", 1000)
    rc, out, err = _run(capsys, ["text", "detect", str(f), "--demo-key", "--json", "--scheme", "gumbel"])
    row = json.loads(out)
    tok = wmark.lm.load().tokenizer
    whole = make_scheme("gumbel", Key.demo(), tok.vocab_size).detect(tok.encode(text))
    assert rc == 0 and "seam" not in err  # the built-in tokenizer cuts exactly: no warning
    assert row["num_tokens"] == whole.num_tokens and row["num_scored"] == whole.num_scored
    assert row["p_value"] == pytest.approx(whole.p_value, rel=1e-9)
