"""Backends agree bit for bit; the scheme works as a Hugging Face logits processor."""
import pytest
import torch

from wmark.keys import Key
from wmark.text import KGW, Gumbel, make_scheme
from wmark.text import ops


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash"])
def test_compiled_kgw_matches_eager(demo_key, seeding):
    s_eager = KGW(demo_key, 5003, seeding=seeding, backend="eager")
    s_comp = KGW(demo_key, 5003, seeding=seeding, backend="compile")
    ids = torch.randint(0, 5003, (7, 9))
    scores = torch.randn(7, 5003)
    assert torch.equal(s_eager(ids, scores), s_comp(ids, scores))


def test_compiled_gumbel_matches_eager(demo_key):
    ids = torch.randint(0, 3001, (5, 9))
    scores = torch.randn(5, 3001)
    a = Gumbel(demo_key, 3001, backend="eager")(ids, scores)
    b = Gumbel(demo_key, 3001, backend="compile")(ids, scores)
    assert torch.equal(a, b)


def test_auto_backend_choice():
    small = torch.zeros(2, 100)
    big = torch.zeros(64, ops.COMPILE_MIN_ELEMENTS // 64)
    assert ops.resolve_backend("auto", small) == "eager"
    assert ops.resolve_backend("auto", big) == "compile"
    with pytest.raises(ValueError, match="backend"):
        ops.resolve_backend("fast", small)


def test_huggingface_generate_with_wmark_processor(demo_key):
    transformers = pytest.importorskip("transformers", reason="transformers (extra 'hf') not installed")
    from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessorList

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=500, n_positions=256, n_embd=32, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(cfg).eval()
    scheme = make_scheme("kgw-selfhash", demo_key, 500, delta=4.0)
    proc = scheme.processor()
    assert isinstance(proc, transformers.LogitsProcessor)
    prompt = torch.randint(0, 500, (2, 5))
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, max_new_tokens=120,
                         logits_processor=LogitsProcessorList([proc]), pad_token_id=0, top_k=0)
    r = scheme.detect_batch(out, ignore_prefix=5)
    assert (r.p_value < 1e-4).all()
    assert (make_scheme("kgw-selfhash", Key.from_passphrase("x"), 500).detect_batch(out).p_value > 1e-3).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compiled_kgw_matches_eager_in_half_precision(demo_key, dtype):
    ids = torch.randint(0, 4099, (3, 5))
    scores = torch.randn(3, 4099).to(dtype)
    a = KGW(demo_key, 4099, delta=1.3, backend="eager")(ids, scores)
    b = KGW(demo_key, 4099, delta=1.3, backend="compile")(ids, scores)
    assert a.dtype == dtype and torch.equal(a, b)
