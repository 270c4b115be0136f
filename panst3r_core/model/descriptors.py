"""Dense matching descriptors of the built-in models (the cameras from matches, ``panst3r_core/cameras``).

MASt3R adds a matching head beside the pointmap head: per pixel a D-dimensional descriptor, trained with an InfoNCE
over ground-truth correspondences, whose mutual nearest neighbours across views are the matches. Ours has the same
job and loss (``panst3r_core/training/descriptors.py``) with a cheaper body: a linear map of the
[encoder | decoder] tokens to a stride-4 field (pixel shuffle), bilinearly upsampled, fused with a two-layer
convolution over the image at full resolution, so that descriptors follow image edges within a pixel or two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from panst3r_splat.core.model.config import DescriptorHeadConfig


class DescriptorHead(nn.Module):
    """Tokens + image -> raw ``(D descriptor channels, 1 confidence channel)`` per pixel."""

    def __init__(self, config: DescriptorHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.shuffle = config.patch_size // 4
        self.norm = nn.LayerNorm(config.input_dim)
        self.to_coarse = nn.Linear(config.input_dim, config.coarse_dim * self.shuffle**2)
        self.image_branch = nn.Sequential(
            nn.Conv2d(3, config.image_dim, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(config.image_dim, config.image_dim, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(config.coarse_dim + config.image_dim, config.hidden_dim, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(config.hidden_dim, config.dim + 1, kernel_size=1),
        )

    def forward(
        self,
        x_enc: Float[Tensor, "V T De"],
        y_dec: Float[Tensor, "V T Dd"],
        imgs: Float[Tensor, "V 3 H W"],
    ) -> Float[Tensor, "V H W Dd1"]:
        """Raw descriptors (first D channels) and confidence (last channel) at every pixel, float32, channels last;
        activate with :func:`panst3r_splat.core.model.outputs.activate_descriptors`."""
        V, _, H, W = imgs.shape
        p = self.config.patch_size
        tokens = self.norm(torch.cat([x_enc.float(), y_dec.float()], dim=-1))
        coarse = self.to_coarse(tokens).transpose(-1, -2).reshape(V, -1, H // p, W // p)
        coarse = F.pixel_shuffle(coarse, self.shuffle)  # [V, coarse_dim, H/4, W/4]
        coarse = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)
        fine = self.image_branch(imgs.float())
        raw = self.fuse(torch.cat([coarse, fine], dim=1))
        return raw.permute(0, 2, 3, 1)

