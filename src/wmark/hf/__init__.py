"""Hugging Face ``transformers`` integration: text marks applied to the distribution the user asked for.

In ``model.generate()``, transformers runs the ``logits_processor=`` entries *before* its
temperature / top-k / top-p (min-p, typical, ...) warpers, and its ``watermarking_config`` *after*
them. A wmark processor passed in ``logits_processor=`` therefore marks the raw logits: Gumbel ignores
every sampling setting (and greedy), KGW's ``delta`` acts as ``delta / T`` and top-k / top-p then cut
the biased logits. :func:`generate` hands the scheme to ``generate()`` through the
``watermarking_config`` hook, so the order is::

    model logits -> (repetition penalty, bad words, ... your logits_processor=) -> temperature
    -> top-k -> top-p -> ... -> wmark -> sample (do_sample=True) or argmax (greedy)

and the mark sees exactly the distribution the sampler would have used. For users who build their
own ``logits_processor=`` list, :func:`logits_processor` takes the warpers and applies them before the
mark (then ``generate()`` must not warp again: pass ``**neutral_sampling()``).

Deterministic schemes (Gumbel: the token is a function of key and context) get two generation
rules by default, see :mod:`wmark.text.processor`: repeated contexts are sampled plainly (no
repetition loops) and identical rows (``num_return_sequences > 1``) are sampled plainly until they
differ (distinct sequences). In greedy mode Gumbel still picks the keyed sample of the model's
distribution (greedy has no randomness a distortion-free mark could use).

transformers is optional (extra ``hf``); this module imports it when a function is called.
"""
from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, Callable, Mapping, Sequence

from wmark.text.processor import (WatermarkCore, is_deterministic, is_distortion_free,  # noqa: F401
                                  make_logits_processor)

__all__ = ["generate", "watermarking_config", "logits_processor", "warpers", "neutral_sampling",
           "is_deterministic", "is_distortion_free"]

#: sampling settings that make ``generate()`` add no warper (filtered to the installed version's)
_NEUTRAL = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None, "typical_p": 1.0,
            "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "top_h": None}


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("wmark.hf needs transformers: pip install 'wmark[hf]'") from None
    return transformers


def neutral_sampling() -> dict[str, Any]:
    """``generate()`` keyword arguments under which transformers adds no sampling warper (for a
    :func:`logits_processor` that carries its own)."""
    from transformers import GenerationConfig

    gc = GenerationConfig()
    return {k: v for k, v in _NEUTRAL.items() if hasattr(gc, k)}


def warpers(generation_config: Any = None, **sampling: Any) -> Any:
    """The sampling warpers ``generate()`` would add, in its order, as a ``LogitsProcessorList``:
    temperature, top-h, top-k, top-p, min-p, typical, epsilon, eta.

    ``generation_config``: a ``GenerationConfig`` or a dict of its fields (default: none);
    ``sampling`` overrides fields (``temperature=0.7, top_p=0.9``). ``num_beams > 1`` keeps
    ``len(eos) + 1`` tokens, as transformers does. Unset fields add nothing (transformers' own
    default ``top_k=50`` applies only inside ``generate()``)."""
    cfg: dict[str, Any] = {}
    if generation_config is not None:
        cfg.update(generation_config.to_dict() if hasattr(generation_config, "to_dict") else dict(generation_config))
    cfg.update(sampling)
    return _warpers_from(cfg)


def _warpers_from(cfg: Mapping[str, Any]) -> Any:
    tf = _transformers()
    keep = 1
    if (cfg.get("num_beams") or 1) > 1:
        eos = cfg.get("eos_token_id")
        keep = (len(eos) if isinstance(eos, (list, tuple)) else 1) + 1
    out = tf.LogitsProcessorList()

    def add(cls_name: str, *args: Any, **kw: Any) -> None:
        cls = getattr(tf, cls_name, None)
        if cls is None:
            raise ValueError(f"{cls_name} is not in the installed transformers {tf.__version__}")
        out.append(cls(*args, **kw))

    t, k, p = cfg.get("temperature"), cfg.get("top_k"), cfg.get("top_p")
    if t is not None and t != 1.0:
        add("TemperatureLogitsWarper", t)
    if cfg.get("top_h") is not None:
        add("TopHLogitsWarper", top_h=cfg["top_h"])
    if k is not None and k != 0:
        add("TopKLogitsWarper", top_k=k, min_tokens_to_keep=keep)
    if p is not None and p < 1.0:
        add("TopPLogitsWarper", top_p=p, min_tokens_to_keep=keep)
    if cfg.get("min_p") is not None:
        add("MinPLogitsWarper", min_p=cfg["min_p"], min_tokens_to_keep=keep)
    if cfg.get("typical_p") is not None and cfg["typical_p"] < 1.0:
        add("TypicalLogitsWarper", mass=cfg["typical_p"], min_tokens_to_keep=keep)
    if cfg.get("epsilon_cutoff") is not None and 0.0 < cfg["epsilon_cutoff"] < 1.0:
        add("EpsilonLogitsWarper", epsilon=cfg["epsilon_cutoff"], min_tokens_to_keep=keep)
    if cfg.get("eta_cutoff") is not None and 0.0 < cfg["eta_cutoff"] < 1.0:
        add("EtaLogitsWarper", epsilon=cfg["eta_cutoff"], min_tokens_to_keep=keep)
    return out


def logits_processor(scheme: Any, warpers: Any = None, *, mask_repeated: bool | None = None,
                     distinct_rows: bool | None = None) -> WatermarkCore:
    """A ``LogitsProcessor`` that applies ``warpers`` and then the mark, for your own
    ``logits_processor=`` list::

        proc = wmark.hf.logits_processor(scheme, wmark.hf.warpers(temperature=0.7, top_p=0.9))
        model.generate(**inputs, do_sample=True, logits_processor=[proc], **wmark.hf.neutral_sampling())

    ``warpers``: a ``LogitsProcessorList`` (or a sequence of processors), a ``GenerationConfig`` or a
    dict of sampling settings (built with :func:`warpers`), or None (the mark alone: only right with
    greedy or plain T = 1 sampling). Without ``neutral_sampling()``, transformers would warp again
    after the mark; the processor warns where it sees that."""
    tf = _transformers()
    w: Callable | None
    if warpers is None:
        w = None
    elif isinstance(warpers, tf.GenerationConfig) or isinstance(warpers, Mapping):
        w = _warpers_from(warpers.to_dict() if hasattr(warpers, "to_dict") else warpers)
    elif isinstance(warpers, tf.LogitsProcessorList):
        w = warpers
    elif isinstance(warpers, Sequence) and not isinstance(warpers, (str, bytes)):
        w = tf.LogitsProcessorList(list(warpers))
    elif callable(warpers):
        w = warpers
    else:
        raise TypeError(f"warpers must be a LogitsProcessorList, a GenerationConfig, a dict or None, got "
                        f"{type(warpers).__name__}")
    return make_logits_processor(scheme, w, mask_repeated=mask_repeated, distinct_rows=distinct_rows)


_CONFIG_CLASS: type | None = None


def _config_class() -> type:
    global _CONFIG_CLASS
    if _CONFIG_CLASS is not None:
        return _CONFIG_CLASS
    import json

    from transformers.generation.configuration_utils import BaseWatermarkingConfig

    class WmarkWatermarkingConfig(BaseWatermarkingConfig):
        """A wmark scheme as transformers' ``watermarking_config``: ``generate()`` builds its processor
        after every sampling warper. Serialises to the scheme's public parameters (never the key);
        copies share the scheme."""

        def __init__(self, scheme: Any, mask_repeated: bool | None = None, distinct_rows: bool | None = None):
            self.scheme = scheme
            self.mask_repeated = mask_repeated
            self.distinct_rows = distinct_rows

        def validate(self) -> None:
            if not (callable(self.scheme) and hasattr(self.scheme, "vocab_size") and hasattr(self.scheme, "params")):
                raise ValueError(f"watermarking_config needs a wmark text scheme, got {type(self.scheme).__name__}")

        def construct_processor(self, vocab_size: int, device: Any = None) -> WatermarkCore:
            if vocab_size != self.scheme.vocab_size:
                raise ValueError(f"the model scores {vocab_size} tokens but the scheme's vocab_size is "
                                 f"{self.scheme.vocab_size}: build the scheme with model.config.vocab_size")
            return make_logits_processor(self.scheme, mask_repeated=self.mask_repeated,
                                         distinct_rows=self.distinct_rows)

        def to_dict(self) -> dict[str, Any]:
            return {"wmark": dict(self.scheme.params), "mask_repeated": self.mask_repeated,
                    "distinct_rows": self.distinct_rows}

        def to_json_string(self) -> str:
            return json.dumps(self.to_dict(), indent=2) + "\n"

        def __iter__(self):
            yield from self.to_dict().items()

        def __deepcopy__(self, memo: dict) -> "WmarkWatermarkingConfig":
            return type(self)(self.scheme, self.mask_repeated, self.distinct_rows)

        def __eq__(self, other: object) -> bool:
            return (type(other) is type(self) and other.scheme is self.scheme
                    and other.to_dict() == self.to_dict())

        def __hash__(self) -> int:
            return hash((id(self.scheme), self.mask_repeated, self.distinct_rows))

    _CONFIG_CLASS = WmarkWatermarkingConfig
    return _CONFIG_CLASS


def watermarking_config(scheme: Any, *, mask_repeated: bool | None = None, distinct_rows: bool | None = None) -> Any:
    """``scheme`` as transformers' ``watermarking_config``: ``model.generate(...,
    watermarking_config=wmark.hf.watermarking_config(scheme))`` marks after the warpers (what
    :func:`generate` does)."""
    _transformers()
    cfg = _config_class()(scheme, mask_repeated, distinct_rows)
    cfg.validate()
    return cfg


@functools.lru_cache(maxsize=None)
def hook_runs_after_warpers() -> bool:
    """The installed transformers builds ``watermarking_config``'s processor after its temperature
    warper (since the fix of huggingface/transformers#34630, late 2024; before it, the hook ran
    before the warpers like ``logits_processor=``). Read from the source of
    ``GenerationMixin._get_logits_processor``; where it cannot be read, False (wmark then builds the
    warpers itself)."""
    _transformers()
    from transformers.generation.utils import GenerationMixin

    try:
        src = inspect.getsource(GenerationMixin._get_logits_processor)
    except (OSError, TypeError, AttributeError):
        return False
    hook, temp = src.find("watermarking_config.construct_processor"), src.find("TemperatureLogitsWarper(")
    return hook >= 0 and temp >= 0 and hook > temp


def _merged_config(model: Any, kwargs: dict[str, Any]) -> Any:
    """The ``GenerationConfig`` ``generate()`` would use for ``kwargs`` (defaults included)."""
    import copy

    gc = kwargs.get("generation_config")
    rest = {k: v for k, v in kwargs.items() if k != "generation_config"}
    prepare = getattr(model, "_prepare_generation_config", None)
    if prepare is not None:
        try:
            return prepare(gc, **rest)[0]
        except TypeError:  # another signature
            pass
    gc = copy.deepcopy(gc if gc is not None else model.generation_config)
    gc.update(**rest)
    return gc


def _is_wmark(p: Any) -> bool:
    return isinstance(p, WatermarkCore) or (callable(p) and hasattr(p, "seeding") and hasattr(p, "null"))


def generate(model: Any, scheme: Any, inputs: Any = None, *, mask_repeated: bool | None = None,
             distinct_rows: bool | None = None, **kwargs: Any) -> Any:
    """``model.generate(inputs, **kwargs)`` marked with ``scheme``, the mark applied after
    temperature / top-k / top-p (and greedy or beam selection after the mark).

    Everything in ``kwargs`` goes to ``generate()`` (``attention_mask``, ``do_sample``,
    ``temperature``, ``max_new_tokens``, your own ``logits_processor=``, ...); the return value is
    its. ``mask_repeated`` / ``distinct_rows``: see :mod:`wmark.text.processor` (default: on for
    deterministic schemes). Raises ValueError where the request already carries a mark or the
    scheme's vocabulary is not the model's."""
    _transformers()
    vocab = model.config.get_text_config().vocab_size if hasattr(model.config, "get_text_config") \
        else model.config.vocab_size
    if getattr(scheme, "vocab_size", None) != vocab:
        raise ValueError(f"the model scores {vocab} tokens but the scheme's vocab_size is "
                         f"{getattr(scheme, 'vocab_size', None)}: build the scheme with model.config.vocab_size")
    gc = kwargs.get("generation_config")
    if kwargs.get("watermarking_config") is not None or getattr(gc, "watermarking_config", None) is not None:
        raise ValueError("wmark.hf.generate adds the mark itself: do not pass watermarking_config as well")
    if any(_is_wmark(p) for p in (kwargs.get("logits_processor") or [])):
        raise ValueError("wmark.hf.generate adds the mark itself: remove the wmark processor from logits_processor=")
    merged = _merged_config(model, kwargs)
    if is_deterministic(scheme) and (merged.num_beams or 1) > 1:
        warnings.warn(f"wmark: beam search with {getattr(scheme, 'name', 'a deterministic scheme')}, which picks "
                      "one token per step: every beam gets one candidate; sample (num_beams=1) instead", UserWarning,
                      stacklevel=2)
    if hook_runs_after_warpers():
        return model.generate(inputs, watermarking_config=watermarking_config(
            scheme, mask_repeated=mask_repeated, distinct_rows=distinct_rows), **kwargs)
    return _generate_with_own_warpers(model, scheme, inputs, merged, mask_repeated, distinct_rows, kwargs)


def _generate_with_own_warpers(model: Any, scheme: Any, inputs: Any, merged: Any, mask_repeated: bool | None,
                               distinct_rows: bool | None, kwargs: dict[str, Any]) -> Any:
    """The same order on a transformers without the late hook: build the warpers from the merged
    config, put them before the mark at the end of ``logits_processor=``, and neutralise
    ``generate()``'s own."""
    tf = _transformers()
    w = warpers(merged) if merged.do_sample else None
    proc = make_logits_processor(scheme, w if w else None, mask_repeated=mask_repeated, distinct_rows=distinct_rows)
    kw = dict(kwargs)
    kw["logits_processor"] = tf.LogitsProcessorList([*(kwargs.get("logits_processor") or []), proc])
    if merged.do_sample:
        kw.update(neutral_sampling())
    return model.generate(inputs, **kw)
