"""Sampling with a KV cache, HF-style logits processors, and scoring (token log-probs, perplexity)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence, Union

import torch
import torch.nn.functional as F

from wmark.lm.model import GPT, KVCache

if TYPE_CHECKING:  # pragma: no cover
    from wmark.lm.bundle import LanguageModel

#: ``(input_ids LongTensor[B, T_so_far], scores FloatTensor[B, V]) -> FloatTensor[B, V]``
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ProcessorArg = Union[LogitsProcessor, Sequence[LogitsProcessor], None]


def _model_of(lm: "LanguageModel | GPT") -> GPT:
    model = getattr(lm, "model", lm)
    if not isinstance(model, GPT):
        raise ValueError(f"expected a LanguageModel or GPT, got {type(lm).__name__}")
    return model


def _processors(logits_processor: ProcessorArg) -> list[LogitsProcessor]:
    if logits_processor is None:
        return []
    if callable(logits_processor):
        return [logits_processor]
    procs = list(logits_processor)
    for p in procs:
        if not callable(p):
            raise ValueError(f"logits_processor entries must be callable, got {type(p).__name__}")
    return procs


@torch.no_grad()
def generate(
    lm: "LanguageModel | GPT",
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    logits_processor: ProcessorArg = None,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Sample a continuation: input_ids LongTensor [B, T] -> LongTensor [B, T + n], n <= max_new_tokens.

    Each step: last-position logits / temperature, then each processor in order (HF
    ``LogitsProcessor`` signature, ``input_ids`` is everything so far [B, T_so_far]), then ``top_k``,
    then ``torch.multinomial`` on the softmax (``temperature == 0``: argmax). Processors may set all
    but one logit to ``-inf``. With ``eos_id``, a row that emitted it is padded with ``eos_id`` and
    generation stops early once every row has. Uses the KV cache; past the context window the cache
    is rebuilt from the last 3/4 context of tokens.
    """
    model = _model_of(lm)
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype != torch.long or input_ids.ndim != 2:
        raise ValueError("input_ids must be a LongTensor of shape [B, T]")
    B, T = input_ids.shape
    V, ctx = model.config.vocab_size, model.config.context
    if B == 0 or T == 0:
        raise ValueError(f"input_ids must be non-empty, got shape {tuple(input_ids.shape)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if eos_id is not None and not 0 <= eos_id < V:
        raise ValueError(f"eos_id must be in [0, {V}), got {eos_id}")
    if int(input_ids.min()) < 0 or int(input_ids.max()) >= V:
        raise ValueError(f"input_ids must be token ids in [0, {V})")
    procs = _processors(logits_processor)
    if max_new_tokens == 0:
        return input_ids.clone()

    was_training = model.training
    model.eval()
    try:
        seq = input_ids.to(model.device)
        keep = max(1, (3 * ctx) // 4)
        cache: KVCache | None = None
        logits, cache = model.forward_cached(seq[:, -ctx:] if T > ctx else seq)
        done = torch.zeros(B, dtype=torch.bool, device=seq.device)
        for step in range(max_new_tokens):
            scores = logits[:, -1, :].float()
            if temperature > 0:
                scores = scores / temperature
            for proc in procs:
                scores = proc(seq, scores)
                if not isinstance(scores, torch.Tensor) or scores.shape != (B, V):
                    raise ValueError(f"logits processor must return scores of shape [{B}, {V}]")
            if top_k is not None and top_k < V:
                kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            if temperature == 0:
                nxt = scores.argmax(dim=-1)
            else:
                probs = torch.softmax(scores, dim=-1)
                if not torch.isfinite(probs).all():
                    raise ValueError("logits processor left a row with no finite score (all -inf or NaN)")
                if generator is not None and generator.device != probs.device:
                    nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(seq.device)
                else:
                    nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done = done | (nxt == eos_id)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            if step == max_new_tokens - 1 or (eos_id is not None and bool(done.all())):
                break
            P = cache[0][0].shape[2]
            if P + 1 > ctx:  # window full: rebuild the cache from the most recent tokens
                logits, cache = model.forward_cached(seq[:, -keep:])
            else:
                logits, cache = model.forward_cached(nxt[:, None], cache, check=False)
        return seq.to(input_ids.device)
    finally:
        model.train(was_training)


_ROWS_PER_CALL = 16  # windows scored per forward call in token_logprobs


def _as_batch(ids: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, bool]:
    """ids [T] or [B, T] (tensor or nested lists) -> ([B, T] LongTensor, whether the input was 1-D)."""
    if not isinstance(ids, torch.Tensor):
        try:
            ids = torch.tensor(list(ids), dtype=torch.long)
        except (TypeError, ValueError):
            raise ValueError("ids must be a LongTensor [T] / [B, T] or a sequence of int") from None
    if ids.dtype != torch.long or ids.ndim not in (1, 2):
        raise ValueError("ids must be a LongTensor of shape [T] or [B, T]")
    return (ids[None], True) if ids.ndim == 1 else (ids, False)


@torch.no_grad()
def token_logprobs(
    lm: "LanguageModel | GPT", ids: torch.Tensor | Sequence[int], stride: int | None = None
) -> torch.Tensor:
    """Log-probability of each next token: ids [B, T] (or [T]) -> FloatTensor [B, T - 1] (or [T - 1]).

    Entry ``t`` is ``log p(ids[:, t + 1] | ids[:, :t + 1])``. Sequences longer than the context
    are scored with a sliding window advancing by ``stride`` (default context // 2), so every
    token after the first window sees at least ``context - stride`` tokens of history.
    """
    model = _model_of(lm)
    x, one_d = _as_batch(ids)
    x = x.to(model.device)
    B, T = x.shape
    ctx, V = model.config.context, model.config.vocab_size
    if T < 2:
        raise ValueError("need at least 2 tokens to score")
    if int(x.min()) < 0 or int(x.max()) >= V:
        raise ValueError(f"ids must be token ids in [0, {V})")
    stride = ctx // 2 if stride is None else stride
    if not 1 <= stride <= ctx:
        raise ValueError(f"stride must be in [1, {ctx}], got {stride}")
    # plan windows [begin, end) so each target 1..T-1 is scored exactly once
    windows: list[tuple[int, int, int]] = []  # (begin, end, first new target index into out)
    done, begin = 0, 0
    while done < T - 1:
        end = min(begin + ctx, T)
        windows.append((begin, end, done))
        done = end - 1
        if end == T:
            break
        begin = min(max(begin + stride, end - ctx), done)
    was_training = model.training
    model.eval()
    try:
        out = torch.empty(B, T - 1, device=x.device)
        by_len: dict[int, list[tuple[int, int, int]]] = {}
        for w in windows:
            by_len.setdefault(w[1] - w[0], []).append(w)
        rows_per_call = max(1, _ROWS_PER_CALL // B)
        for L, ws in by_len.items():
            for i in range(0, len(ws), rows_per_call):
                chunk = ws[i : i + rows_per_call]
                xb = torch.cat([x[:, b:e] for b, e, _ in chunk], dim=0)  # [len(chunk) * B, L]
                logp = F.log_softmax(model(xb).float(), dim=-1)
                lp = logp[:, :-1].gather(-1, xb[:, 1:, None]).squeeze(-1)  # targets b+1..e-1
                for j, (b, e, first) in enumerate(chunk):
                    out[:, first : e - 1] = lp[j * B : (j + 1) * B, first - b :]
        out = out.cpu()
        return out[0] if one_d else out
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Perplexity:
    """Perplexity over ``n_tokens`` predicted tokens: ``ppl = exp(mean_nll)`` (nats)."""

    ppl: float
    mean_nll: float
    n_tokens: int

    def __float__(self) -> float:
        return self.ppl


def perplexity(
    lm: "LanguageModel | GPT", ids: torch.Tensor | Sequence[int], stride: int | None = None
) -> Perplexity:
    """Perplexity of ids ([T] long text or [B, T] batch), sliding window for long inputs."""
    lp = token_logprobs(lm, ids, stride=stride)
    nll = float(-lp.double().mean())
    return Perplexity(ppl=math.exp(nll), mean_nll=nll, n_tokens=int(lp.numel()))
