"""Typed results of the PanSt3R forward passes and the pointmap activation.

Frames: global points are in the camera frame of the first memory image (keyframe #0 at inference, view 0 in the
training forward), OpenCV axes; local points are in each view's own camera frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from panst3r_splat.core.model.mask_transformer import MaskTransformerOutput


@dataclass(frozen=True)
class AuxPrediction:
    """One deep-supervision prediction (initial queries, or after a layer other than the last)."""

    class_logits: Float[Tensor, "B Q K"]
    """Class logits."""
    mask_logits: Float[Tensor, "B V Q H2 W2"]
    """Mask logits at stride 2."""


@dataclass(frozen=True)
class PanopticOutput:
    """Mask-transformer output over the views of a batch of scenes (training-mode forward)."""

    class_logits: Float[Tensor, "B Q K"]
    """``exp(s) * cos(lang_embed(LN(q)), t_c)`` per query and class."""
    mask_logits: Float[Tensor, "B V Q H2 W2"]
    """Mask logits (no sigmoid) at H/2 x W/2, one map per view and query."""
    aux: tuple[AuxPrediction, ...]
    """Predictions from the initial queries and after every layer but the last."""
    queries: Float[Tensor, "Q B D"]
    """Decoded query states (before ``decoder_norm``), detached."""


@dataclass(frozen=True)
class TrainingOutput:
    """Result of :meth:`PanSt3R.forward`."""

    panoptic: PanopticOutput | None
    """Class and mask predictions (None from a geometry-only forward)."""
    pointmaps_raw: Float[Tensor, "B V H W 7"]
    """Raw head output: [0:3] global points, [3:6] local points, [6] confidence, before activation."""
    pointmaps_memory_raw: Float[Tensor, "B V H W 7"] | None = None
    """The same head on the memory pass's tokens (only when asked for: a training signal, never used at inference)."""
    encoder_tokens: Float[Tensor, "B V T Denc"] | None = None
    """MUSt3R encoder tokens, row-major over the patch grid (for training-only token losses)."""
    decoder_tokens: Float[Tensor, "B V T Ddec"] | None = None
    """Render-pass decoder tokens after ``norm_dec``, the pointmap head's input (for training-only token losses)."""
    descriptors_raw: Float[Tensor, "B V H W Dd1"] | None = None
    """Raw output of the descriptor head (models that have one): ``[..., :D]`` descriptors before normalisation,
    ``[..., D]`` matching confidence before activation (see :func:`activate_descriptors`)."""


@dataclass(frozen=True)
class InferenceOutput:
    """Result of :meth:`PanSt3R.forward_inference`, views in input order, each in its own orientation."""

    pointmaps_raw: tuple[Tensor, ...]
    """Per view ``(H, W, 7)`` raw pointmaps (see :func:`activate_pointmaps`)."""
    mask_logits: tuple[Tensor, ...]
    """Per view ``(Q, H/2, W/2)`` mask logits."""
    class_logits: Float[Tensor, "Q K"]
    """Class logits of the queries decoded over the keyframes."""
    queries: Float[Tensor, "Q D"]
    """The decoded queries (before ``decoder_norm``)."""
    keyframes: tuple[int, ...]
    """Indices of the keyframes in memory order; the world frame is the camera of ``keyframes[0]``."""
    descriptors: tuple[Tensor, ...] | None = None
    """Per view ``(H, W, D)`` dense matching descriptors, L2-normalised float32, one per input pixel (only models
    with a descriptor head; None otherwise). Two pixels of different views that see the same surface point have
    descriptors whose dot product is high: mutual nearest neighbours of the dot product are the matches."""
    descriptor_conf: tuple[Tensor, ...] | None = None
    """Per view ``(H, W)`` matching confidence of each descriptor, ``1 + exp(c) >= 1`` (higher: more reliable), for
    choosing which pixels to match (None with ``descriptors``)."""

    def stacked_pointmaps_raw(self) -> Float[Tensor, "V H W 7"]:
        """All pointmaps as one tensor (views must share one size)."""
        return _stack_same_size(self.pointmaps_raw, "pointmaps")

    def stacked_mask_logits(self) -> Float[Tensor, "V Q H2 W2"]:
        """All mask logits as one tensor (views must share one size)."""
        return _stack_same_size(self.mask_logits, "mask logits")


def activate_pointmaps(
    raw: Float[Tensor, "*batch 7"],
) -> tuple[Float[Tensor, "*batch 3"], Float[Tensor, "*batch 3"], Float[Tensor, "*batch"]]:
    """``(pts3d, pts3d_local, conf)`` from raw head output, in float32.

    Points use NORM_EXP, ``p / max(|p|, 1e-8) * expm1(|p|)``; confidence is ``1 + exp(c)`` (must3r
    engine/inference.py ``postprocess``).
    """
    raw = raw.float()
    return _norm_exp(raw[..., 0:3]), _norm_exp(raw[..., 3:6]), 1.0 + raw[..., 6].exp()


def activate_descriptors(
    raw: Float[Tensor, "*batch Dd1"],
) -> tuple[Float[Tensor, "*batch D"], Float[Tensor, "*batch"]]:
    """``(descriptors, conf)`` from the descriptor head's raw output, in float32: L2-normalised descriptors and a
    matching confidence ``1 + exp(c)`` (as MASt3R's matching head and the pointmap confidence)."""
    raw = raw.float()
    return torch.nn.functional.normalize(raw[..., :-1], dim=-1), 1.0 + raw[..., -1].exp()


def _norm_exp(xyz: Tensor) -> Tensor:
    d = xyz.norm(dim=-1, keepdim=True)
    return xyz / d.clip(min=1e-8) * torch.expm1(d)


def panoptic_from_mask_transformer(out: MaskTransformerOutput) -> PanopticOutput:
    """Stack the per-view mask logits of a single-size batch into ``(B, V, Q, H2, W2)``."""

    def stack(masks: tuple[Tensor, ...]) -> Tensor:
        return torch.stack(masks, dim=1)

    aux = tuple(AuxPrediction(p.class_logits, stack(p.mask_logits)) for p in out.aux)
    return PanopticOutput(
        class_logits=out.final.class_logits,
        mask_logits=stack(out.final.mask_logits),
        aux=aux,
        queries=out.queries,
    )


def _stack_same_size(tensors: tuple[Tensor, ...], what: str) -> Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"cannot stack {what} of views with different sizes {sorted(shapes)}; use the per-view tuple")
    return torch.stack(tensors)
