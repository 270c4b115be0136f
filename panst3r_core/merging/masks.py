"""Soft masks at image resolution, one view at a time.

The official post-processing (panst3r ``engine/postprocess.py``) applies the sigmoid at mask resolution (H/2 x W/2)
and then upsamples bilinearly (``align_corners=False``) to the image size, for all views and all queries at once:
Q x V x H x W floats, 5 GB for 200 queries and 32 views at 512x384. Every merge here walks the views one by one
instead; per view the arithmetic is the same, so the results are bitwise the official ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32: half-precision logits would make the argmax ties and the pair sums coarse."""
    return torch.promote_types(dtype, torch.float32)


def check_inputs(class_logits: Tensor, mask_logits: Tensor, image_hw: tuple[int, int]) -> None:
    """Raise ``ValueError`` naming the offending shape when the inputs do not fit together."""
    if class_logits.ndim != 2:
        raise ValueError(f"class_logits must be [Q, K], got shape {tuple(class_logits.shape)}")
    if mask_logits.ndim != 4:
        raise ValueError(f"mask_logits must be [V, Q, h, w], got shape {tuple(mask_logits.shape)}")
    if mask_logits.shape[1] != class_logits.shape[0]:
        raise ValueError(
            f"mask_logits has {mask_logits.shape[1]} queries but class_logits has {class_logits.shape[0]}; "
            "pass the masks and class logits of the same decoder output"
        )
    if len(image_hw) != 2 or min(image_hw) <= 0:
        raise ValueError(f"image_hw must be (H, W) with positive sizes, got {image_hw}")


def view_mask_probs(
    mask_logits: Float[Tensor, "V Q h w"], view: int, image_hw: tuple[int, int]
) -> Float[Tensor, "Q H W"]:
    """Sigmoid, then bilinear upsampling of one view's masks to ``image_hw`` (official order and arithmetic)."""
    logits = mask_logits[view : view + 1].to(_work_dtype(mask_logits.dtype))
    probs = F.interpolate(logits.sigmoid(), size=tuple(image_hw), mode="bilinear", align_corners=False)
    return probs[0]


def _upsampled_mask_probs(
    mask_logits: Float[Tensor, "V Q h w"], image_hw: tuple[int, int]
) -> Float[Tensor, "Q V H W"]:
    """All views at once, laid out as the official code holds them (reference twins only: it is the big tensor)."""
    logits = mask_logits.to(_work_dtype(mask_logits.dtype))
    probs = F.interpolate(logits.sigmoid(), size=tuple(image_hw), mode="bilinear", align_corners=False)
    return probs.transpose(0, 1)  # [Q, V, H, W]


def class_scores(class_logits: Float[Tensor, "Q K"]) -> tuple[Float[Tensor, " Q"], Tensor]:
    """Best class probability and its class index per query (``label_mode='sigmoid'`` of the official code)."""
    return class_logits.to(_work_dtype(class_logits.dtype)).sigmoid().max(dim=-1)
