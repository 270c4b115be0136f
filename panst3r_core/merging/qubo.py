"""QUBO merging (PanSt3R paper section 3.2, official ``panoptic_inference_qubo``).

Select the subset of queries whose soft multi-view masks cover the most pixels with the least overlap (``solve_qubo``
on the ``qubo_weights`` matrix), give every pixel of every view to the selected query with the highest mask
probability there, then void the instances whose ``class_prob * mean mask confidence`` is below ``prob_threshold``.
Every pixel is assigned before that rule (no background threshold), as in the official code.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from panst3r_splat.core.merging.masks import _upsampled_mask_probs, check_inputs, class_scores, view_mask_probs
from panst3r_splat.core.merging.panoptic import assemble, segment_ids, void_result
from panst3r_splat.core.merging.solver import solve_qubo
from panst3r_splat.core.merging.weights import qubo_weights
from panst3r_splat.core.merging.types import MergedPanoptic, QuboConfig


def panoptic_from_selection(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    image_hw: tuple[int, int],
    selected: Bool[Tensor, " Q"],
    *,
    prob_threshold: float = 0.01,
    isthing: Bool[Tensor, " K"] | None = None,
) -> MergedPanoptic:
    """Per-pixel argmax over the selected queries' masks, the void rule, and ids 1..n in query order."""
    check_inputs(class_logits, mask_logits, image_hw)
    V = mask_logits.shape[0]
    chosen = torch.nonzero(selected.to(mask_logits.device)).flatten()
    scores, labels = class_scores(class_logits)
    if chosen.numel() == 0:
        return void_result(V, image_hw, 0.0, mask_logits.device, scores.dtype)
    winners = torch.empty((V, *image_hw), dtype=torch.int32, device=mask_logits.device)
    confs = torch.empty((V, *image_hw), dtype=scores.dtype, device=mask_logits.device)
    for v in range(V):
        confs[v], best = view_mask_probs(mask_logits, v, image_hw)[chosen].max(0)
        winners[v] = best
    flat = winners.flatten().long()
    areas = torch.bincount(flat, minlength=chosen.shape[0])
    conf_sums = torch.bincount(flat, weights=confs.flatten().double(), minlength=chosen.shape[0])
    mask_confs = conf_sums / areas.clamp(min=1)
    class_probs = scores[chosen].double()
    keep = (areas > 0) & ~(class_probs * mask_confs < prob_threshold)
    ids = segment_ids(keep.cpu(), labels[chosen].cpu(), isthing)
    panoptic, segments = assemble(
        winners, confs, ids, chosen.cpu(), labels[chosen].cpu(), scores[chosen].cpu(), isthing
    )
    return MergedPanoptic(panoptic=panoptic, confidence=confs, segments=segments)


def merge_qubo(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    image_hw: tuple[int, int],
    *,
    isthing: Bool[Tensor, " K"] | None = None,
    config: QuboConfig = QuboConfig(),
    seed: int = 0,
) -> MergedPanoptic:
    """QUBO merge: weights (streamed over views), solve, per-pixel assignment and void rule.

    Args:
        class_logits: class logits per query.
        mask_logits: mask logits at mask resolution (h = H/2, w = W/2).
        image_hw: (H, W) of the output maps.
        isthing: optional thing/stuff flag per class; stuff instances of one class are then fused into one segment.
            None (default) treats every class as a thing, as the official code does.
        config: weights, solver and void-rule options.
        seed: annealing seed (only used when too many queries stay undecided for the exact solver).
    """
    check_inputs(class_logits, mask_logits, image_hw)
    A = qubo_weights(mask_logits, image_hw, penalty=config.penalty, mode=config.weights)
    solution = solve_qubo(A, config=config, seed=seed)
    return panoptic_from_selection(
        class_logits, mask_logits, image_hw, solution.selected, prob_threshold=config.prob_threshold, isthing=isthing
    )


def _panoptic_from_selection(
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    image_hw: tuple[int, int],
    selected: Bool[Tensor, " Q"],
    prob_threshold: float = 0.01,
) -> tuple[Int[Tensor, "V H W"], Float[Tensor, "V H W"], list[tuple[int, int, int]]]:
    """Reference twin of ``panoptic_from_selection`` (all classes things): the official steps on the full tensor.

    Returns the id map, the confidence and ``(id, query, category)`` per segment.
    """
    masks = _upsampled_mask_probs(mask_logits, image_hw)  # [Q, V, H, W]
    probs, labels = class_scores(class_logits)
    chosen = [q for q in range(len(selected)) if bool(selected[q])]
    conf, instance = masks[chosen].max(dim=0)
    panoptic = torch.zeros_like(instance, dtype=torch.int32)
    info: list[tuple[int, int, int]] = []
    for k in torch.unique(instance).tolist():
        region = instance == k
        q = chosen[k]
        if float(probs[q]) * float(conf[region].double().mean()) < prob_threshold:
            continue
        panoptic[region] = len(info) + 1
        info.append((len(info) + 1, q, int(labels[q])))
    return panoptic, conf, info
