"""Training: ``wmark train lm`` (tokenizer + model from a seed) and :func:`finetune` for the loop.

``wmark train lm --out DIR --seed 0`` is reproducible: init from ``seed``, batch ``i`` drawn from a
generator seeded by ``(seed, i)``, so a killed run resumes exactly from its checkpoint
(``DIR/.ckpt``). Bitwise equality of the weights needs the same torch build and thread count.
"""
from __future__ import annotations

import copy
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from wmark.lm.bundle import LanguageModel

_CKPT = ".ckpt"


# -- shared training step -------------------------------------------------------------------------
def _as_stream(token_ids: Any, eos_id: int | None, what: str) -> "torch.Tensor":
    """1-D tensor / list[int] -> LongTensor [N]; a list of sequences is joined with ``eos_id``."""
    import torch

    if isinstance(token_ids, torch.Tensor):
        if token_ids.ndim != 1:
            raise ValueError(f"{what} must be 1-D [N] (or a list of 1-D sequences)")
        return token_ids.detach().cpu()
    seqs = list(token_ids)
    if seqs and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in seqs):
        return torch.tensor(seqs)  # one flat stream
    parts = []
    for s in seqs:
        try:
            t = s.detach().cpu() if isinstance(s, torch.Tensor) else torch.tensor(list(s))
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a 1-D tensor, a list of numbers or a list of sequences") from None
        if t.ndim != 1:
            raise ValueError(f"{what}: every sequence must be 1-D")
        parts.append(t)
        if eos_id is not None:
            parts.append(torch.tensor([eos_id], dtype=t.dtype))
    if not parts:
        raise ValueError(f"{what} is empty")
    return torch.cat(parts)


def _sample_batch(stream: "torch.Tensor", batch_size: int, seq_len: int, g: "torch.Generator",
                  weights: "torch.Tensor | None" = None):
    import torch

    starts = torch.randint(0, stream.numel() - seq_len, (batch_size,), generator=g)
    idx = starts[:, None] + torch.arange(seq_len + 1)[None]
    chunk = stream[idx]
    w = None if weights is None else weights[idx[:, 1:]]
    return chunk[:, :-1], chunk[:, 1:], w


def _loss(model, x, y, w=None):
    import torch.nn.functional as F

    logits = model(x)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")
    if w is None:
        return nll.mean()
    w = w.flatten().to(nll.dtype)
    return (nll * w).sum() / w.sum().clamp_min(1e-8)


def _make_optimizer(model, lr: float, weight_decay: float):
    import torch

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


# -- fine-tuning ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FinetuneResult:
    """A fine-tuned copy and its per-step training losses."""

    lm: "LanguageModel"
    losses: tuple[float, ...]
    seconds: float
    tokens_seen: int


def finetune_run(
    lm: "LanguageModel",
    token_ids: Any,
    steps: int = 100,
    lr: float = 3e-4,
    batch_size: int = 16,
    seq_len: int = 128,
    generator: "torch.Generator | None" = None,
    loss_weights: Any = None,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
) -> FinetuneResult:
    """Like :func:`finetune` but also returns the loss curve and timing."""
    import torch

    from wmark.lm.bundle import LanguageModel

    if not isinstance(lm, LanguageModel):
        raise ValueError(f"lm must be a LanguageModel, got {type(lm).__name__}")
    for name, v in (("steps", steps), ("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "steps" else 1):
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    stream = _as_stream(token_ids, lm.eos_id, "token_ids").long()
    V = lm.vocab_size
    if stream.numel() < 2:
        raise ValueError("token_ids must hold at least 2 tokens")
    if int(stream.min()) < 0 or int(stream.max()) >= V:
        raise ValueError(f"token_ids must be in [0, {V})")
    weights = None
    if loss_weights is not None:
        weights = _as_stream(loss_weights, None if isinstance(token_ids, torch.Tensor) else 1.0, "loss_weights")
        weights = weights.float()
        if weights.shape != stream.shape:
            raise ValueError(f"loss_weights must match token_ids: {tuple(weights.shape)} != {tuple(stream.shape)}")
        if not torch.isfinite(weights).all() or bool((weights < 0).any()):
            raise ValueError("loss_weights must be finite and >= 0")
    seq_len = min(seq_len, lm.context, stream.numel() - 1)
    g = generator if generator is not None else torch.Generator().manual_seed(0)

    model = copy.deepcopy(lm.model).train()
    dev = model.device
    opt = _make_optimizer(model, lr, weight_decay)
    losses: list[float] = []
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y, w = _sample_batch(stream, batch_size, seq_len, g, weights)
        loss = _loss(model, x.to(dev), y.to(dev), None if w is None else w.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    new = LanguageModel(model=model, tokenizer=lm.tokenizer, name=f"{lm.name}+ft", card=lm.card)
    return FinetuneResult(lm=new, losses=tuple(losses), seconds=time.perf_counter() - t0,
                          tokens_seen=steps * batch_size * seq_len)


def finetune(
    lm: "LanguageModel",
    token_ids: Any,
    steps: int = 100,
    lr: float = 3e-4,
    batch_size: int = 16,
    seq_len: int = 128,
    generator: "torch.Generator | None" = None,
    loss_weights: Any = None,
) -> "LanguageModel":
    """Fine-tune a copy of ``lm`` on ``token_ids``; ``lm`` itself is never modified.

    ``token_ids``: LongTensor [N] / list[int] (one stream) or a list of sequences (joined with
    ``<|endoftext|>``). Each step draws ``batch_size`` random windows of ``seq_len + 1`` tokens with
    ``generator`` (default: seeded 0). ``loss_weights``: optional per-token weights, same layout
    as ``token_ids`` (the weight of token ``i`` scales the loss of predicting it); the loss is
    ``sum(w * nll) / sum(w)``. AdamW, constant ``lr``, grad-norm clip 1.0.
    """
    return finetune_run(lm, token_ids, steps=steps, lr=lr, batch_size=batch_size, seq_len=seq_len,
                        generator=generator, loss_weights=loss_weights).lm


# -- full training --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_lm`."""

    out_dir: str
    steps: int
    steps_done: int
    val_ppl: float
    val_ppl_per_text: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    sha256: dict[str, str] = field(default_factory=dict)


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac))))


def train_lm(
    out: str | os.PathLike[str],
    seed: int = 0,
    steps: int = 600,
    minutes: float = 20.0,
    batch_size: int = 8,
    seq_len: int = 256,
    lr: float = 1.5e-3,
    vocab_size: int = 4096,
    d_model: int = 192,
    n_layer: int = 4,
    n_head: int = 6,
    context: int = 256,
    data: str | os.PathLike[str] | None = None,
    resume: bool = True,
    command: str | None = None,
    log_every: int = 25,
    ckpt_every: int = 50,
    threads: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train tokenizer + GPT on the shared corpus and write a model folder into ``out``
    (``progress``: a bar with ETA on stderr)."""
    import torch

    from wmark.lm.bundle import LanguageModel, save_dir
    from wmark.lm.data import CORPUS_FILES, default_text_dir, load_corpus
    from wmark.lm.sampling import perplexity
    from wmark.lm.model import GPT, GPTConfig
    from wmark.lm.tokenizer import train_tokenizer

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if steps < 1 or batch_size < 1 or seq_len < 1 or minutes <= 0:
        raise ValueError("steps, batch_size, seq_len and minutes must be positive")
    if seq_len > context:
        raise ValueError(f"seq_len ({seq_len}) must be <= context ({context})")
    out_dir = Path(out)
    ck_dir = out_dir / _CKPT
    ck_dir.mkdir(parents=True, exist_ok=True)
    text_dir = Path(data) if data is not None else default_text_dir()
    hparams = dict(seed=seed, steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, vocab_size=vocab_size,
                   d_model=d_model, n_layer=n_layer, n_head=n_head, context=context, warmup=min(50, steps // 10 + 1),
                   weight_decay=0.1, betas=[0.9, 0.95], grad_clip=1.0, val_fraction=0.05)
    corpus = load_corpus(text_dir, val_fraction=hparams["val_fraction"])

    t_start = time.perf_counter()
    tok = train_tokenizer(list(corpus.train.values()), vocab_size=vocab_size)
    eos = tok.eos_id
    train_parts = []
    for f in CORPUS_FILES:
        train_parts += tok.encode(corpus.train[f]) + [eos]
    stream = torch.tensor(train_parts, dtype=torch.long)
    val_ids = {f: torch.tensor(tok.encode(corpus.val[f]), dtype=torch.long) for f in CORPUS_FILES}
    tok_seconds = time.perf_counter() - t_start

    cfg = GPTConfig(vocab_size=tok.vocab_size, context=context, d_model=d_model, n_layer=n_layer, n_head=n_head)
    torch.manual_seed(seed)
    model = GPT(cfg)
    opt = _make_optimizer(model, lr, hparams["weight_decay"])
    start_step, elapsed = 0, 0.0
    ck_file = ck_dir / "state.pt"
    if resume and ck_file.is_file():
        st = torch.load(ck_file, map_location="cpu", weights_only=True)
        if st["hparams"] == hparams and st["tokenizer"] == tok.to_str():
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["opt"])
            start_step, elapsed = int(st["step"]), float(st["elapsed"])
            print(f"resuming from step {start_step} ({elapsed / 60:.1f} min done)", flush=True)
        else:
            print("checkpoint does not match these settings; starting fresh", flush=True)

    def save_ckpt(step: int, el: float) -> None:
        import io

        from wmark.assets import write_atomic

        buf = io.BytesIO()
        torch.save({"hparams": hparams, "tokenizer": tok.to_str(), "model": model.state_dict(),
                    "opt": opt.state_dict(), "step": step, "elapsed": el}, buf)
        write_atomic(ck_file, buf.getvalue())

    print(f"corpus {stream.numel()} train tokens, vocab {tok.vocab_size}, params {model.num_parameters()}, "
          f"threads {torch.get_num_threads()}", flush=True)
    model.train()
    t0 = time.perf_counter() - elapsed
    step = start_step
    loss_ema = None
    from wmark.runtime.progress import progress as progress_bar

    bar = progress_bar(steps, "train lm", progress, unit="step", initial=step)
    while step < steps:
        el = time.perf_counter() - t0
        if el > minutes * 60:
            print(f"time cap of {minutes} min reached at step {step}", flush=True)
            break
        for gp in opt.param_groups:
            gp["lr"] = _lr_at(step, steps, lr, hparams["warmup"])
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x, y, _ = _sample_batch(stream, batch_size, seq_len, g)
        loss = _loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hparams["grad_clip"])
        opt.step()
        step += 1
        bar.update(1)
        lv = float(loss.detach())
        loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
        if step % log_every == 0 or step == steps:
            el = time.perf_counter() - t0
            print(f"step {step}/{steps} loss {lv:.3f} (ema {loss_ema:.3f}) {el / 60:.1f} min "
                  f"{step * batch_size * seq_len / max(el, 1e-9):.0f} tok/s", flush=True)
        if step % ckpt_every == 0 and step < steps:
            save_ckpt(step, time.perf_counter() - t0)
    bar.close()
    train_seconds = time.perf_counter() - t0
    save_ckpt(step, train_seconds)

    model.eval()
    lm = LanguageModel(model=model, tokenizer=tok, name="tiny")
    per_text = {f: perplexity(lm, val_ids[f]) for f in CORPUS_FILES}
    n = sum(p.n_tokens for p in per_text.values())
    mean_nll = sum(p.mean_nll * p.n_tokens for p in per_text.values()) / n
    val_ppl = math.exp(mean_nll)
    print(f"validation perplexity {val_ppl:.2f} over {n} tokens", flush=True)

    from wmark.assets import sha256_file

    card = {
        "name": "tiny",
        "architecture": "GPT-style decoder-only transformer: pre-LayerNorm, learned absolute positions, "
                        "GELU MLP (4x), tied input/output embeddings, byte-level BPE tokenizer",
        "parameters": model.num_parameters(),
        "weights_dtype": "float16 (cast to float32 on load)",
        "training_command": command or f"wmark train lm --out {out} --seed {seed} --steps {steps}",
        "hparams": hparams,
        "optimizer": "AdamW(betas=(0.9, 0.95), eps=1e-8), weight decay on matrices only, "
                     "linear warmup then cosine decay to 10% of lr, grad-norm clip 1.0",
        "data": {
            "files": {f: sha256_file(text_dir / f) for f in CORPUS_FILES},
            "preprocessing": "Project Gutenberg header/licence stripped (text between '*** START OF' and "
                             "'*** END OF' lines); BOM removed; last 5% of each text (cut at a line break) "
                             "held out for validation; texts joined with <|endoftext|>",
            "train_tokens": int(stream.numel()),
            "val_tokens": n,
        },
        "seed": seed,
        "steps_done": step,
        "tokens_seen": step * batch_size * seq_len,
        "final_train_loss_ema": round(loss_ema, 4) if loss_ema is not None else None,
        "val_perplexity": round(val_ppl, 3),
        "val_perplexity_per_text": {f: round(p.ppl, 3) for f, p in per_text.items()},
        "val_eval": "token-level perplexity, sliding window of 256 tokens with stride 128",
        "train_seconds": round(train_seconds, 1),
        "tokenizer_seconds": round(tok_seconds, 1),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": "cpu",
        },
    }
    readme = _model_readme(card)
    sums = save_dir(lm, out_dir, card=card, readme=readme)
    shutil.rmtree(ck_dir, ignore_errors=True)
    return TrainResult(out_dir=str(out_dir), steps=steps, steps_done=step, val_ppl=val_ppl,
                       val_ppl_per_text={f: p.ppl for f, p in per_text.items()},
                       train_seconds=train_seconds, sha256=sums)


def _model_readme(card: dict[str, Any]) -> str:
    c = card
    h = c["hparams"]
    lines = [
        "# wmark built-in LM: `tiny`",
        "",
        "A tiny causal language model shipped inside wmark so the text watermark and the",
        "self-consuming loop run offline. Not a useful general-purpose LM.",
        "",
        f"- **Architecture**: {c['architecture']}.",
        f"- **Size**: d_model {h['d_model']}, {h['n_layer']} layers, {h['n_head']} heads, context {h['context']}, "
        f"vocab {h['vocab_size']}; {c['parameters']:,} parameters; weights stored as {c['weights_dtype']}.",
        f"- **Data**: {', '.join(c['data']['files'])} (from `shared/data/text`). {c['data']['preprocessing']}. "
        f"{c['data']['train_tokens']:,} train tokens, {c['data']['val_tokens']:,} validation tokens.",
        f"- **Training**: `{c['training_command']}` (seed {c['seed']}); {c['steps_done']} steps of batch "
        f"{h['batch_size']} x {h['seq_len']} tokens ({c['tokens_seen']:,} tokens), lr {h['lr']}. {c['optimizer']}.",
        f"- **Validation perplexity**: {c['val_perplexity']} ({c['val_eval']}); per text: "
        + ", ".join(f"{k} {v}" for k, v in c["val_perplexity_per_text"].items()) + ".",
        f"- **Training time**: {c['train_seconds'] / 60:.1f} min on {c['machine']['processor']} "
        f"({c['machine']['torch_threads']} torch threads, {c['machine']['cpu_count']} CPUs, torch "
        f"{c['machine']['torch']}, {c['machine']['platform']}).",
        "",
        "Integrity: `SHA256SUMS` lists the sha256 of `model.bin`, `tokenizer.json` and `card.json`;",
        "`wmark.lm.load()` refuses files that do not match.",
        "",
    ]
    return "\n".join(lines)
