"""``wmark.lm``: a tiny built-in causal language model and byte-level BPE tokenizer.

Everything runs offline: the weights ship inside the package (``wmark/lm/weights/``) and are
verified by sha256 on load. Heavy modules (torch, tokenizers) load lazily on first use.

    >>> import wmark.lm
    >>> lm = wmark.lm.load("tiny")                       # doctest: +SKIP
    >>> lm.generate_text("ROMEO:", max_new_tokens=20)    # doctest: +SKIP
"""
from __future__ import annotations

from wmark._lazy import lazy_attributes

# public name -> defining module (PEP 562 lazy attributes)
_LAZY = {
    "Tokenizer": "wmark.lm.tokenizer",
    "train_tokenizer": "wmark.lm.tokenizer",
    "EOS_TOKEN": "wmark.lm.tokenizer",
    "GPTConfig": "wmark.lm.model",
    "GPT": "wmark.lm.model",
    "KVCache": "wmark.lm.model",
    "generate": "wmark.lm.sampling",
    "perplexity": "wmark.lm.sampling",
    "token_logprobs": "wmark.lm.sampling",
    "Perplexity": "wmark.lm.sampling",
    "LanguageModel": "wmark.lm.bundle",
    "WeightsIntegrityError": "wmark.assets",
    "load": "wmark.lm.bundle",
    "load_tokenizer": "wmark.lm.bundle",
    "load_dir": "wmark.lm.bundle",
    "save_dir": "wmark.lm.bundle",
    "available": "wmark.lm.bundle",
    "finetune": "wmark.lm.train",
    "finetune_run": "wmark.lm.train",
    "FinetuneResult": "wmark.lm.train",
    "train_lm": "wmark.lm.train",
    "TrainResult": "wmark.lm.train",
    "load_corpus": "wmark.lm.data",
    "strip_gutenberg": "wmark.lm.data",
}

__getattr__, __dir__, __all__ = lazy_attributes(__name__, _LAZY)
