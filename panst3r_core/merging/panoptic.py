"""Shared last step of every merge: per-view winner maps -> id maps, confidences and ``segments_info``."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from panst3r_splat.core.merging.types import MergedPanoptic, Segment


def void_result(
    num_views: int, image_hw: tuple[int, int], confidence: float, device: torch.device, dtype: torch.dtype
) -> MergedPanoptic:
    """Every pixel void."""
    shape = (num_views, *image_hw)
    return MergedPanoptic(
        panoptic=torch.zeros(shape, dtype=torch.int32, device=device),
        confidence=torch.full(shape, confidence, dtype=dtype, device=device),
        segments=(),
    )


def segment_ids(
    keep: Bool[Tensor, " S"], categories: Int[Tensor, " S"], isthing: Bool[Tensor, " K"] | None
) -> Int[Tensor, " S"]:
    """Consecutive ids 1..n for kept candidates in order, 0 for the others.

    With an ``isthing`` table, candidates of the same stuff class share the id of the first of them (one segment
    per stuff class, as Mask2Former's stuff memory does); without it everything is a thing (official behaviour).
    """
    ids = torch.zeros(keep.shape[0], dtype=torch.int64)
    stuff_ids: dict[int, int] = {}
    next_id = 1
    for s, (k, cat) in enumerate(zip(keep.tolist(), categories.tolist())):
        if not k:
            continue
        if isthing is not None and not bool(isthing[cat]):
            if cat in stuff_ids:
                ids[s] = stuff_ids[cat]
                continue
            stuff_ids[cat] = next_id
        ids[s] = next_id
        next_id += 1
    return ids


def assemble(
    winners: Int[Tensor, "V H W"],
    confidence: Float[Tensor, "V H W"],
    ids: Int[Tensor, " S"],
    queries: Int[Tensor, " S"],
    categories: Int[Tensor, " S"],
    class_probs: Float[Tensor, " S"],
    isthing: Bool[Tensor, " K"] | None,
) -> tuple[Int[Tensor, "V H W"], tuple[Segment, ...]]:
    """Id map from winner indices (-1 = none) through ``ids`` and the ``segments_info`` of every id."""
    lookup = torch.cat([ids.new_zeros(1), ids]).to(winners.device)
    panoptic = lookup[winners.long() + 1].to(torch.int32)
    n = int(ids.max()) if ids.numel() else 0
    flat = panoptic.flatten().long()
    areas = torch.bincount(flat, minlength=n + 1).cpu()
    conf_sums = torch.bincount(flat, weights=confidence.flatten().double(), minlength=n + 1).cpu()
    segments = []
    for seg_id in range(1, n + 1):
        members = (ids == seg_id).nonzero().flatten()
        first = int(members[0])
        category = int(categories[first])
        class_prob = float(class_probs[members].max())
        area = int(areas[seg_id])
        mask_conf = float(conf_sums[seg_id]) / area if area else 0.0
        segments.append(
            Segment(
                id=seg_id,
                category_id=category,
                isthing=True if isthing is None else bool(isthing[category]),
                score=class_prob * mask_conf,
                query_id=int(queries[first]),
                area=area,
                class_prob=class_prob,
                mask_conf=mask_conf,
            )
        )
    return panoptic, tuple(segments)
