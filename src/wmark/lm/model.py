"""A tiny GPT-style causal transformer (pure torch) with a KV-cache path for fast decoding.

Pre-LayerNorm blocks, learned absolute positions, GELU MLP, tied input/output embeddings,
``torch.nn.functional.scaled_dot_product_attention``. Works on CPU and CUDA.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: per-layer (key, value) tensors, each [B, H, T_past, head_dim]
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class GPTConfig:
    """Architecture of :class:`GPT` (frozen; stored in the model card)."""

    vocab_size: int = 4096
    context: int = 256
    d_model: int = 192
    n_layer: int = 4
    n_head: int = 6
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "d_model", "n_layer", "n_head", "mlp_ratio"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {v!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPTConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


class _Attention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.d_model // cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [B, T, D], past k/v [B, H, P, hd] -> y [B, T, D], new k/v [B, H, P+T, hd]."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        P = 0
        if past is not None:
            P = past[0].shape[2]
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        drop = self.dropout if self.training else 0.0
        if P == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        elif T == 1:  # one new token sees everything before it
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:  # new block: row i (absolute P+i) sees keys 0..P+i
            mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(diagonal=P)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).reshape(B, T, D)
        return self.proj(y), (k, v)


class _Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = _Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.out = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn(self.ln1(x), past)
        x = x + self.drop(a)
        x = x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))
        return x, kv


class GPT(nn.Module):
    """Causal LM: ``forward(ids [B, T]) -> logits [B, T, V]`` (float32), T <= ``config.context``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init; residual output projections scaled by 1/sqrt(2 * n_layer).

        Uses the global torch RNG: seed it (``torch.manual_seed``) for reproducible weights.
        """
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                std = 0.02
                if name.endswith("attn.proj.weight") or name.endswith(".out.weight"):
                    std = 0.02 / math.sqrt(2 * self.config.n_layer)
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:  # LayerNorm weights
                nn.init.ones_(p)

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device

    def num_parameters(self) -> int:
        """Number of (unique) parameters; the output head is tied to ``tok_emb``."""
        return sum(p.numel() for p in self.parameters())

    def _check_ids(self, ids: torch.Tensor, past_len: int) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.ndim != 2:
            raise ValueError("ids must be a LongTensor of shape [B, T]")
        if ids.shape[1] == 0:
            raise ValueError("ids must hold at least one token (T >= 1)")
        if past_len + ids.shape[1] > self.config.context:
            raise ValueError(
                f"sequence length {past_len + ids.shape[1]} exceeds the model context {self.config.context}"
            )

    def forward_cached(
        self, ids: torch.Tensor, cache: KVCache | None = None, check: bool = True
    ) -> tuple[torch.Tensor, KVCache]:
        """Incremental forward: ids [B, T] continue a prefix held in ``cache``.

        Returns logits [B, T, V] for the new positions and the extended cache (P + T entries).
        ``forward_cached(ids[:, :k])`` then ``forward_cached(ids[:, k:], cache)`` gives the same
        logits as ``forward(ids)`` up to float rounding.
        """
        P = 0 if not cache else cache[0][0].shape[2]
        if check:
            self._check_ids(ids, P)
            if cache is not None and len(cache) not in (0, self.config.n_layer):
                raise ValueError(f"cache must hold {self.config.n_layer} layers, got {len(cache)}")
        T = ids.shape[1]
        pos = torch.arange(P, P + T, device=ids.device)
        x = self.drop(self.tok_emb(ids) + self.pos_emb(pos))
        new_cache: KVCache = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, cache[i] if cache else None)
            new_cache.append(kv)
        x = self.ln_f(x)
        return F.linear(x, self.tok_emb.weight), new_cache

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids LongTensor [B, T] -> logits FloatTensor [B, T, V]."""
        self._check_ids(ids, 0)
        T = ids.shape[1]
        x = self.drop(self.tok_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device)))
        for blk in self.blocks:
            x, _ = blk(x, None)
        return F.linear(self.ln_f(x), self.tok_emb.weight)
