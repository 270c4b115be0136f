"""DINOv2 branch, built from a :class:`DinoConfig` (no hub download), with the HF ``Dinov2Model`` layout.

State_dict keys follow transformers 5.x (``encoder.layer.{i}.attention.{q,k,v,o}_proj``, ``layer_scale{1,2}.lambda1``,
``norm{1,2}``, ``mlp.fc{1,2}``, ``embeddings.*``, ``layernorm``); :func:`map_transformers4_keys` renames the 4.x
names (``attention.attention.{query,key,value}``, ``attention.output.dense``) on load.

The PanSt3R wrapper (panst3r/model/dino.py ``DinoV2Encoder``) maps the [-1, 1] image to [0, 1], applies the ImageNet
normalisation, resizes it bilinearly to ``(H // 16 * 14, W // 16 * 14)`` so the DINOv2 token grid equals the MUSt3R
grid, and returns ``last_hidden_state`` (after the final LayerNorm) without the CLS token. The learned position
embeddings are interpolated bicubically to the token grid in float32, as HF does.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from panst3r_splat.core.model.config import DinoConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Dinov2PatchEmbeddings(nn.Module):
    """Strided convolution to patch tokens."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, pixels: Float[Tensor, "V 3 H W"]) -> Float[Tensor, "V T D"]:
        return self.projection(pixels).flatten(2).transpose(1, 2)


class Dinov2Embeddings(nn.Module):
    """CLS token + patch tokens + (interpolated) learned position embeddings."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        side = config.image_size // config.patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        if config.use_mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, config.hidden_size))
        self.patch_embeddings = Dinov2PatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, side * side + 1, config.hidden_size))

    def interpolate_pos_encoding(self, num_patches: int, height: int, width: int) -> Tensor:
        """Position embeddings for a ``height`` x ``width`` pixel input (bicubic to the target grid size)."""
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        cls_pos = self.position_embeddings[:, :1]
        patch_pos = self.position_embeddings[:, 1:]
        dim = patch_pos.shape[-1]
        side = int(num_positions**0.5)
        patch_pos = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
        target_dtype = patch_pos.dtype
        patch_pos = F.interpolate(
            patch_pos.to(torch.float32),
            size=(height // self.patch_size, width // self.patch_size),
            mode="bicubic",
            align_corners=False,
        ).to(target_dtype)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((cls_pos, patch_pos), dim=1)

    def forward(self, pixels: Float[Tensor, "V 3 H W"]) -> Float[Tensor, "V T1 D"]:
        V, _, H, W = pixels.shape
        x = self.patch_embeddings(pixels.to(self.patch_embeddings.projection.weight.dtype))
        x = torch.cat((self.cls_token.expand(V, -1, -1).to(x.dtype), x), dim=1)
        return x + self.interpolate_pos_encoding(x.shape[1] - 1, H, W).to(x.dtype)


class Dinov2Attention(nn.Module):
    """Self-attention with separate q/k/v/o projections (transformers 5.x names)."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        D = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.q_proj = nn.Linear(D, D, bias=config.qkv_bias)
        self.k_proj = nn.Linear(D, D, bias=config.qkv_bias)
        self.v_proj = nn.Linear(D, D, bias=config.qkv_bias)
        self.o_proj = nn.Linear(D, D)

    def forward(self, x: Float[Tensor, "V T D"]) -> Float[Tensor, "V T D"]:
        V, T, D = x.shape
        h = self.num_heads

        def split(t: Tensor) -> Tensor:
            return t.view(V, T, h, D // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.o_proj(out.transpose(1, 2).reshape(V, T, D))


class Dinov2LayerScale(nn.Module):
    """Per-channel scale of a residual branch."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        self.lambda1 = nn.Parameter(config.layerscale_value * torch.ones(config.hidden_size))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.lambda1


class Dinov2MLP(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        hidden = int(config.hidden_size * config.mlp_ratio)
        self.fc1 = nn.Linear(config.hidden_size, hidden)
        self.fc2 = nn.Linear(hidden, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Dinov2SwiGLUFFN(nn.Module):
    """SwiGLU MLP of DINOv2-giant (HF ``Dinov2SwiGLUFFN``)."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        hidden = int(config.hidden_size * config.mlp_ratio)
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.weights_in = nn.Linear(config.hidden_size, 2 * hidden)
        self.weights_out = nn.Linear(hidden, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.weights_in(x).chunk(2, dim=-1)
        return self.weights_out(F.silu(x1) * x2)


class Dinov2Layer(nn.Module):
    """Pre-norm block with LayerScale on both residual branches."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = Dinov2Attention(config)
        self.layer_scale1 = Dinov2LayerScale(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp: nn.Module = Dinov2SwiGLUFFN(config) if config.use_swiglu_ffn else Dinov2MLP(config)
        self.layer_scale2 = Dinov2LayerScale(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.layer_scale1(self.attention(self.norm1(x)))
        return x + self.layer_scale2(self.mlp(self.norm2(x)))


class Dinov2Stack(nn.Module):
    """The ``encoder`` of HF ``Dinov2Model``: a list of layers named ``layer``."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Dinov2Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class Dinov2Model(nn.Module):
    """HF-compatible DINOv2 backbone; returns ``last_hidden_state`` (after ``layernorm``, CLS first)."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        self.embeddings = Dinov2Embeddings(config)
        self.encoder = Dinov2Stack(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixels: Float[Tensor, "V 3 H W"]) -> Float[Tensor, "V T1 D"]:
        return self.layernorm(self.encoder(self.embeddings(pixels)))


class DinoV2Encoder(nn.Module):
    """PanSt3R's DINOv2 branch (state_dict prefix ``dinov2.``), frozen in training."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        self.config = config
        self.dinov2 = Dinov2Model(config)

    def forward(self, imgs: Float[Tensor, "V 3 H W"]) -> Float[Tensor, "V T D"]:
        """Tokens of images normalised to [-1, 1], one per MUSt3R patch.

        Order: row-major over the image grid, except for portrait images when ``landscape_only`` is set: the
        official wrapper then feeds DINOv2 the transposed image, so the tokens are row-major over the transposed
        grid (reproduced because the official heads were trained on that order).
        """
        mean = torch.tensor(IMAGENET_MEAN, device=imgs.device, dtype=imgs.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=imgs.device, dtype=imgs.dtype).view(1, 3, 1, 1)
        x = (imgs * 0.5 + 0.5 - mean) / std
        stride, patch = self.config.output_stride, self.config.patch_size
        H, W = imgs.shape[-2:]
        x = F.interpolate(x, size=(H // stride * patch, W // stride * patch), mode="bilinear", align_corners=False)
        if self.config.landscape_only and H > W:
            x = x.transpose(2, 3)
        return self.dinov2(x)[:, 1:]


_V4_RENAMES = (
    (re.compile(r"\.attention\.attention\.query\."), ".attention.q_proj."),
    (re.compile(r"\.attention\.attention\.key\."), ".attention.k_proj."),
    (re.compile(r"\.attention\.attention\.value\."), ".attention.v_proj."),
    (re.compile(r"\.attention\.output\.dense\."), ".attention.o_proj."),
)


def map_transformers4_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename transformers 4.x DINOv2 attention keys to the 5.x names used here; other keys pass unchanged."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in _V4_RENAMES:
            new = pattern.sub(repl, new)
        out[new] = value
    return out
