"""MUSt3R decoder: cached decoder blocks over per-layer memory banks, memory feedback and the pointmap head.

Follows must3r/model/decoder.py (``MUSt3R.forward``), blocks/layers.py (``CachedDecoderBlock``, memory mode
``norm_y``) and feedback_mechanism.py. Two operations:

- :meth:`MUSt3RDecoder.update_memory` (official ``render=False``): new images attend, at every layer, to the existing
  bank plus the tokens of the *other* new images (never their own), then the feedback MLP adds
  ``MLP(LN(input of the last layer))`` to the inputs of every other layer, and ``norm_y`` of each layer's input is
  appended to that layer's bank.
- :meth:`MUSt3RDecoder.render` (official ``render=True``): images attend to the bank only; the bank is unchanged.
  Keys and values of the bank are projected once (:meth:`MUSt3RDecoder.memory_kv`) and shared by every rendered view,
  so rendering hundreds of views costs no copy of the memory.

``image2_embed`` is added to every image except the very first image fed to an empty memory (the reference image that
defines the world frame); in the render pass every image gets it, the reference image included (official behaviour).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from panst3r_splat.core.model.config import DecoderConfig
from panst3r_splat.core.model.encoder import MUST3R_NORM_EPS
from panst3r_splat.core.model.layers import CrossAttention, Mlp, RoPE2D, SelfAttention


@dataclass(frozen=True)
class DecoderMemory:
    """MUSt3R memory of a batch of scenes: one token bank per decoder layer."""

    banks: tuple[Tensor, ...]
    """Per layer l, ``(B, M, D)``: ``norm_y_l`` of the input of layer l for every memory token."""
    labels: Int[Tensor, "B M"]
    """Index (in memory order) of the image each memory token comes from."""
    num_images: int
    """Number of images in the memory."""

    @property
    def num_tokens(self) -> int:
        """Number of tokens M in each bank."""
        return self.labels.shape[1]


@dataclass(frozen=True)
class MemoryKV:
    """Keys and values of every memory bank, projected once for rendering."""

    keys: tuple[Tensor, ...]
    """Per layer, ``(B, M, D)``."""
    values: tuple[Tensor, ...]
    """Per layer, ``(B, M, D)``."""


class CachedDecoderBlock(nn.Module):
    """Self-attention with RoPE, cross-attention to a (pre-normalised) memory without positions, MLP; pre-norm."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, rope: RoPE2D) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=MUST3R_NORM_EPS)
        self.attn = SelfAttention(dim, num_heads, rope, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=MUST3R_NORM_EPS)
        self.norm_y = nn.LayerNorm(dim, eps=MUST3R_NORM_EPS)
        self.cross_attn = CrossAttention(dim, num_heads, qkv_bias=True)
        self.norm3 = nn.LayerNorm(dim, eps=MUST3R_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self,
        x: Float[Tensor, "BV T D"],
        pos: Int[Tensor, "BV T 2"],
        key: Tensor,
        value: Tensor,
        queries_per_row: int,
    ) -> Float[Tensor, "BV T D"]:
        """``key``/``value`` have one row per ``queries_per_row`` images of ``x`` (1: one key set per image)."""
        x = x + self.attn(self.norm1(x), pos)
        BV, T, D = x.shape
        q = self.norm2(x).reshape(BV // queries_per_row, queries_per_row * T, D)
        x = x + self.cross_attn.attend(q, key, value).reshape(BV, T, D)
        return x + self.mlp(self.norm3(x))


class MUSt3RDecoder(nn.Module):
    """The MUSt3R decoder (state_dict keys as the official ``must3r_decoder``)."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        D = config.embed_dim
        self.feat_embed_enc_to_dec = nn.Linear(config.enc_embed_dim, D)
        self.image2_embed = nn.Parameter(torch.zeros(1, 1, D))
        self.rope = RoPE2D(config.rope_freq, config.rope_f0)
        self.blocks_dec = nn.ModuleList(
            CachedDecoderBlock(D, config.num_heads, config.mlp_ratio, self.rope) for _ in range(config.depth)
        )
        # The official feedback norm is a plain nn.LayerNorm (eps 1e-5), unlike the blocks' 1e-6.
        if config.feedback == "single_mlp":
            self.feedback_layer: nn.Module | None = Mlp(D, 4 * D, D)
            self.feedback_norm: nn.Module | None = nn.LayerNorm(D)
        elif config.feedback == "single_linear":
            self.feedback_layer = nn.Linear(D, D)
            self.feedback_norm = nn.LayerNorm(D)
        else:
            self.feedback_layer = None
            self.feedback_norm = None
        self.norm_dec = nn.LayerNorm(D, eps=MUST3R_NORM_EPS)
        self.head_dec = LinearHead(D, config.output_dim, config.patch_size)

    # -- memory ---------------------------------------------------------------------------------------------------

    def update_memory(
        self,
        x_enc: Sequence[Tensor],
        pos: Sequence[Tensor],
        memory: DecoderMemory | None,
    ) -> DecoderMemory:
        """Add images to ``memory`` (None = empty) and return the new memory.

        Args:
            x_enc: per new image, ``(B, T_i, Denc)`` encoder tokens (images may differ in size).
            pos: per new image, ``(B, T_i, 2)`` integer (y, x) patch positions.
            memory: the memory so far; None starts a new one whose first image is the reference.
        """
        return self._update_memory(x_enc, pos, memory)[0]

    def update_memory_with_pointmaps(
        self,
        x_enc: Sequence[Tensor],
        pos: Sequence[Tensor],
        memory: DecoderMemory | None,
        image_hw: Sequence[tuple[int, int]],
    ) -> tuple[DecoderMemory, list[Float[Tensor, "B H W 7"]]]:
        """:meth:`update_memory`, plus the raw pointmaps the head gives for the new images' memory-pass tokens.

        Inference never reads these (only the render pass's); training can supervise them: in the memory pass the
        reference image is the one without ``image2_embed`` and the others see only *other* images, as DUSt3R's two
        decoders do, a direct route to learn cross-view geometry before the render pass can tell the reference apart.
        """
        memory, tokens = self._update_memory(x_enc, pos, memory)
        return memory, [self.head_dec(self.norm_dec(x), hw) for x, hw in zip(tokens, image_hw)]

    def _update_memory(
        self, x_enc: Sequence[Tensor], pos: Sequence[Tensor], memory: DecoderMemory | None
    ) -> tuple[DecoderMemory, list[Tensor]]:
        """The memory update; also returns each new image's tokens after the last decoder block, ``(B, T_i, D)``."""
        n = len(x_enc)
        if n == 0 or len(pos) != n:
            raise ValueError(f"update_memory needs one position tensor per image, got {n} images, {len(pos)} positions")
        B = x_enc[0].shape[0]
        xs = [self.feat_embed_enc_to_dec(x) for x in x_enc]
        e = self.image2_embed[0].to(xs[0].dtype)
        xs = [x if (memory is None and i == 0) else x + e for i, x in enumerate(xs)]
        counts = [x.shape[1] for x in xs]
        num_mem = 0 if memory is None else memory.num_tokens
        exclude_own = num_mem > 0 or n > 1  # a lone first image attends to itself (official exception)
        layer_inputs: list[Tensor] = []
        for layer, blk in enumerate(self.blocks_dec):
            x_cat = torch.cat(xs, dim=1)  # [B, sum T_i, D]
            layer_inputs.append(x_cat)
            bank = blk.norm_y(x_cat)
            if memory is not None:
                bank = torch.cat([memory.banks[layer].to(bank.dtype), bank], dim=1)
            key, value = blk.cross_attn.prepare_kv(bank)  # [B, M + sum T_i, D]
            for i in range(n):
                if exclude_own:
                    index = _others_index(num_mem, counts, i, key.device)
                    k_i, v_i = key[:, index], value[:, index]
                else:
                    k_i, v_i = key, value
                xs[i] = blk(xs[i], pos[i], k_i, v_i, queries_per_row=1)
        layer_inputs = self._feedback(layer_inputs)
        banks = []
        for layer, blk in enumerate(self.blocks_dec):
            new_bank = blk.norm_y(layer_inputs[layer])
            old = None if memory is None else memory.banks[layer].to(new_bank.dtype)
            banks.append(new_bank if old is None else torch.cat([old, new_bank], dim=1))
        start = 0 if memory is None else memory.num_images
        image_ids = torch.arange(start, start + n, device=xs[0].device)
        new_labels = image_ids.repeat_interleave(torch.tensor(counts, device=xs[0].device)).unsqueeze(0).expand(B, -1)
        labels = new_labels if memory is None else torch.cat([memory.labels, new_labels], dim=1)
        return DecoderMemory(banks=tuple(banks), labels=labels, num_images=start + n), xs

    def _feedback(self, layer_inputs: list[Tensor]) -> list[Tensor]:
        """``offset = fb(LN(input of the last layer))`` added to every layer input except the last's."""
        if self.feedback_layer is None or self.feedback_norm is None:
            return layer_inputs
        offset = self.feedback_layer(self.feedback_norm(layer_inputs[-1]))
        return [t + offset for t in layer_inputs[:-1]] + [layer_inputs[-1]]

    def memory_kv(self, memory: DecoderMemory) -> MemoryKV:
        """Project each bank to keys and values once, for any number of :meth:`render` calls."""
        keys, values = [], []
        for blk, bank in zip(self.blocks_dec, memory.banks):
            k, v = blk.cross_attn.prepare_kv(bank)
            keys.append(k)
            values.append(v)
        return MemoryKV(keys=tuple(keys), values=tuple(values))

    # -- render ---------------------------------------------------------------------------------------------------

    def render(
        self,
        x_enc: Float[Tensor, "B n T Denc"],
        pos: Int[Tensor, "B n T 2"],
        memory_kv: MemoryKV,
        image_hw: tuple[int, int],
    ) -> tuple[Float[Tensor, "B n H W 7"], Float[Tensor, "B n T D"]]:
        """Decode ``n`` images against the memory: raw pointmaps and the last layer's tokens after ``norm_dec``.

        Cross-attention has no positional encoding and one key set per scene, so the n images' tokens are queried
        as one sequence per scene (no per-image copy of the memory).
        """
        B, n, T, _ = x_enc.shape
        x = self.feat_embed_enc_to_dec(x_enc) + self.image2_embed.to(x_enc.dtype)
        D = x.shape[-1]
        x = x.reshape(B * n, T, D)
        pos = pos.reshape(B * n, T, 2)
        for blk, key, value in zip(self.blocks_dec, memory_kv.keys, memory_kv.values):
            x = blk(x, pos, key.to(x.dtype), value.to(x.dtype), queries_per_row=n)
        feats = self.norm_dec(x)
        pointmaps = self.head_dec(feats, image_hw)
        return pointmaps.reshape(B, n, *pointmaps.shape[1:]), feats.reshape(B, n, T, D)


class LinearHead(nn.Module):
    """Linear projection to patch_size**2 * 7 values per token, then pixel shuffle to full resolution.

    Runs in float32 (the official head disables autocast). For portrait images the official ``landscape_only``
    wrapper calls this head with the true portrait shape and transposes the result; the values are the same as
    calling it directly, which is what we do.
    """

    def __init__(self, embed_dim: int, output_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(embed_dim, output_dim)

    def forward(self, feats: Float[Tensor, "V T D"], image_hw: tuple[int, int]) -> Float[Tensor, "V H W C"]:
        H, W = image_hw
        p = self.patch_size
        with torch.autocast(device_type=feats.device.type, enabled=False):
            x = self.proj(feats.float())  # [V, T, p*p*C]
            x = x.transpose(-1, -2).reshape(x.shape[0], -1, H // p, W // p)
            return F.pixel_shuffle(x, p).permute(0, 2, 3, 1)


def _others_index(num_mem: int, counts: Sequence[int], own: int, device: torch.device) -> Tensor | slice:
    """Indices of the memory tokens followed by the tokens of every new image but ``own`` (official
    ``make_mem_mask``: an image never attends to its own tokens while the memory is updated)."""
    if len(counts) == 1:
        return slice(0, num_mem)  # the memory alone: a view, no copy
    offsets = [num_mem]
    for c in counts:
        offsets.append(offsets[-1] + c)
    parts = [torch.arange(num_mem, device=device)]
    parts += [torch.arange(offsets[j], offsets[j + 1], device=device) for j in range(len(counts)) if j != own]
    return torch.cat(parts)
