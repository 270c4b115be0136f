"""MUSt3R image encoder: a ViT with 16-px patches and 2D RoPE (must3r/model/encoder.py ``Dust3rEncoder``).

Portrait images are *not* transposed (``PatchEmbedDust3R``): tokens are row-major over the image's own grid and the
positions are the true integer (y, x) patch coordinates. The encoder runs in float32 even under autocast, as the
official ``@torch.autocast("cuda", enabled=False)`` does.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from panst3r_splat.core.model.config import EncoderConfig
from panst3r_splat.core.model.layers import Block, RoPE2D, grid_positions

#: LayerNorm epsilon of the MUSt3R encoder and decoder blocks (``partial(nn.LayerNorm, eps=1e-6)``).
MUST3R_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection (a strided convolution), keeping the image's orientation."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, imgs: Float[Tensor, "V 3 H W"]) -> tuple[Float[Tensor, "V T D"], Int[Tensor, "V T 2"]]:
        V, _, H, W = imgs.shape
        check_image_size(H, W, self.patch_size)
        x = self.proj(imgs)  # [V, D, h, w]
        pos = grid_positions(x.shape[2], x.shape[3], imgs.device).unsqueeze(0).expand(V, -1, -1)
        return x.flatten(2).transpose(1, 2), pos


class MUSt3REncoder(nn.Module):
    """Patch embedding + pre-norm RoPE blocks + final LayerNorm (state_dict keys ``patch_embed``, ``blocks_enc``,
    ``norm_enc`` as the official ``must3r_encoder``)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim)
        self.rope = RoPE2D(config.rope_freq, config.rope_f0)
        self.blocks_enc = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_ratio, self.rope, MUST3R_NORM_EPS)
            for _ in range(config.depth)
        )
        self.norm_enc = nn.LayerNorm(config.embed_dim, eps=MUST3R_NORM_EPS)

    def forward(self, imgs: Float[Tensor, "V 3 H W"]) -> tuple[Float[Tensor, "V T D"], Int[Tensor, "V T 2"]]:
        """Encode images normalised to [-1, 1]; returns tokens after ``norm_enc`` and their (y, x) positions."""
        with torch.autocast(device_type=imgs.device.type, enabled=False):
            x, pos = self.patch_embed(imgs.to(self.patch_embed.proj.weight.dtype))
            for blk in self.blocks_enc:
                x = blk(x, pos)
            return self.norm_enc(x), pos


def check_image_size(height: int, width: int, patch_size: int) -> None:
    """Raise ValueError unless both image sides are positive multiples of ``patch_size``."""
    if height <= 0 or width <= 0 or height % patch_size or width % patch_size:
        raise ValueError(
            f"image size {height}x{width} (HxW) is not a multiple of the patch size {patch_size}; "
            f"resize or crop the images to multiples of {patch_size} (e.g. with the default --size 512)"
        )
