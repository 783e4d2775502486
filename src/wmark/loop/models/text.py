"""Text family of the loop: the built-in LM (:mod:`wmark.lm`), fine-tuned each generation on its data.

Samples are a list of :class:`TextSample` (token ids ``[L]`` plus optional per-token loss weights,
set by the text marker's strip). Every sample is generated from ``<|endoftext|>`` (and real samples
are random ``L``-token windows of the shared corpus, read as if they followed it), so training
streams are ``eos s_1 eos s_2 ...`` with weight 0 on the separators: the model never learns to end
text after ``L`` tokens. Sampling bias ``lam`` is the temperature.

Metrics (:func:`evaluate`): ``sample_ppl`` (perplexity of the model's samples under the *shipped*
model), ``val_ppl`` (the model's perplexity on held-out real text), ``distinct_1``, ``distinct_2``,
``support`` (distinct token ids in the samples), ``tail_mass`` (share of sample tokens outside the
real corpus' top ``head_frac`` = 10% of the vocabulary), ``train_ess`` (Kish effective sample
fraction ``(sum w)^2 / (N sum w^2)`` of the training tokens' loss weights: 1 unless strip re-weighted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from wmark.loop.models.base import Family

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from wmark.lm.bundle import LanguageModel

_BASE: dict[tuple[str, str], "LanguageModel"] = {}
_CORPUS: dict[tuple[str, str | None], dict[str, Any]] = {}


def base_lm(name: str = "tiny", device: str = "cpu") -> "LanguageModel":
    """The shipped LM ``name`` on ``device`` (loaded once per process; never modified)."""
    k = (name, str(device))
    if k not in _BASE:
        import wmark.lm

        _BASE[k] = wmark.lm.load(name, device=device)
    return _BASE[k]


@dataclass(frozen=True, eq=False)
class TextSample:
    """One text sample: ``ids [L]`` int64 token ids; ``weights [L]`` float32 per-token loss weights
    (None: all 1); ``marked``: generated with a watermark processor."""

    ids: "torch.Tensor"
    weights: "torch.Tensor | None" = None
    marked: bool = False


def stack_ids(samples: Sequence[TextSample], prefix: int | None = None) -> "torch.Tensor":
    """Token ids ``[n, L]`` (``[n, 1 + L]`` with a ``prefix`` token, e.g. eos, in front)."""
    import torch

    if not len(samples):
        raise ValueError("no samples")
    ids = torch.stack([s.ids for s in samples])
    if prefix is not None:
        ids = torch.cat([torch.full((ids.shape[0], 1), int(prefix), dtype=ids.dtype), ids], dim=1)
    return ids


def training_stream(samples: Sequence[TextSample], eos: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """``(ids [N], weights [N])`` for :func:`wmark.lm.finetune`: ``eos s_1 eos s_2 ...``, weight 0
    on every ``eos`` separator, each sample's own weights (default 1) on its tokens."""
    import torch

    ids, ws = [], []
    for s in samples:
        ids += [torch.tensor([eos], dtype=torch.long), s.ids.long()]
        w = torch.ones(len(s.ids)) if s.weights is None else s.weights.float()
        ws += [torch.zeros(1), w]
    return torch.cat(ids), torch.cat(ws)


@dataclass
class TextModel:
    """The shipped LM plus fine-tuned weights ``state`` (None: the shipped ones).

    ``fit`` fine-tunes from the current weights (``steps`` AdamW steps, ``batch_size`` windows of
    ``seq_len`` tokens, constant ``lr``); ``sample`` draws ``length``-token continuations of eos.
    Checkpoints store the fields and the fp32 ``state``; ``_lm`` is rebuilt on demand.
    """

    length: int = 64
    steps: int = 12
    lr: float = 1e-3
    batch_size: int = 8
    seq_len: int = 64
    top_k: int | None = None
    base: str = "tiny"
    device: str = "cpu"
    state: dict | None = None
    _lm: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("length", "steps", "batch_size", "seq_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "steps" else 1):
                raise ValueError(f"text model '{name}' must be a positive integer, got {v!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"text model 'lr' must be a positive number, got {self.lr!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"text model 'top_k' must be a positive integer or null, got {self.top_k!r}")

    @property
    def lm(self) -> "LanguageModel":
        """The live :class:`~wmark.lm.bundle.LanguageModel` (shipped weights + ``state``)."""
        if self._lm is None:
            base = base_lm(self.base, self.device)
            if self.state is None:
                self._lm = base
            else:
                lm = base.copy()
                lm.model.load_state_dict(self.state)
                self._lm = lm
        return self._lm

    @property
    def vocab_size(self) -> int:
        return self.lm.vocab_size

    @property
    def eos(self) -> int:
        eos = self.lm.eos_id
        if eos is None:
            raise ValueError("the text family needs a tokenizer with <|endoftext|>")
        return eos

    def fit(self, data: Sequence[TextSample], rng: np.random.Generator) -> "TextModel":
        """A new model: these weights fine-tuned on ``data`` (list of TextSample)."""
        from wmark.lm.train import finetune
        from wmark.loop.engine import torch_generator

        ids, w = training_stream(data, self.eos)
        new = finetune(self.lm, ids, steps=self.steps, lr=float(self.lr), batch_size=self.batch_size,
                       seq_len=self.seq_len, generator=torch_generator(rng), loss_weights=w)
        state = {k: v.detach().clone() for k, v in new.model.state_dict().items()}
        return TextModel(self.length, self.steps, self.lr, self.batch_size, self.seq_len, self.top_k,
                         self.base, self.device, state, new)

    def sample(self, n: int, lam: float, rng: np.random.Generator,
               logits_processor: Any = None) -> list[TextSample]:
        """``n`` samples of ``length`` tokens at temperature ``lam`` (``logits_processor``: e.g. a
        watermark scheme; the samples are then flagged ``marked``)."""
        import torch

        from wmark.lm.sampling import generate
        from wmark.loop.engine import torch_generator

        if n <= 0:
            return []
        g = torch_generator(rng)
        prompt = torch.full((int(n), 1), self.eos, dtype=torch.long, device=self.lm.device)
        out = generate(self.lm, prompt, self.length, temperature=float(lam), top_k=self.top_k,
                       logits_processor=logits_processor, generator=g)[:, 1:].cpu()
        marked = logits_processor is not None
        return [TextSample(row.clone(), None, marked) for row in out]


@dataclass
class TextSource:
    """Real text: random ``length``-token windows of the shared corpus' training split; a fixed
    validation set ``val [n_val, length]``; token frequencies ``freq [V]`` of the training split."""

    length: int
    train: "torch.Tensor"
    val: "torch.Tensor"
    freq: np.ndarray
    base: str = "tiny"

    def sample(self, n: int, lam: float, rng: np.random.Generator) -> list[TextSample]:
        """``n`` windows (``lam`` is ignored: real text has no sampling bias)."""
        starts = rng.integers(0, self.train.numel() - self.length, size=int(n))
        return [TextSample(self.train[s:s + self.length].clone()) for s in starts]


def _corpus_tokens(base: str, corpus: str | None) -> dict[str, Any]:
    k = (base, corpus)
    if k not in _CORPUS:
        import torch

        from wmark.lm.data import load_corpus

        lm = base_lm(base)
        c = load_corpus(corpus)
        enc = lambda texts: torch.tensor([t for x in texts for t in lm.encode(x)], dtype=torch.long)  # noqa: E731
        _CORPUS[k] = {"train": enc(c.train.values()), "val": enc(c.val.values())}
    return _CORPUS[k]


def make_source(length: int = 64, n_val: int = 32, corpus: str | None = None, base: str = "tiny") -> TextSource:
    """The shared corpus (``corpus``: its folder, default ``../shared/data/text``) as ``length``-token
    windows; ``n_val`` evenly spaced held-out windows for ``val_ppl``."""
    import torch

    for name, v in (("length", length), ("n_val", n_val)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"text data '{name}' must be a positive integer, got {v!r}")
    toks = _corpus_tokens(base, corpus)
    train, val = toks["train"], toks["val"]
    if val.numel() < n_val * length or train.numel() <= length:
        raise ValueError(f"corpus too small for {n_val} validation windows of {length} tokens")
    starts = np.linspace(0, val.numel() - length, n_val).astype(int)
    vwin = torch.stack([val[s:s + length] for s in starts])
    freq = np.bincount(train.numpy(), minlength=base_lm(base).vocab_size).astype(float)
    return TextSource(int(length), train, vwin, freq / freq.sum(), base)


def make_model(source: TextSource, **params: Any) -> TextModel:
    """An unfitted text model (the shipped weights) sampling ``source.length`` tokens."""
    unknown = set(params) - {"steps", "lr", "batch_size", "seq_len", "top_k", "device"}
    if unknown:
        raise ValueError(f"bad parameters for the text model: {', '.join(sorted(unknown))}")
    return TextModel(length=source.length, base=source.base, **params)


def evaluate(model: TextModel, source: TextSource, train: Any, rng: np.random.Generator,
             params: Mapping[str, Any]) -> dict[str, float]:
    """Quality and diversity of ``eval.n_eval`` (default 32) samples at temperature 1 (see the module)."""
    import torch

    from wmark.lm.sampling import perplexity
    from wmark.loop import text_metrics as TM

    samples = model.sample(int(params.get("n_eval", 32)), 1.0, rng)
    ids = stack_ids(samples)
    ref = base_lm(source.base, model.device)
    eos = model.eos
    prefix = lambda x: torch.cat([torch.full((x.shape[0], 1), eos, dtype=torch.long), x], 1)  # noqa: E731
    head = max(1, int(round(float(params.get("head_frac", 0.1)) * len(source.freq))))
    ess = 0.0  # no training data (everything dropped): nothing effective
    if train is not None and len(train):  # Kish effective sample fraction of the training tokens
        w = torch.cat([torch.ones(len(x.ids)) if x.weights is None else x.weights.float() for x in train])
        ess = float(w.sum() ** 2 / (len(w) * (w * w).sum()))
    return {
        "train_ess": ess,
        "sample_ppl": perplexity(ref, prefix(ids)).ppl,
        "val_ppl": perplexity(model.lm, prefix(source.val)).ppl,
        "distinct_1": TM.distinct_n(ids, 1),
        "distinct_2": TM.distinct_n(ids, 2),
        "support": float(TM.support_size(ids)),
        "tail_mass": TM.tail_token_mass(ids, TM.head_tokens(source.freq, head)),
    }


FAMILY = Family("text", make_model, make_source, evaluate,
                description="built-in tiny LM fine-tuned each generation; lam = temperature",
                source_is_model=False)
