"""Text attacks: closed-form edit rates, identity at 0, determinism, types."""
from __future__ import annotations

import pytest
import torch

from wmark.attacks import get_attack, registry
from wmark.attacks.text import lm_substitute, next_token_logits

V, T = 500, 4000


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ids(n: int = T, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (n,), generator=gen(100 + seed))


def _tol(rate: float, n: int) -> float:
    return 5 * (n * rate * (1 - rate)) ** 0.5 + 1  # 5 sigma of a binomial


def test_text_registry():
    reg = registry("text")
    assert set(reg) >= {"delete", "insert", "substitute", "lm_substitute", "copy_paste", "truncate"}
    for spec in reg.values():
        assert spec.kind == "text" and spec.param == "rate" and spec.param_value(0.3) == 0.3


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.7])
def test_rates_closed_form(rate):
    x = ids()
    d = get_attack("delete", "text")(x, rate, gen())
    assert abs((T - len(d)) - rate * T) < _tol(rate, T)
    i = get_attack("insert", "text")(x, rate, gen(), vocab_size=V)
    assert abs((len(i) - T) - rate * T) < _tol(rate, T)
    s = get_attack("substitute", "text")(x, rate, gen(), vocab_size=V)
    assert len(s) == T and abs(int((s != x).sum()) - rate * T) < _tol(rate, T)  # always a *different* token
    assert int(s.max()) < V and int(s.min()) >= 0
    t = get_attack("truncate", "text")(x, rate)
    assert len(t) == T - round(rate * T) and torch.equal(t, x[:len(t)])


def test_insert_keeps_order_of_originals():
    x = ids(200)
    y = get_attack("insert", "text")(x, 0.5, gen(), vocab_size=V)
    it = iter(y.tolist())
    assert all(any(v == tok for v in it) for tok in x.tolist())  # x is a subsequence of y


@pytest.mark.parametrize("name,extra", [("delete", {}), ("insert", {"vocab_size": V}), ("substitute", {"vocab_size": V}),
                                        ("truncate", {}), ("copy_paste", {"human": list(range(300))})])
def test_identity_determinism_types(name, extra):
    spec = get_attack(name, "text")
    x = ids(300)
    assert torch.equal(spec(x, 0.0, gen(), **extra), x)
    assert torch.equal(spec(x, 0.4, gen(5), **extra), spec(x, 0.4, gen(5), **extra))
    out = spec(x.tolist(), 0.4, gen(5), **extra)
    assert isinstance(out, list) and out == spec(x, 0.4, gen(5), **extra).tolist()


def test_needs_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="needs vocab_size"):
        get_attack("insert", "text")(ids(10), 0.5)
    with pytest.raises(ValueError, match="needs human"):
        get_attack("copy_paste", "text")(ids(10), 0.5)
    with pytest.raises(ValueError, match="at least 50 human"):
        get_attack("copy_paste", "text")(ids(100), 0.5, human=[1, 2])
    with pytest.raises(ValueError, match="1-D integer"):
        get_attack("delete", "text")(torch.zeros(2, 3), 0.5)


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.6, 1.0])
def test_copy_paste_fraction(rate):
    marked, human = ids(200), ids(400, seed=1) + V  # disjoint id ranges
    y = get_attack("copy_paste", "text")(marked, rate, gen(), human=human)
    assert len(y) == 200
    n_h = int((y >= V).sum())
    assert n_h == round(rate * 200)
    m = y[y < V]  # the marked part is one contiguous span of the marked text
    if len(m):
        start = [i for i in range(200 - len(m) + 1) if torch.equal(marked[i:i + len(m)], m)]
        assert start


def _toy_logits(ids2: torch.Tensor) -> torch.Tensor:
    """Toy LM: always predicts (previous token + 1) mod V, then (previous + 2)."""
    lg = torch.zeros(ids2.shape[0], ids2.shape[1], V)
    lg.scatter_(2, ((ids2 + 1) % V)[..., None], 5.0)
    lg.scatter_(2, ((ids2 + 2) % V)[..., None], 3.0)
    return lg


def test_lm_substitute_uses_model_predictions():
    x = ids(T)
    y = lm_substitute(x, 0.3, gen(), logits_fn=_toy_logits)
    changed = (y != x).nonzero().flatten()
    assert int(changed.min()) > 0 and abs(len(changed) - 0.3 * (T - 1)) < _tol(0.3, T)
    prev = x[changed - 1]
    expect = torch.where((prev + 1) % V == x[changed], (prev + 2) % V, (prev + 1) % V)  # best *other*
    assert torch.equal(y[changed], expect)
    assert torch.equal(lm_substitute(x, 0.0, gen(), logits_fn=_toy_logits), x)


def test_next_token_logits_windows_match_full():
    x = ids(50)
    full = next_token_logits(x, _toy_logits)
    windowed = next_token_logits(x, _toy_logits, context=8)
    assert torch.equal(full, windowed) and full.shape == (50, V)


def test_lm_substitute_builtin_lm():
    import wmark.lm

    try:
        lm = wmark.lm.load()
    except Exception as exc:  # pragma: no cover - weights absent in this install
        pytest.skip(f"built-in LM unavailable: {exc}")
    x = torch.tensor(lm.encode("ROMEO: But soft, what light through yonder window breaks? It is the east."))
    y = get_attack("lm_substitute", "text")(x, 0.5, gen())
    assert len(y) == len(x) and 0 < int((y != x).sum()) < len(x)

    from wmark.attacks import attack_text
    s = attack_text("delete", "to be or not to be", 0.0, lm=lm)
    assert s == "to be or not to be"
