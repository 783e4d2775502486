"""wmark.lm.tokenizer's word cache: the same ids as the tokenizers library on any text."""
from __future__ import annotations

import random

import pytest

from wmark.lm import tokenizer as tkz
from wmark.lm.tokenizer import EOS_TOKEN, Tokenizer, train_tokenizer

TRAIN = ("The quick brown fox's den, isn't it?  It'll do: 42 foxes, 3.5 km. "
         "Ünïcödé ✓ 日本語 — “quoted” x² ½ Ⅻ 一二三 ٣٤ _under_score__ \t\ttabs\n\n\nnew  lines   \n ")


@pytest.fixture()
def tok() -> Tokenizer:
    return train_tokenizer([TRAIN * 5], vocab_size=400)


def library(t: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in t.backend.encode_batch(texts, add_special_tokens=False)]


def fuzz_texts(n: int, seed: int = 0) -> list[str]:
    """Random strings mixing ASCII words and code points from many scripts and categories
    (superscripts, CJK numerals, Unicode spaces, separators, control and combining characters)."""
    rng = random.Random(seed)
    odd = [chr(c) for c in (0x1C, 0x1D, 0x1E, 0x1F, 0x85, 0xA0, 0x1680, 0x2000, 0x200B, 0x2028, 0x202F, 0x3000,
                            0xB2, 0xB9, 0xBD, 0x2167, 0x4E00, 0x3007, 0x663, 0x301, 0x1F600, 0xFEFF, 0x5F)]
    pieces = ["'s", "'re", "'ll", " '", "''", "  ", "\n\n", " \n", "\t", "ab", " cd", "12", " 3", "!?", " _", "x"]
    out = []
    for _ in range(n):
        k = rng.randint(0, 30)
        out.append("".join(rng.choice(pieces) if rng.random() < 0.5 else
                           rng.choice(odd) if rng.random() < 0.3 else chr(rng.randrange(0x20, 0x3100))
                           for _ in range(k)))
    return out


def test_same_ids_as_the_library_on_random_text(tok):
    texts = fuzz_texts(3000) + ["", " ", "\n", TRAIN, f"a{EOS_TOKEN}b", EOS_TOKEN * 2, "x²", "don't'", "  a  "]
    want = library(tok, texts)
    assert tok.encode_batch(texts) == want
    assert tok.encode_batch(texts) == want  # the cache warm
    assert [tok.encode(t) for t in texts[:200]] == want[:200]
    info = tok.cache_info()
    assert info["active"] and info["words"] > 100 and 0 < info["characters_apart"] < info["characters_probed"]


def test_characters_that_split_apart_go_to_the_library(tok):
    # '²' is a number to the library's \p{N} but a letter to [^\W\d_]; ' ' classes agree
    tok.encode("warm")
    assert tok.encode("x²y 1²") == library(tok, ["x²y 1²"])[0]
    assert "²" in tok._words._differ and "x" in tok._words._same


def test_shared_books_same_ids(shared_data):
    from wmark.lm import load

    t = load(device="cpu").tokenizer
    texts = [p.read_text(encoding="utf-8")[:200_000] for p in sorted((shared_data / "text").glob("*.txt"))]
    assert t.encode_batch(texts) == library(t, texts)


def test_bounded_cache_starts_afresh(tok, monkeypatch):
    monkeypatch.setattr(tkz, "WORD_CACHE_SIZE", 10)
    texts = fuzz_texts(200, seed=1)
    got = [tok.encode(t) for t in texts]
    assert got == library(tok, texts)
    assert tok.cache_info()["words"] <= 10 + max(len(tkz._SPLIT.findall(t)) for t in texts)


def test_other_pre_tokenizers_use_the_library():
    from tokenizers import Tokenizer as Lib
    from tokenizers import models, pre_tokenizers, trainers

    lib = Lib(models.BPE(unk_token="[UNK]"))
    lib.pre_tokenizer = pre_tokenizers.Whitespace()
    lib.train_from_iterator([TRAIN * 3], trainer=trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]"],
                                                                    show_progress=False))
    t = Tokenizer(lib)
    texts = ["the quick fox's den", "  a  b ", TRAIN]
    assert t.encode_batch(texts) == library(t, texts)
    assert t.cache_info() == {"active": False, "words": 0, "characters_probed": 0, "characters_apart": 0}
