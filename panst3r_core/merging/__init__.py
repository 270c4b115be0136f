"""Multi-view mask merging: PanSt3R's per-query soft masks -> one panoptic id map per view (method.md section 3).

Queries are shared by all views, so one query is one object everywhere and every merge here gives the same id to
the same object in every view by construction. Three merges, all pure functions on tensors (device and dtype from
the inputs) that stream over views instead of holding the Q x V x H x W upsampled masks:

- ``merge_qubo``: the paper's QUBO selection (exact weights, exact solver for few undecided queries, annealing
  with O(Q) updates otherwise);
- ``merge_standard_v2`` / ``merge_standard_v1``: the Mask2Former-style merges of the official code.

``category_id`` is the index into the class axis of the logits; mapping it to dataset ids is the caller's job.
"""

from __future__ import annotations

from typing import Literal

from jaxtyping import Bool, Float
from torch import Tensor

from panst3r_splat.core.merging.qubo import merge_qubo, panoptic_from_selection
from panst3r_splat.core.merging.solver import QuboSolution, qubo_energy, solve_qubo
from panst3r_splat.core.merging.weights import qubo_weights
from panst3r_splat.core.merging.standard import merge_standard, merge_standard_v1, merge_standard_v2
from panst3r_splat.core.merging.types import (
    STANDARD_V1,
    STANDARD_V2,
    MergedPanoptic,
    QuboConfig,
    Segment,
    StandardConfig,
    WeightMode,
)

MergeName = Literal["qubo", "standard_v2", "standard_v1"]
MERGE_NAMES: tuple[str, ...] = ("qubo", "standard_v2", "standard_v1")


def merge_panoptic(
    name: str,
    class_logits: Float[Tensor, "Q K"],
    mask_logits: Float[Tensor, "V Q h w"],
    image_hw: tuple[int, int],
    *,
    isthing: Bool[Tensor, " K"] | None = None,
    qubo_config: QuboConfig = QuboConfig(),
    seed: int = 0,
) -> MergedPanoptic:
    """Run the merge called ``name`` (one of :data:`MergeName`, checked here) with official defaults.

    ``isthing`` (one flag per class) fuses stuff segments of the same class into one; None treats every class as a
    thing, which is what the official code does and what the parity fixture checks.
    """
    if name == "qubo":
        return merge_qubo(class_logits, mask_logits, image_hw, isthing=isthing, config=qubo_config, seed=seed)
    if name == "standard_v2":
        return merge_standard_v2(class_logits, mask_logits, image_hw, isthing=isthing)
    if name == "standard_v1":
        return merge_standard_v1(class_logits, mask_logits, image_hw, isthing=isthing)
    raise ValueError(f"unknown merge {name!r}; choose one of {', '.join(MERGE_NAMES)}")


__all__ = [
    "MERGE_NAMES",
    "STANDARD_V1",
    "STANDARD_V2",
    "MergeName",
    "MergedPanoptic",
    "QuboConfig",
    "QuboSolution",
    "Segment",
    "StandardConfig",
    "WeightMode",
    "merge_panoptic",
    "merge_qubo",
    "merge_standard",
    "merge_standard_v1",
    "merge_standard_v2",
    "panoptic_from_selection",
    "qubo_energy",
    "qubo_weights",
    "solve_qubo",
]
