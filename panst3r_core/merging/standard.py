"""Mask2Former-style ("standard") merging, jointly over all views (official ``panoptic_inference_v2`` / ``_v1``).

Queries with a class probability above ``cls_threshold`` compete per pixel through ``score * mask``; a query keeps
its won pixels (where its own mask reaches ``mask_threshold``) if they are at least ``overlap_threshold`` of its
pixels with mask >= 0.5, areas counted over all views. ``niters`` rounds, each restricted to the previous round's
kept queries (method.md section 3.1). The official code holds the Q x V x H x W upsampled masks; here the views
stream, and per round only per-query counts cross views, so memory is one view's masks plus the output maps.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from panst3r_splat.core.merging.masks import (
    _upsampled_mask_probs,
    check_inputs,
    class_scores,
    view_mask_probs,
)
from panst3r_splat.core.merging.panoptic import assemble, segment_ids, void_result
from panst3r_splat.core.merging.types import STANDARD_V1, STANDARD_V2, MergedPanoptic, StandardConfig


def _accepted(won: Int[Tensor, " S"], original: Int[Tensor, " S"], overlap_threshold: float) -> Bool[Tensor, " S"]:
    """Official acceptance: both areas positive and won / original >= threshold (ratio in float64)."""
    ratio = won.double() / original.clamp(min=1).double()
    return (won > 0) & (original > 0) & (ratio >= overlap_threshold)


def merge_standard(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    image_hw: tuple[int, int],
    *,
    config: StandardConfig = STANDARD_V2,
    isthing: Bool[Tensor, " K"] | None = None,
) -> MergedPanoptic:
    """Standard merge with explicit options (``merge_standard_v1`` / ``_v2`` pick the official presets)."""
    check_inputs(class_logits, mask_logits, image_hw)
    if config.niters < 1:
        raise ValueError(f"StandardConfig.niters must be at least 1, got {config.niters}")
    V = mask_logits.shape[0]
    scores, labels = class_scores(class_logits)
    active = torch.nonzero(scores > config.cls_threshold).flatten()
    original = torch.zeros(active.shape[0], dtype=torch.int64, device=mask_logits.device)
    dtype = scores.dtype
    for it in range(config.niters):
        last = it == config.niters - 1
        if active.numel() == 0:
            return void_result(V, image_hw, config.void_confidence, mask_logits.device, dtype)
        won = torch.zeros_like(original)
        winners = torch.empty((V, *image_hw), dtype=torch.int32, device=mask_logits.device) if last else None
        confs = torch.empty((V, *image_hw), dtype=dtype, device=mask_logits.device) if last else None
        weights = scores[active].view(-1, 1, 1)
        for v in range(V):
            probs = view_mask_probs(mask_logits, v, image_hw)[active]  # [S, H, W]
            if it == 0:
                original += (probs >= 0.5).flatten(1).sum(1)
            best = (weights * probs).argmax(0)  # [H, W], first index on ties like the official argmax
            best_prob = probs.gather(0, best[None])[0]
            hit = best_prob >= config.mask_threshold
            won += torch.bincount(best[hit], minlength=active.shape[0])
            if last:
                winners[v] = torch.where(hit, best, -1)
                confs[v] = best_prob
        keep = _accepted(won, original, config.overlap_threshold)
        if not last:
            active, original = active[keep], original[keep]
    ids = segment_ids(keep.cpu(), labels[active].cpu(), isthing)
    panoptic, segments = assemble(
        winners, confs, ids, active.cpu(), labels[active].cpu(), scores[active].cpu(), isthing
    )
    confidence = torch.where(panoptic > 0, confs, torch.full_like(confs, config.void_confidence))
    return MergedPanoptic(panoptic=panoptic, confidence=confidence, segments=segments)


def merge_standard_v2(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    image_hw: tuple[int, int],
    *,
    isthing: Bool[Tensor, " K"] | None = None,
) -> MergedPanoptic:
    """Official v2 standard merge: cls 0.1, mask 0.25, overlap 0.5, 2 rounds, jointly over all views."""
    return merge_standard(class_logits, mask_logits, image_hw, config=STANDARD_V2, isthing=isthing)


def merge_standard_v1(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    image_hw: tuple[int, int],
    *,
    isthing: Bool[Tensor, " K"] | None = None,
) -> MergedPanoptic:
    """Official v1 standard merge (the paper's "w/o QUBO"): cls 0.1, mask 0.5, overlap 0.8, 1 round."""
    return merge_standard(class_logits, mask_logits, image_hw, config=STANDARD_V1, isthing=isthing)


def _merge_standard(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    image_hw: tuple[int, int],
    config: StandardConfig,
) -> tuple[Int[Tensor, "V H W"], Float[Tensor, "V H W"], list[tuple[int, int, int]]]:
    """Reference twin of ``merge_standard`` (all classes things): the official loop on the full mask tensor.

    Returns the id map, the confidence and ``(id, query, category)`` per segment.
    """
    masks = _upsampled_mask_probs(mask_logits, image_hw)  # [Q, V, H, W]
    scores, labels = class_scores(class_logits)
    queries = [q for q in range(len(scores)) if scores[q] > config.cls_threshold]
    panoptic = torch.zeros(masks.shape[1:], dtype=torch.int32)
    conf = torch.full(masks.shape[1:], config.void_confidence)
    info: list[tuple[int, int, int]] = []
    for _ in range(config.niters):
        panoptic = torch.zeros(masks.shape[1:], dtype=torch.int32)
        conf = torch.full(masks.shape[1:], config.void_confidence)
        info = []
        if not queries:
            break
        prob_masks = torch.stack([scores[q] * masks[q] for q in queries])
        winner = prob_masks.argmax(0)
        kept = []
        for k, q in enumerate(queries):
            original_area = int((masks[q] >= 0.5).sum())
            region = (winner == k) & (masks[q] >= config.mask_threshold)
            area = int(region.sum())
            if area == 0 or original_area == 0 or area / original_area < config.overlap_threshold:
                continue
            kept.append(q)
            panoptic[region] = len(kept)
            conf[region] = masks[q][region]
            info.append((len(kept), q, int(labels[q])))
        queries = kept
    return panoptic, conf, info
