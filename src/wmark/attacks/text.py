"""Text attacks on token ids: ``f(ids [T] | list[int], rate in [0, 1], generator, **extra) -> same type``.

Strength is the edit rate; each attack's expected number of edits is given in closed form:

=============  =================================================================================
delete         each token dropped independently with prob. rate          E[edits] = rate T
insert         after each token a uniform random token with prob. rate   E[edits] = rate T
substitute     each token replaced by a uniform *different* token        E[edits] = rate T
lm_substitute  each token (but the first) replaced with prob. rate by the LM's most likely *other*
               token given the original prefix (teacher-forced, one pass; unmarked)
                                                                         E[edits] = rate (T - 1)
copy_paste     a contiguous marked span of T - round(rate T) tokens pasted at a random position
               into round(rate T) human tokens; output length T          edits = round(rate T)
truncate       keep the first max(1, T - round(rate T)) tokens
=============  =================================================================================

Randomness comes only from ``generator`` (a CPU ``torch.Generator``; ``None`` is torch's global one).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Sequence

import torch

from wmark.attacks.spec import AttackSpec

Ids = torch.Tensor | Sequence[int]
Gen = torch.Generator | None
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def _as_tensor(ids: Ids) -> torch.Tensor:
    t = ids if isinstance(ids, torch.Tensor) else torch.as_tensor(list(ids), dtype=torch.long)
    if t.ndim != 1 or t.is_floating_point():
        raise ValueError("token ids must be a 1-D integer tensor [T] or a list of ints")
    return t.long()


def _like(out: torch.Tensor, ids: Ids) -> Ids:
    """Return ``out`` in the caller's type (tensor on its device / list)."""
    return out.to(ids.device) if isinstance(ids, torch.Tensor) else out.tolist()


def _vocab(vocab_size: int | None) -> int:
    if vocab_size is None or int(vocab_size) < 2:
        raise ValueError("this text attack needs vocab_size >= 2")
    return int(vocab_size)


def _coins(n: int, rate: float, generator: Gen) -> torch.Tensor:
    return torch.rand(n, generator=generator) < rate


def delete(ids: Ids, rate: float, generator: Gen = None) -> Ids:
    """Drop each token with probability ``rate``. [T] -> [T'] with E[T - T'] = rate T."""
    t = _as_tensor(ids).cpu()
    return _like(t[~_coins(len(t), rate, generator)], ids)


def insert(ids: Ids, rate: float, generator: Gen = None, *, vocab_size: int | None = None) -> Ids:
    """After each token, insert a uniform random token with probability ``rate``. [T] -> [T + ~rate T]."""
    v, t = _vocab(vocab_size), _as_tensor(ids).cpu()
    hit = _coins(len(t), rate, generator)
    new = torch.randint(0, v, (len(t),), generator=generator)
    pairs = torch.stack([t, torch.where(hit, new, -1)], 1).reshape(-1)
    return _like(pairs[pairs >= 0], ids)


def substitute(ids: Ids, rate: float, generator: Gen = None, *, vocab_size: int | None = None) -> Ids:
    """Replace each token with probability ``rate`` by a uniform token different from it. [T] -> [T]."""
    v, t = _vocab(vocab_size), _as_tensor(ids).cpu()
    hit = _coins(len(t), rate, generator)
    shift = torch.randint(1, v, (len(t),), generator=generator)
    return _like(torch.where(hit, (t + shift) % v, t), ids)


@lru_cache(maxsize=1)
def _builtin_lm():
    import wmark.lm

    return wmark.lm.load()


def next_token_logits(ids: torch.Tensor, logits_fn: LogitsFn, context: int | None = None) -> torch.Tensor:
    """Row i = logits for token i given ids[:i] (row 0 is zero): ids [T] -> [T, V].

    Sequences longer than ``context`` are scored in overlapping windows (at least context/2 tokens of
    history per prediction).
    """
    T = len(ids)
    if T < 2:
        return torch.zeros(T, 1)
    ctx = context or T
    stride = max(1, ctx // 2)
    rows: list[torch.Tensor] = []
    with torch.no_grad():
        for a in range(1, T, stride):
            b = min(a + stride, T)
            lo = max(0, b - 1 - ctx)
            lg = logits_fn(ids[lo:b - 1][None])[0].float().cpu()
            rows.append(lg[a - 1 - lo:b - 1 - lo])
    out = torch.cat(rows)
    return torch.cat([torch.zeros(1, out.shape[1]), out])


def lm_substitute(ids: Ids, rate: float, generator: Gen = None, *, logits_fn: LogitsFn | None = None,
                  context: int | None = None, sample: bool = False) -> Ids:
    """Replace tokens (not the first) with prob. ``rate`` by the LM's best *other* token. [T] -> [T].

    ``logits_fn(ids [1, T]) -> logits [1, T, V]`` (default: the built-in LM ``wmark.lm.load()``, whose
    context is used). The predictions are the model's own, unmarked ones, given the original prefix.
    ``sample=True`` samples from the softmax (original token excluded) instead of taking the argmax.
    """
    t = _as_tensor(ids).cpu()
    hit = _coins(len(t), rate, generator)
    if len(t) == 0:
        return _like(t, ids)
    hit[0] = False
    if not bool(hit.any()):
        return _like(t.clone(), ids)
    if logits_fn is None:
        lm = _builtin_lm()
        logits_fn, context = lm.model, context or lm.context
    device = getattr(getattr(logits_fn, "device", None), "type", None)
    lg = next_token_logits(t.to(device) if device else t, logits_fn, context)
    pos = hit.nonzero().flatten()
    rows = lg[pos].clone()
    rows[torch.arange(len(pos)), t[pos].clamp_max(rows.shape[1] - 1)] = float("-inf")
    repl = (torch.multinomial(torch.softmax(rows, -1), 1, generator=generator).flatten() if sample
            else rows.argmax(-1))
    out = t.clone()
    out[pos] = repl
    return _like(out, ids)


def copy_paste(ids: Ids, rate: float, generator: Gen = None, *, human: Ids | None = None) -> Ids:
    """Paste a marked span of ``T - round(rate T)`` tokens into ``round(rate T)`` human tokens. [T] -> [T].

    ``human``: unmarked token ids (at least ``round(rate T)`` of them; the first ones are used).
    The span's start in ``ids`` and its position in the human text are random.
    """
    if human is None:
        raise ValueError("copy_paste needs human= unmarked token ids")
    t, h = _as_tensor(ids).cpu(), _as_tensor(human).cpu()
    n_h = int(round(rate * len(t)))
    n_m = len(t) - n_h
    if len(h) < n_h:
        raise ValueError(f"copy_paste needs at least {n_h} human tokens, got {len(h)}")
    u = torch.rand(2, generator=generator, dtype=torch.float64)
    start = int(u[0] * (len(t) - n_m + 1)) if n_m < len(t) else 0
    at = int(u[1] * (n_h + 1))
    out = torch.cat([h[:at], t[start:start + n_m], h[at:n_h]])
    return _like(out, ids)


def truncate(ids: Ids, rate: float, generator: Gen = None) -> Ids:
    """Keep the first ``max(1, T - round(rate T))`` tokens (all of an empty input). [T] -> [T']."""
    t = _as_tensor(ids)
    keep = max(min(1, len(t)), len(t) - int(round(rate * len(t))))
    return _like(t[:keep].cpu(), ids)


def _rate(s: float) -> float:
    return s


def _spec(name: str, fn: Callable[..., Any], doc: str, needs: tuple[str, ...] = ()) -> AttackSpec:
    return AttackSpec(name, fn, "rate", _rate, doc, kind="text", needs=needs,
                      summary=(fn.__doc__ or "").split("\n")[0])


#: name -> :class:`AttackSpec`, text attacks (strength = edit rate)
TEXT_ATTACKS: dict[str, AttackSpec] = {a.name: a for a in (
    _spec("delete", delete, "s: each token deleted with prob. s"),
    _spec("insert", insert, "s: random token inserted after each with prob. s", ("vocab_size",)),
    _spec("substitute", substitute, "s: each token -> random other token with prob. s", ("vocab_size",)),
    _spec("lm_substitute", lm_substitute, "s: token -> LM's top other token with prob. s (built-in LM)"),
    _spec("copy_paste", copy_paste, "s: fraction of human tokens around one marked span", ("human",)),
    _spec("truncate", truncate, "s: last round(s T) tokens cut (at least 1 kept)"),
)}


def attack_text(name: str, text: str, strength: float, generator: Gen = None, *, lm: Any = None,
                **extra: Any) -> str:
    """Apply a text attack to a string through a tokenizer (``lm``: a ``wmark.lm`` bundle, default built-in).

    ``copy_paste``'s ``human=`` may be given as a string here; ``vocab_size`` defaults to the LM's.
    """
    spec = TEXT_ATTACKS.get(name)
    if spec is None:
        raise ValueError(f"unknown text attack {name!r}; known: {', '.join(TEXT_ATTACKS)}")
    lm = lm if lm is not None else _builtin_lm()
    if isinstance(extra.get("human"), str):
        extra["human"] = lm.encode(extra["human"])
    if "vocab_size" in spec.needs:
        extra.setdefault("vocab_size", lm.vocab_size)
    if name == "lm_substitute" and extra.get("logits_fn") is None:
        extra["logits_fn"], extra["context"] = lm.model, extra.get("context") or lm.context
    return lm.decode(spec(lm.encode(text), strength, generator, **extra))
