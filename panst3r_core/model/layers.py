"""Transformer building blocks shared by the MUSt3R encoder/decoder and the v2 head.

Parameter names follow croco/must3r (``qkv``, ``proj``, ``projq/projk/projv``, ``fc1/fc2``, ``norm1..3``) so that
official state_dicts load without renaming. Attention goes through ``F.scaled_dot_product_attention`` (what must3r
uses when available); the croco ViT blocks of the v2 input mixer compute softmax attention explicitly, which is the
same function up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn


class RoPE2D(nn.Module):
    """2D rotary position embedding (croco ``RoPE2D``, pure PyTorch path).

    The head dimension is split in two halves: the first rotates with the token's row (y), the second with its
    column (x). Within a half, ``inv_freq_i = F0 / base**(2i/D)`` and the rotation pairs channel j with j + D/2
    (``rotate_half``), exactly as croco/models/pos_embed.py.
    """

    def __init__(self, freq: float = 100.0, f0: float = 1.0) -> None:
        super().__init__()
        self.base = freq
        self.f0 = f0

    def _cos_sin(self, dim: int, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        inv_freq = self.f0 / (self.base ** (torch.arange(0, dim, 2, device=device).float() / dim))
        t = torch.arange(seq_len, device=device, dtype=inv_freq.dtype)
        freqs = torch.einsum("i,j->ij", t, inv_freq).to(dtype)
        freqs = torch.cat((freqs, freqs), dim=-1)  # [seq, dim]
        return freqs.cos(), freqs.sin()

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
        return torch.cat((-x2, x1), dim=-1)

    def _rope1d(self, tokens: Tensor, pos1d: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        cos_p = F.embedding(pos1d, cos)[:, None]  # [B, 1, N, D]
        sin_p = F.embedding(pos1d, sin)[:, None]
        return tokens * cos_p + self._rotate_half(tokens) * sin_p

    def forward(
        self, tokens: Float[Tensor, "B heads N Dh"], positions: Int[Tensor, "B N 2"]
    ) -> Float[Tensor, "B heads N Dh"]:
        """Rotate ``tokens`` by their integer (y, x) patch ``positions``."""
        half = tokens.shape[-1] // 2
        cos, sin = self._cos_sin(half, int(positions.max()) + 1, tokens.device, tokens.dtype)
        y, x = tokens.chunk(2, dim=-1)
        y = self._rope1d(y, positions[:, :, 0], cos, sin)
        x = self._rope1d(x, positions[:, :, 1], cos, sin)
        return torch.cat((y, x), dim=-1)


class Mlp(nn.Module):
    """fc1 -> activation -> fc2 (croco ``Mlp``)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with a packed ``qkv`` projection and optional 2D RoPE on q and k."""

    def __init__(self, dim: int, num_heads: int, rope: RoPE2D | None, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: Float[Tensor, "B N D"], pos: Int[Tensor, "B N 2"] | None) -> Float[Tensor, "B N D"]:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).transpose(1, 3)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, heads, N, Dh]
        if self.rope is not None:
            q = self.rope(q, pos)
            k = self.rope(k, pos)
        out = F.scaled_dot_product_attention(q.to(v.dtype), k.to(v.dtype), v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    """Multi-head cross-attention with separate ``projq/projk/projv`` and no positional encoding.

    ``attend`` takes keys and values already projected (the decoder precomputes them once per memory bank).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def prepare_kv(self, y: Float[Tensor, "B M D"]) -> tuple[Float[Tensor, "B M D"], Float[Tensor, "B M D"]]:
        """Project memory tokens to keys and values."""
        return self.projk(y), self.projv(y)

    def attend(
        self,
        x: Float[Tensor, "B N D"],
        key: Float[Tensor, "B M D"],
        value: Float[Tensor, "B M D"],
        attn_mask: Tensor | None = None,
    ) -> Float[Tensor, "B N D"]:
        """Attend queries ``x`` (not yet projected) to projected ``key``/``value``; ``attn_mask`` True = attend."""
        B, N, C = x.shape
        h = self.num_heads
        q = self.projq(x).reshape(B, N, h, C // h).permute(0, 2, 1, 3)
        k = key.reshape(key.shape[0], key.shape[1], h, C // h).permute(0, 2, 1, 3)
        v = value.reshape(value.shape[0], value.shape[1], h, C // h).permute(0, 2, 1, 3)
        out = F.scaled_dot_product_attention(q.to(v.dtype), k.to(v.dtype), v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))

    def forward(self, x: Float[Tensor, "B N D"], y: Float[Tensor, "B M D"]) -> Float[Tensor, "B N D"]:
        key, value = self.prepare_kv(y)
        return self.attend(x, key, value)


class Block(nn.Module):
    """Pre-norm ViT block: x + SA(norm1(x)) then x + MLP(norm2(x)) (croco/must3r ``Block``)."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, rope: RoPE2D | None, norm_eps: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = SelfAttention(dim, num_heads, rope, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Float[Tensor, "B N D"], pos: Int[Tensor, "B N 2"] | None) -> Float[Tensor, "B N D"]:
        x = x + self.attn(self.norm1(x), pos)
        return x + self.mlp(self.norm2(x))


def grid_positions(h: int, w: int, device: torch.device) -> Int[Tensor, "T 2"]:
    """Integer (y, x) coordinates of an h x w token grid in row-major order (croco ``PositionGetter``)."""
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    return torch.cartesian_prod(ys, xs)
