"""The built-in decoder-only transformer: RoPE, RMSNorm, SwiGLU MLP, tied embeddings, KV cache.

Small enough to train from scratch on a laptop CPU, and written so that sampling never recomputes
a prefix: `forward` takes the positions of the new tokens and an optional `KVCache` whose slots it
fills in place. Prompts of different lengths are left-padded; `KVCache.valid` marks real tokens so
padding is never attended to, and each row's positions start at 0 at its first real token, so a
padded prompt gives the same logits as the same prompt alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the built-in transformer."""

    n_layer: int = 4
    """Transformer blocks."""
    n_head: int = 4
    """Attention heads per block; d_model must divide evenly by it."""
    d_model: int = 256
    """Width of the residual stream."""
    max_seq_len: int = 256
    """Longest prompt + completion, in tokens."""
    rope_base: float = 10000.0
    """Base of the rotary position frequencies."""

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "d_model", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(
                f"model.d_model ({self.d_model}) must divide into n_head ({self.n_head}) heads of even size"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Preallocated keys and values for every layer: (L, B, H, S, Dh), plus which slots are real."""

    def __init__(self, cfg: ModelConfig, batch: int, length: int, dtype: torch.dtype, device="cpu") -> None:
        shape = (cfg.n_layer, batch, cfg.n_head, length, cfg.d_model // cfg.n_head)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.valid = torch.zeros(batch, length, dtype=torch.bool, device=device)  # (B, S)
        self.length = 0  # slots filled so far

    def repeat_interleave(self, n: int) -> KVCache:
        """A cache for each row repeated n times (rows r*n .. r*n+n-1 copy row r): shared prefill."""
        out = KVCache.__new__(KVCache)
        out.k = self.k.repeat_interleave(n, dim=1)
        out.v = self.v.repeat_interleave(n, dim=1)
        out.valid = self.valid.repeat_interleave(n, dim=0)
        out.length = self.length
        return out

    def select(self, rows: Tensor) -> KVCache:
        """A cache of the given rows only (used to drop finished samples from a batch)."""
        out = KVCache.__new__(KVCache)
        out.k, out.v, out.valid, out.length = self.k[:, rows], self.v[:, rows], self.valid[rows], self.length
        return out


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32:  # one fused op (the decode loop runs this 2 * n_layer + 1 times a token)
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    dh = cfg.d_model // cfg.n_head
    inv = 1.0 / (cfg.rope_base ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh))
    ang = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float32), inv)  # (S, Dh/2)
    return ang.cos(), ang.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: (..., B, H, T, Dh); cos/sin: (B, 1, T, Dh/2). Rotates pairs (first half, second half)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, self.h = cfg.d_model, cfg.n_head
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        hidden = 64 * math.ceil(8 * d / 3 / 64)
        self.gate_up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, layer: int, cache: KVCache | None,
                mask: Tensor | None) -> Tensor:
        B, T, D = x.shape
        qkv = self.qkv(self.norm1(x)).view(B, T, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], cos, sin)  # q and k rotated together: (B, H, T, Dh) each
        v = qkv[2]
        if cache is None:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s0 = cache.length
            cache.k[layer, :, :, s0 : s0 + T] = k.to(cache.k.dtype)
            cache.v[layer, :, :, s0 : s0 + T] = v.to(cache.v.dtype)
            keys = cache.k[layer, :, :, : s0 + T].to(q.dtype)
            vals = cache.v[layer, :, :, : s0 + T].to(q.dtype)
            if T == 1:  # one query per row: plain matmuls beat SDPA's masked path at these sizes
                scores = (q @ keys.transpose(-1, -2)) * (q.shape[-1] ** -0.5) + mask  # mask: additive here
                att = torch.softmax(scores.float(), dim=-1).to(vals.dtype) @ vals
            else:
                att = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask)
        x = x + self.proj(att.transpose(1, 2).reshape(B, T, D))
        gate, up = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model)
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * self.cfg.n_layer) if name.endswith(("proj.weight", "down.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, context: int) -> float:
        """Forward FLOPs for one token attending to `context` tokens: 2 per weight, plus attention."""
        return 2.0 * self.num_params() + 4.0 * self.cfg.n_layer * context * self.cfg.d_model

    def forward(self, idx: Tensor, pos: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """Logits (B, T, V) of the next token at every position; see `hidden` for the arguments."""
        return F.linear(self.hidden(idx, pos, cache), self.embed.weight)

    def hidden(self, idx: Tensor, pos: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """idx: (B, T) token ids; pos: (B, T) positions (default 0..T-1). Returns the final normed
        hidden states (B, T, D), which the language-model head and reward heads read.

        Without a cache this is plain causal attention (training, right padding). With a cache the
        new tokens go into slots [cache.length, cache.length + T), must already be marked in
        `cache.valid`, and attend to every valid earlier slot and to themselves.
        """
        B, T = idx.shape
        if pos is None:
            pos = torch.arange(T, device=idx.device).expand(B, T)
        if int(pos.max()) >= self.cfg.max_seq_len:
            raise ValueError(f"sequence longer than model.max_seq_len={self.cfg.max_seq_len}")
        cos = self.rope_cos[pos].unsqueeze(1)  # (B, 1, T, Dh/2)
        sin = self.rope_sin[pos].unsqueeze(1)
        mask = None
        if cache is not None and T == 1:  # decoding: the new slot is valid, so no row is all masked
            keys_valid = cache.valid[:, : cache.length + 1]  # (B, S)
            mask = torch.zeros(keys_valid.shape, dtype=torch.float32, device=idx.device).masked_fill_(
                ~keys_valid, float("-inf"))[:, None, None, :]  # (B, 1, 1, S), additive, shared by the layers
        elif cache is not None:
            s0 = cache.length
            keys_valid = cache.valid[:, : s0 + T]  # (B, S)
            causal = torch.ones(T, s0 + T, dtype=torch.bool, device=idx.device).tril(s0)  # (T, S)
            mask = (keys_valid[:, None, :] & causal[None]).unsqueeze(1)  # (B, 1, T, S)
            eye = torch.arange(T, device=idx.device)
            mask[:, :, eye, s0 + eye] = True  # every query sees itself: no all-masked rows for padding
        x = self.embed(idx)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, i, cache, mask)
        if cache is not None:
            cache.length += T
        return self.norm(x)
