"""The model bundle (:class:`LanguageModel`), weight files, sha256 checks and :func:`load`.

A model directory holds ``model.bin`` (fp16 tensors, a small safe format: no pickle),
``tokenizer.json``, ``card.json``, ``README.md`` and ``SHA256SUMS``. The shipped one lives in
``wmark/lm/weights/`` and is produced by ``wmark train lm --out DIR`` (see its card).
"""
from __future__ import annotations

import copy
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from wmark.assets import sha256_file, verify_sums, write_atomic
from wmark.lm.model import GPT, GPTConfig
from wmark.lm.tokenizer import Tokenizer

MODEL_FILE = "model.bin"
TOKENIZER_FILE = "tokenizer.json"
CARD_FILE = "card.json"
SUMS_FILE = "SHA256SUMS"
_MAGIC = b"WMLM\x01\x00\x00\x00"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

#: shipped models: name -> folder inside the ``wmark.lm`` package
SHIPPED: dict[str, str] = {"tiny": "weights"}


# -- tensor file format ---------------------------------------------------------------------------
def write_tensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], dtype: str = "float16") -> None:
    """Write float tensors as ``dtype`` in a deterministic, pickle-free file (magic, JSON header, bytes)."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    header: dict[str, Any] = {"dtype": dtype, "tensors": []}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", _DTYPES[dtype]).contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header["tensors"].append({"name": name, "shape": list(t.shape), "offset": offset, "nbytes": len(raw)})
        blobs.append(raw)
        offset += len(raw)
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    write_atomic(path, b"".join([_MAGIC, struct.pack("<Q", len(hb)), hb, *blobs]))


def read_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a :func:`write_tensors` file; tensors come back as float32."""
    data = Path(path).read_bytes()
    if data[:8] != _MAGIC:
        raise ValueError(f"not a wmark weights file: {path}")
    (hlen,) = struct.unpack("<Q", data[8:16])
    header = json.loads(data[16 : 16 + hlen])
    base = 16 + hlen
    dt = _DTYPES[header["dtype"]]
    out: dict[str, torch.Tensor] = {}
    for e in header["tensors"]:
        raw = bytearray(data[base + e["offset"] : base + e["offset"] + e["nbytes"]])
        t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
        out[e["name"]] = t.reshape(e["shape"]).float()
    return out


# -- the bundle -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LanguageModel:
    """A causal LM and its tokenizer. ``model`` is a :class:`GPT` in eval mode."""

    model: GPT
    tokenizer: Tokenizer
    name: str = "custom"
    card: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, GPT) or not isinstance(self.tokenizer, Tokenizer):
            raise ValueError("LanguageModel needs a GPT model and a Tokenizer")
        if self.model.config.vocab_size != self.tokenizer.vocab_size:
            raise ValueError(
                f"model vocab ({self.model.config.vocab_size}) != tokenizer vocab ({self.tokenizer.vocab_size})"
            )

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    @property
    def context(self) -> int:
        return self.model.config.context

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_id

    def __repr__(self) -> str:
        c = self.model.config
        return (f"LanguageModel(name={self.name!r}, d_model={c.d_model}, n_layer={c.n_layer}, "
                f"vocab_size={c.vocab_size}, context={c.context}, device={str(self.device)!r})")

    def to(self, device: str | torch.device) -> "LanguageModel":
        """A copy on ``device`` (this bundle is left untouched)."""
        return LanguageModel(copy.deepcopy(self.model).to(device).eval(), self.tokenizer, self.name, self.card)

    def copy(self) -> "LanguageModel":
        """An independent copy of the weights (same tokenizer)."""
        return LanguageModel(copy.deepcopy(self.model).eval(), self.tokenizer, self.name, self.card)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return self.tokenizer.decode(ids)

    def generate_text(
        self,
        prompt: str,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_k: int | None = None,
        logits_processor: Any = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> str:
        """Continue ``prompt``; returns only the new text (stops at ``<|endoftext|>`` by default).

        ``seed`` is a shortcut for ``generator=torch.Generator().manual_seed(seed)``. An empty
        prompt starts from ``<|endoftext|>``.
        """
        from wmark.lm.sampling import generate

        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be str, got {type(prompt).__name__}")
        if seed is not None:
            if generator is not None:
                raise ValueError("pass either seed or generator, not both")
            generator = torch.Generator().manual_seed(int(seed))
        ids = self.tokenizer.encode(prompt)
        if not ids:
            if self.eos_id is None:
                raise ValueError("empty prompt and the tokenizer has no <|endoftext|> token")
            ids = [self.eos_id]
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = generate(self, x, max_new_tokens, temperature=temperature, top_k=top_k,
                       logits_processor=logits_processor, generator=generator,
                       eos_id=self.eos_id if stop_at_eos else None)
        new = out[0, len(ids):].tolist()
        if stop_at_eos and self.eos_id is not None and self.eos_id in new:
            new = new[: new.index(self.eos_id)]
        return self.tokenizer.decode(new)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_dir(lm: LanguageModel, out: str | os.PathLike[str], card: dict[str, Any] | None = None,
             readme: str | None = None) -> dict[str, str]:
    """Write ``lm`` (fp16 weights, tokenizer, card, optional README) and SHA256SUMS into ``out``.

    Returns {file name: sha256}.
    """
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    write_tensors(d / MODEL_FILE, lm.model.state_dict(), "float16")
    lm.tokenizer.save(d / TOKENIZER_FILE)
    card = dict(card or lm.card or {})
    card["config"] = lm.model.config.to_dict()
    card["files"] = {MODEL_FILE: sha256_file(d / MODEL_FILE), TOKENIZER_FILE: sha256_file(d / TOKENIZER_FILE)}
    write_atomic(d / CARD_FILE, json.dumps(card, indent=2, sort_keys=True) + "\n")
    names = [MODEL_FILE, TOKENIZER_FILE, CARD_FILE]
    if readme is not None:
        write_atomic(d / "README.md", readme)
        names.append("README.md")
    sums = {n: sha256_file(d / n) for n in names}
    write_atomic(d / SUMS_FILE, "".join(f"{h}  {n}\n" for n, h in sums.items()))
    return sums


def load_dir(path: str | os.PathLike[str], device: str | torch.device | None = None,
             name: str | None = None, verify: bool = True) -> LanguageModel:
    """Load a model directory written by :func:`save_dir` / ``wmark train lm`` (sha256-verified)."""
    d = Path(path)
    if not d.is_dir():
        raise FileNotFoundError(f"model directory not found: {d}")
    if verify:
        verify_sums(d, (MODEL_FILE, TOKENIZER_FILE, CARD_FILE), SUMS_FILE)
    card = json.loads((d / CARD_FILE).read_text(encoding="utf-8"))
    cfg = GPTConfig.from_dict(card["config"])
    model = GPT(cfg)
    state = read_tensors(d / MODEL_FILE)
    model.load_state_dict(state, strict=True)
    dev = torch.device(device) if device is not None else default_device()
    model.to(dev).eval()
    tok = Tokenizer.from_file(d / TOKENIZER_FILE)
    return LanguageModel(model=model, tokenizer=tok, name=name or card.get("name", d.name), card=card)


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(SHIPPED)


def load_tokenizer(name: str = "tiny") -> Tokenizer:
    """The tokenizer of a shipped model alone (sha256-verified; the weights are not read)."""
    import importlib.resources as ir

    if name not in SHIPPED:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    with ir.as_file(ir.files("wmark.lm").joinpath(SHIPPED[name])) as d:
        verify_sums(d, (TOKENIZER_FILE,), SUMS_FILE)
        return Tokenizer.from_file(Path(d) / TOKENIZER_FILE)


def load(name: str = "tiny", device: str | torch.device | None = None) -> LanguageModel:
    """Load a shipped model (weights inside the package, sha256-verified; no downloads).

    ``device``: None -> CUDA when available, else CPU.
    """
    import importlib.resources as ir

    if name not in SHIPPED:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    res = ir.files("wmark.lm").joinpath(SHIPPED[name])
    with ir.as_file(res) as d:
        if not (Path(d) / MODEL_FILE).is_file():
            raise FileNotFoundError(f"shipped weights for {name!r} are missing from {d}")
        return load_dir(d, device=device, name=name)
