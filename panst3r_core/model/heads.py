"""Fusion and upsampling heads: v1 ``PixelShuffleUpscaler``; v2 ``InputMixer`` + ``LoftUpUpscaler`` (method.md 1.6).

Every upscaler maps the per-view tokens (concatenated, or mixed for v2) to

- frame tokens at stride 16, ``(V, C16, H/16, W/16)``: keys/values of the mask transformer, and
- mask features at stride 2, ``(V, Cm, H/2, W/2)``: dotted with the query embeddings to give mask logits.

:func:`run_upscaler` adds the official ``landscape_only`` wrapper (panst3r/utils.py ``transpose_to_landscape``): for
portrait views the upscaler is called with the portrait shape and both outputs are then stored transposed; the mask
transformer works on that storage and the final masks are transposed back by the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from panst3r_splat.core.model.config import InputMixerConfig, LoftUpConfig, PixelShuffleConfig
from panst3r_splat.core.model.layers import Block, CrossAttention, Mlp, RoPE2D

#: croco blocks (v2 input mixer, LoftUp) use nn.LayerNorm's default epsilon.
TORCH_NORM_EPS = 1e-5


class PixelShuffleUpscaler(nn.Module):
    """v1 head: ``proj_16`` gives the frame tokens; ``proj_8 -> PS2 -> proj_4 -> PS2 -> proj_2 -> PS2`` the stride-2
    mask features (panst3r/model/upscalers/pixel_shuffle.py)."""

    def __init__(self, config: PixelShuffleConfig) -> None:
        super().__init__()
        self.config = config
        f = config.hidden_dim_factor
        d16, d8, d4, d2 = config.fp_dim
        self.proj_8 = Mlp(config.input_dim, int(f * config.input_dim), d8 * 4)
        self.proj_4 = Mlp(d8, int(f * d8), d4 * 4)
        self.proj_2 = Mlp(d4, int(f * d4), d2 * 4)
        self.proj_16 = Mlp(config.input_dim, int(f * config.input_dim), d16)

    def forward(
        self, tokens: Float[Tensor, "V T Din"], imgs: Float[Tensor, "V 3 H W"] | None, image_hw: tuple[int, int]
    ) -> tuple[Float[Tensor, "V C16 h w"], Float[Tensor, "V Cm H2 W2"]]:
        """``imgs`` is unused (the v1 head sees no pixels); kept so both heads share one signature."""
        V = tokens.shape[0]
        hs, ws = image_hw[0] // self.config.patch_size, image_hw[1] // self.config.patch_size
        f8 = F.pixel_shuffle(self.proj_8(tokens).transpose(-1, -2).reshape(V, -1, hs, ws), 2)
        f4 = self.proj_4(f8.flatten(-2).transpose(-1, -2)).transpose(-1, -2).reshape(V, -1, hs * 2, ws * 2)
        f4 = F.pixel_shuffle(f4, 2)
        f2 = self.proj_2(f4.flatten(-2).transpose(-1, -2)).transpose(-1, -2).reshape(V, -1, hs * 4, ws * 4)
        f2 = F.pixel_shuffle(f2, 2)
        f16 = self.proj_16(tokens).transpose(-1, -2).reshape(V, -1, hs, ws)
        return f16, f2


class InputMixer(nn.Module):
    """v2: Linear to ``hidden_dim``, croco ViT blocks with RoPE100 on the MUSt3R positions, LayerNorm."""

    def __init__(self, config: InputMixerConfig) -> None:
        super().__init__()
        self.in_proj = nn.Linear(config.in_dim, config.hidden_dim)
        self.rope = RoPE2D(100.0)
        self.mixer_blk = nn.ModuleList(
            Block(config.hidden_dim, config.num_heads, config.ff_dim_mult, self.rope, TORCH_NORM_EPS)
            for _ in range(config.num_layers)
        )
        self.mixer_norm = nn.LayerNorm(config.hidden_dim, eps=TORCH_NORM_EPS)

    def forward(self, tokens: Float[Tensor, "V T Din"], pos: Int[Tensor, "V T 2"]) -> Float[Tensor, "V T D"]:
        x = self.in_proj(tokens)
        for blk in self.mixer_blk:
            x = blk(x, pos)
        return self.mixer_norm(x)


class ImplicitFeaturizer(nn.Module):
    """Fourier features of the pixel grid (and optionally the colour) with learned phase biases (LoftUp).

    Channels: ``sin`` and ``cos`` of ``(coords [, rgb]) * exp(linspace(-2, 10, n_freqs))`` plus the raw colour. The
    bias tensor ``(2, dm, n_freqs)`` is *reshaped* (not transposed) to ``(n_freqs, dm)``, as upstream does.
    """

    def __init__(self, color_feats: bool, n_freqs: int) -> None:
        super().__init__()
        self.color_feats = color_feats
        self.n_freqs = n_freqs
        self.dim_multiplier = 5 if color_feats else 2
        self.biases = nn.Parameter(torch.zeros(2, self.dim_multiplier, n_freqs))

    def forward(self, image: Float[Tensor, "V C h w"]) -> Float[Tensor, "V F h w"]:
        b, _, h, w = image.shape
        grid_h = torch.linspace(-1, 1, h, device=image.device, dtype=image.dtype)
        grid_w = torch.linspace(-1, 1, w, device=image.device, dtype=image.dtype)
        coords = torch.stack(torch.meshgrid(grid_h, grid_w, indexing="ij")).unsqueeze(0).expand(b, 2, h, w)
        feats = torch.cat([coords, image], dim=1) if self.color_feats else coords
        freqs = torch.exp(torch.linspace(-2, 10, self.n_freqs, device=image.device, dtype=image.dtype))
        feats = feats.unsqueeze(1) * freqs.reshape(1, self.n_freqs, 1, 1, 1)  # [b, n_freqs, dm, h, w]
        nf, dm = self.n_freqs, self.dim_multiplier
        sin_feats = (feats + self.biases[0].reshape(1, nf, dm, 1, 1)).reshape(b, nf * dm, h, w)
        cos_feats = (feats + self.biases[1].reshape(1, nf, dm, 1, 1)).reshape(b, nf * dm, h, w)
        out = [torch.sin(sin_feats), torch.cos(cos_feats)]
        if self.color_feats:
            out.append(image)
        return torch.cat(out, dim=1)


def min_max_scale(image: Float[Tensor, "V C H W"]) -> Float[Tensor, "V C H W"]:
    """Per view and channel, scale to [-0.5, 0.5] (LoftUp ``MinMaxScaler``).

    Upstream pools the min/max over the whole batch it is called with; the official inference calls the upscaler
    one view at a time (``max_bs=1``), so we scale each view on its own, which is what the released weights see at
    inference and does not make a view's features depend on its batch mates.
    """
    flat = image.flatten(2)
    lo = flat.min(dim=-1).values[..., None, None]
    scale = flat.max(dim=-1).values[..., None, None] - lo
    return (image - lo) / scale.clamp_min(1e-4) - 0.5


class CrossOnlyBlock(nn.Module):
    """x + CA(norm2(x), norm_y(y)) then x + MLP(norm3(x)); no positional encoding (panst3r/model/blocks.py)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.cross_attn = CrossAttention(dim, num_heads, qkv_bias=False)
        self.norm2 = nn.LayerNorm(dim, eps=TORCH_NORM_EPS)
        self.norm3 = nn.LayerNorm(dim, eps=TORCH_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=TORCH_NORM_EPS)

    def forward(self, x: Float[Tensor, "V N D"], y: Float[Tensor, "V M D"]) -> Float[Tensor, "V N D"]:
        x = x + self.cross_attn(self.norm2(x), self.norm_y(y))
        return x + self.mlp(self.norm3(x))


class LoftUpUpscaler(nn.Module):
    """v2 head (panst3r/model/upscalers/loftup.py, after andrehuang/loftup): high-resolution queries built from the
    guidance image attend to the low-resolution tokens.

    ``transpose_portrait_guidance`` reproduces the official module, which transposes the guidance image whenever it
    is called with a portrait shape; it is tied to the ``landscape_only`` flag (our own models see the image as is).
    """

    def __init__(self, config: LoftUpConfig, transpose_portrait_guidance: bool) -> None:
        super().__init__()
        self.config = config
        self.transpose_portrait_guidance = transpose_portrait_guidance
        dim = config.dim
        start_dim = 5 * config.n_freqs * 2 + 3
        self.patch_embed = nn.Conv2d(config.input_dim, config.input_dim, kernel_size=1)
        self.lr_pe = ImplicitFeaturizer(color_feats=False, n_freqs=5)
        self.lr_input_proj = nn.Sequential(nn.Linear(config.input_dim + 2 * 5 * 2, dim), nn.LayerNorm(dim))
        self.fourier_feat = nn.Sequential(_MinMaxScaler(), ImplicitFeaturizer(color_feats=True, n_freqs=config.n_freqs))
        self.first_conv = nn.Sequential(
            nn.GroupNorm(1, start_dim),
            nn.Conv2d(start_dim, dim, kernel_size=3, padding=1),
            nn.GroupNorm(8, dim),
            nn.ReLU(),
            nn.Conv2d(dim, dim, kernel_size=3, padding=1),
            nn.GroupNorm(8, dim),
            nn.ReLU(),
        )
        self.ca_transformer_blocks = nn.ModuleList(
            CrossOnlyBlock(dim, config.num_heads, 1.0) for _ in range(config.num_layers)
        )
        self.ca_transformer_norm = nn.LayerNorm(dim, eps=TORCH_NORM_EPS)

    def forward(
        self, tokens: Float[Tensor, "V T Din"], imgs: Float[Tensor, "V 3 H W"] | None, image_hw: tuple[int, int]
    ) -> tuple[Float[Tensor, "V C16 h w"], Float[Tensor, "V Cm H2 W2"]]:
        if imgs is None:
            raise ValueError("the LoftUp head needs the input images as guidance")
        H, W = image_hw
        p = self.config.patch_size
        V = tokens.shape[0]
        lr = tokens.transpose(-1, -2).reshape(V, -1, H // p, W // p)
        patch_feats = self.patch_embed(lr)
        img = imgs.to(tokens.dtype)
        if self.transpose_portrait_guidance and H > W:
            img = img.transpose(2, 3)
        img = F.interpolate(img, scale_factor=1.0 / self.config.output_stride, mode="bilinear", align_corners=False)
        x = self.first_conv(self.fourier_feat(img))
        _, ch, h_out, w_out = x.shape
        x = x.flatten(2).transpose(-1, -2)
        lr_pe = torch.cat([lr, self.lr_pe(lr)], dim=1).flatten(2).transpose(1, 2)
        y = self.lr_input_proj(lr_pe)
        for blk in self.ca_transformer_blocks:
            x = blk(x, y)
        x = self.ca_transformer_norm(x)
        return patch_feats, x.transpose(-1, -2).reshape(V, ch, h_out, w_out)


class _MinMaxScaler(nn.Module):
    """Module form of :func:`min_max_scale` (keeps the official ``fourier_feat.1`` key index)."""

    def forward(self, x: Tensor) -> Tensor:
        return min_max_scale(x)


def run_upscaler(
    upscaler: nn.Module,
    tokens: Float[Tensor, "V T Din"],
    imgs: Float[Tensor, "V 3 H W"] | None,
    image_hw: tuple[int, int],
    landscape_only: bool,
) -> tuple[Tensor, Tensor]:
    """Upscaler outputs in the official storage orientation: transposed (last two axes) for portrait views when
    ``landscape_only`` is set."""
    f16, mask_f = upscaler(tokens, imgs, image_hw)
    if landscape_only and image_hw[0] > image_hw[1]:
        return f16.transpose(2, 3), mask_f.transpose(2, 3)
    return f16, mask_f
