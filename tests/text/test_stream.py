"""Streaming text detection: chunked reading and tokenization, incremental scores equal to the
whole-text path, size limits, canonical scheme names."""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch

from wmark.text import make_scheme
from wmark.text.names import canonical_name, canonical_names, resolve
from wmark.text.stream import (TextChunks, TextTooLarge, detect_file, detect_stream, max_text_bytes, parse_size,
                               seams_exact)

COUNT_SCHEMES = ("kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram", "tournament")


@pytest.fixture(scope="module")
def tok():
    import wmark.lm

    return wmark.lm.load().tokenizer


def _pieces(data: bytes, **kw) -> tuple[list[str], TextChunks]:
    chunks = TextChunks(io.BytesIO(data), **kw)
    return list(chunks), chunks


# -- reading and tokenizing in pieces -----------------------------------------------------------------
@pytest.mark.parametrize("chunk_bytes", [101, 4099])
def test_pieces_tokenize_exactly_like_the_whole_text(shared_data, tok, chunk_bytes):
    assert seams_exact(tok)
    for path in sorted((shared_data / "text").glob("*.txt")):
        raw = path.read_bytes()[:300_000]
        raw = raw[: raw.rfind(b"\n") + 1]
        whole = raw.decode("utf-8").replace("\r\n", "\n")
        pieces, chunks = _pieces(raw, chunk_bytes=chunk_bytes)
        assert "".join(pieces) == whole and chunks.chunks > 10 and chunks.forced_cuts == 0, path.name
        assert [i for p in pieces for i in tok.encode(p)] == tok.encode(whole), path.name


def test_newlines_and_multibyte_characters_across_reads():
    text = "caf\u00e9 na\u00efve \U0001f600 line\r\nnext\rlast\r\n\r\r\nend \u4e2d\u6587\r"
    raw = text.encode("utf-8")
    want = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read()  # universal newlines, as read_text
    for cb in (1, 2, 3, 5, 64):
        pieces, chunks = _pieces(raw, chunk_bytes=cb, max_carry=8)
        assert "".join(pieces) == want, cb
        assert chunks.bytes_read == len(raw)


def test_text_without_seams_is_cut_and_counted():
    pieces, chunks = _pieces(b"x" * 1000, chunk_bytes=10, max_carry=40)
    assert "".join(pieces) == "x" * 1000 and chunks.forced_cuts > 0
    assert max(len(p) for p in pieces) <= 50


@pytest.mark.parametrize("data, offset", [(b"abc def \xff ghi", 8), (b"ok " * 50 + b"\xe2\x82", 150),
                                          (b"\xc3(", 0)])
def test_invalid_utf8_names_the_byte_offset(data, offset):
    with pytest.raises(ValueError, match=f"not UTF-8 text .* at offset {offset}\\)"):
        _pieces(data, chunk_bytes=7)


def test_byte_limit_while_reading():
    with pytest.raises(TextTooLarge, match="above the text size limit of 100 bytes"):
        _pieces(b"word " * 100, chunk_bytes=16, max_bytes=100)
    assert "".join(_pieces(b"word " * 20, chunk_bytes=16, max_bytes=100)[0]) == "word " * 20


def test_seams_exact_only_for_gpt2_style_byte_level(tok):
    from wmark.lm import Tokenizer

    spec = json.loads(tok.to_str())
    spec["pre_tokenizer"]["add_prefix_space"] = True
    assert not seams_exact(Tokenizer.from_str(json.dumps(spec)))
    assert not seams_exact(object())


# -- streamed statistics equal the whole-text ones ----------------------------------------------------
@pytest.mark.parametrize("name", ["kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram", "gumbel", "tournament"])
def test_streamed_detection_equals_whole_text(shared_data, tok, demo_key, name):
    text = (shared_data / "text" / "pg1342.txt").read_text(encoding="utf-8")[30_000:60_000]
    ids = tok.encode(text)
    s = make_scheme(name, demo_key, tok.vocab_size)
    for kw in ({}, {"dedup": False}, {"windowed": True, "ignore_prefix": 41, "min_window": 30}):
        a = s.detect(ids, **kw)
        b, chunks = detect_stream(s, tok, io.BytesIO(text.encode()), chunk_bytes=997, **kw)
        assert chunks.chunks > 20
        assert (b.num_tokens, b.num_scored, b.window, b.detected) == (a.num_tokens, a.num_scored, a.window, a.detected)
        if name in COUNT_SCHEMES:  # integer sums: bit-identical
            assert (b.score, b.p_value, b.z_score) == (a.score, a.p_value, a.z_score)
        else:  # float64 sums in another order
            assert b.score == pytest.approx(a.score, rel=1e-12) and b.p_value == pytest.approx(a.p_value, rel=1e-9)


@pytest.mark.parametrize("name", ["kgw-selfhash", "kgw-minhash", "gumbel", "unigram"])
def test_tiny_pieces_carry_the_context(demo_key, name):
    from wmark.text.detect import StreamingDetection

    s = make_scheme(name, demo_key, 97, context_width=3) if name != "unigram" else make_scheme(name, demo_key, 97)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 12, 400)  # a small alphabet: many repeated n-grams for dedup
    a = s.detect(ids, ignore_prefix=5, windowed=True)
    det = StreamingDetection(s, ignore_prefix=5, windowed=True)
    i = 0
    for n in rng.integers(0, 4, 1000):
        det.feed(ids[i:i + n] if n % 2 else torch.as_tensor(ids[i:i + n]))
        i += n
        if i >= len(ids):
            break
    b = det.result()
    assert (b.num_tokens, b.num_scored, b.window) == (a.num_tokens, a.num_scored, a.window)
    assert b.p_value == pytest.approx(a.p_value, rel=1e-12)
    short = StreamingDetection(s)
    short.feed([1])
    short.feed([2])
    assert short.result().num_scored == s.detect([1, 2]).num_scored


def test_streamed_errors(tok, demo_key, tmp_path):
    from wmark.text.detect import StreamingDetection

    s = make_scheme("kgw-selfhash", demo_key, 10)
    with pytest.raises(ValueError, match="out of range for vocab_size 10"):
        StreamingDetection(s).feed([1, 2, 3, 11])
    with pytest.raises(ValueError, match="empty text"):
        StreamingDetection(s).result()
    big = tmp_path / "big.txt"
    big.write_text("word " * 100)
    want = f"^{re.escape(str(big))}: 500 bytes is above the text size limit of 100 bytes"
    with pytest.raises(TextTooLarge, match=want):
        detect_file(s, tok, big, max_bytes=100)


# -- limits -------------------------------------------------------------------------------------------
def test_sizes_and_the_environment(monkeypatch):
    assert [parse_size(v) for v in ("1234", "64M", "64MiB", "2k", "1G", "0", 7)] == \
        [1234, 64 << 20, 64 << 20, 2048, 1 << 30, 0, 7]
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    monkeypatch.delenv("WMARK_MAX_TEXT_BYTES", raising=False)
    assert max_text_bytes() == 64 << 20 and max_text_bytes("1K") == 1024
    monkeypatch.setenv("WMARK_MAX_TEXT_BYTES", "3M")
    assert max_text_bytes() == 3 << 20
    monkeypatch.setenv("WMARK_MAX_TEXT_BYTES", "-5")
    with pytest.raises(ValueError, match="WMARK_MAX_TEXT_BYTES"):
        max_text_bytes()


# -- canonical names ----------------------------------------------------------------------------------
def test_canonical_names(demo_key):
    assert "kgw" not in canonical_names()
    for name in canonical_names():
        assert canonical_name(make_scheme(name, demo_key, 300)) == resolve(name) == name
    assert resolve("kgw") == "kgw-selfhash"  # an alias, never printed back
    assert canonical_name(make_scheme("kgw", demo_key, 300)) == "kgw-selfhash"
    from wmark.text import KGW

    assert canonical_name(KGW(demo_key, 300, seeding="ngram")) == "kgw-ngram"
    with pytest.raises(ValueError, match="unknown text scheme 'nope'"):
        resolve("nope")
