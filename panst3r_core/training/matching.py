"""Hungarian matching between mask-transformer queries and multi-view ground-truth segments (method.md 6.2).

PanSt3R matches per scene, on the final and separately on every auxiliary decoder layer, with the Mask2Former cost
``C = 20 * BCE + 1 * dice - 1 * softmax(class_logits)[:, gt_class]``. The softmax is used in the cost even though the
class loss is a sigmoid focal loss (naver/panst3r matcher.py). The mask costs are computed on random points sampled
at the *same* normalised coordinates in every view, for predictions (at H/2) and targets (at H) alike, and the points
of all views are concatenated: one cost covers the whole multi-view mask, so a query is matched to a segment for its
masks in all views together.

Point sampling uses ``align_corners=False`` as Mask2Former's ``point_sample``, so a normalised coordinate means the
same place at both resolutions. Two deliberate differences from ``point_sample``:
- targets are sampled with *nearest* interpolation (a GT pixel's label covers its square), predictions bilinearly
  (as they are upsampled at inference). Bilinear targets put a one-pixel-wide band of soft values along every GT
  boundary; at our small training resolutions (objects a few pixels wide at H/2) that band, with the BCE weight 20,
  dominated the loss of an otherwise perfect prediction and rewarded blurred logits (measured on the unit-test scene
  of 2x2-pixel blocks: mask BCE 0.47 for the perfect +-30-logit prediction against 0.42 for it softened to +-1 with
  bilinear targets; 0.15 against 0.41 with nearest targets);
- padding is the border value rather than zeros, which keeps a mask that fills a view equal to 1 up to its edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

NUM_POINTS = 12288
"""Points per view for the mask costs and losses (PanSt3R ``PanopticLoss(num_points=12288)``)."""


@dataclass(frozen=True)
class MatchCostWeights:
    """Weights of the matching cost; PanSt3R uses the loss weights (class 1, mask 20, dice 1)."""

    mask_bce: float = 20.0
    """Weight of the mean binary cross-entropy over the sampled points of all views."""
    dice: float = 1.0
    """Weight of the dice cost over the sampled points of all views."""
    class_prob: float = 1.0
    """Weight of ``-softmax(class_logits)[q, gt_class]``."""


def sample_coords(
    num_points: int, batch: int = 1, *, like: Tensor, generator: torch.Generator | None = None
) -> Float[Tensor, "B P 2"]:
    """Uniform random normalised ``(x, y)`` in ``[0, 1)^2`` (x along the width), on ``like``'s device and dtype."""
    device = generator.device if generator is not None else like.device
    coords = torch.rand(batch, num_points, 2, generator=generator, device=device, dtype=like.dtype)
    return coords.to(like.device)


def point_sample(
    maps: Float[Tensor, "B C h w"], coords: Float[Tensor, "B P 2"], *, nearest: bool = False
) -> Float[Tensor, "B C P"]:
    """Values of ``maps`` at normalised ``coords`` (Mask2Former ``point_sample``, border padding).

    Bilinear for predictions; ``nearest=True`` for ground-truth masks (see the module docstring).
    """
    grid = (2.0 * coords - 1.0)[:, :, None, :]  # [B, P, 1, 2]
    mode = "nearest" if nearest else "bilinear"
    return F.grid_sample(maps, grid, mode=mode, padding_mode="border", align_corners=False)[..., 0]


def sample_gt_masks(gt_masks: Bool[Tensor, "B C H W"], coords: Float[Tensor, "B P 2"]) -> Float[Tensor, "B C P"]:
    """0/1 values of binary masks at normalised ``coords`` (the label of the pixel square containing each point)."""
    return point_sample(gt_masks.to(coords.dtype), coords, nearest=True)


def sample_multiview(
    mask_logits: Float[Tensor, "V Q h w"],
    gt_masks: Bool[Tensor, "S V H W"],
    coords: Float[Tensor, "P 2"],
) -> tuple[Float[Tensor, "Q VP"], Float[Tensor, "S VP"]]:
    """Predicted logits and 0/1 targets at the same ``coords`` in every view, views concatenated (view-major)."""
    n_views = mask_logits.shape[0]
    grid = coords[None].expand(n_views, -1, -1)
    pred = point_sample(mask_logits, grid)  # [V, Q, P]
    gt = sample_gt_masks(gt_masks.transpose(0, 1), grid.to(mask_logits.dtype))  # [V, S, P]
    return pred.permute(1, 0, 2).flatten(1), gt.permute(1, 0, 2).flatten(1)


def pairwise_bce_cost(pred_logits: Float[Tensor, "Q N"], gt: Float[Tensor, "S N"]) -> Float[Tensor, "Q S"]:
    """Mean over the N points of ``BCE(pred_q, gt_s)`` for every pair, as two matrix products (Mask2Former)."""
    pos = F.binary_cross_entropy_with_logits(pred_logits, torch.ones_like(pred_logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(pred_logits, torch.zeros_like(pred_logits), reduction="none")
    return (pos @ gt.T + neg @ (1.0 - gt).T) / pred_logits.shape[1]


def pairwise_dice_cost(pred_logits: Float[Tensor, "Q N"], gt: Float[Tensor, "S N"]) -> Float[Tensor, "Q S"]:
    """``1 - (2 sum p t + 1) / (sum p + sum t + 1)`` for every pair, ``p = sigmoid(pred)``."""
    prob = pred_logits.sigmoid()
    numerator = 2.0 * prob @ gt.T + 1.0
    denominator = prob.sum(-1)[:, None] + gt.sum(-1)[None, :] + 1.0
    return 1.0 - numerator / denominator


def matching_cost(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    gt_masks: Bool[Tensor, "S V H W"],
    gt_classes: Int[Tensor, " S"],
    coords: Float[Tensor, "P 2"],
    weights: MatchCostWeights = MatchCostWeights(),
) -> Float[Tensor, "Q S"]:
    """The method.md 6.2 cost of assigning query ``q`` to segment ``s``, on the given sample points."""
    pred, gt = sample_multiview(mask_logits, gt_masks, coords)
    class_prob = class_logits.softmax(-1)[:, gt_classes]  # [Q, S]
    return (
        weights.mask_bce * pairwise_bce_cost(pred, gt)
        + weights.dice * pairwise_dice_cost(pred, gt)
        - weights.class_prob * class_prob
    )


def _matching_cost(
    class_logits: Tensor,
    mask_logits: Tensor,
    gt_masks: Tensor,
    gt_classes: Tensor,
    coords: Tensor,
    weights: MatchCostWeights = MatchCostWeights(),
) -> Tensor:
    """Reference twin of :func:`matching_cost`: one pair at a time, views sampled one by one."""
    n_queries, n_segments = class_logits.shape[0], gt_masks.shape[0]
    n_views = mask_logits.shape[0]
    cost = torch.empty(n_queries, n_segments, dtype=class_logits.dtype)
    for q in range(n_queries):
        pred = torch.cat([point_sample(mask_logits[v : v + 1, q : q + 1], coords[None])[0, 0] for v in range(n_views)])
        prob = pred.sigmoid()
        class_prob = torch.softmax(class_logits[q], dim=0)
        for s in range(n_segments):
            gt = torch.cat(
                [sample_gt_masks(gt_masks[s, v][None, None], coords[None])[0, 0] for v in range(n_views)]
            )
            bce = F.binary_cross_entropy_with_logits(pred, gt)
            dice = 1.0 - (2.0 * (prob * gt).sum() + 1.0) / (prob.sum() + gt.sum() + 1.0)
            cost[q, s] = weights.mask_bce * bce + weights.dice * dice - weights.class_prob * class_prob[gt_classes[s]]
    return cost


@torch.no_grad()
def hungarian_match(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    gt_masks: Bool[Tensor, "S V H W"],
    gt_classes: Int[Tensor, " S"],
    num_points: int = NUM_POINTS,
    generator: torch.Generator | None = None,
    weights: MatchCostWeights = MatchCostWeights(),
) -> tuple[Int[Tensor, " M"], Int[Tensor, " M"]]:
    """Optimal one-to-one assignment of queries to ground-truth segments of one scene, ``M = min(Q, S)``.

    Args:
        class_logits: per-query class logits over the K classes.
        mask_logits: per-view, per-query mask logits (at H/2 in PanSt3R; any resolution works).
        gt_masks: the multi-view binary mask of each of the S segments (thing instance or stuff class).
        gt_classes: index of each segment's class into the K columns of ``class_logits``.
        num_points: random points per view at which the mask costs are evaluated.
        generator: random source for the points (its device is used to draw them).
        weights: cost weights (method.md 6.2 by default).

    Returns:
        ``(query_idx, gt_idx)``: matched query and segment indices, ascending in ``query_idx``, on the inputs' device.
    """
    check_scene_targets(class_logits, mask_logits, gt_masks, gt_classes)
    device = class_logits.device
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if gt_masks.shape[0] == 0:
        return empty, empty.clone()
    coords = sample_coords(num_points, like=mask_logits, generator=generator)[0]
    cost = matching_cost(class_logits.float(), mask_logits.float(), gt_masks, gt_classes, coords.float(), weights)
    cost_np = cost.cpu().double().numpy()
    if not np.isfinite(cost_np).all():
        raise ValueError("the matching cost has NaN or inf entries: check the model outputs for NaN logits")
    rows, cols = scipy.optimize.linear_sum_assignment(cost_np)
    return (
        torch.as_tensor(rows, dtype=torch.long, device=device),
        torch.as_tensor(cols, dtype=torch.long, device=device),
    )


def check_scene_targets(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    gt_masks: Bool[Tensor, "S V H W"],
    gt_classes: Int[Tensor, " S"],
) -> None:
    """Raise a ValueError naming the mismatch when predictions and targets of one scene do not fit together."""
    n_queries, n_classes = class_logits.shape
    if mask_logits.shape[1] != n_queries:
        raise ValueError(f"mask_logits has {mask_logits.shape[1]} queries but class_logits has {n_queries}")
    if gt_masks.shape[1] != mask_logits.shape[0]:
        raise ValueError(f"gt_masks has {gt_masks.shape[1]} views but mask_logits has {mask_logits.shape[0]}")
    if gt_classes.shape[0] != gt_masks.shape[0]:
        raise ValueError(f"{gt_classes.shape[0]} gt_classes for {gt_masks.shape[0]} gt_masks")
    if gt_classes.numel() and (int(gt_classes.min()) < 0 or int(gt_classes.max()) >= n_classes):
        raise ValueError(
            f"gt_classes must index the {n_classes} class logits (class id - 1 for the class table), "
            f"got values in [{int(gt_classes.min())}, {int(gt_classes.max())}]"
        )
