"""Synthetic multi-view mask predictions with a known answer, for tests and the merging benchmark.

A scene of ``num_objects`` cells (a Voronoi partition of each view whose seeds drift from view to view, as under
camera motion) and Q queries that imitate what a trained PanSt3R head produces: one good query per object, then
duplicates, merges of two neighbours, partial masks, and faint background queries, all with logit noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class SyntheticMasks:
    """Logits of a synthetic prediction and the partition they were drawn from."""

    class_logits: Float[Tensor, "Q K"]
    mask_logits: Float[Tensor, "V Q h w"]
    partition: Int[Tensor, "V h w"]
    """Object index per mask-resolution pixel (the good query of object o is query o)."""


def synthetic_masks(
    *, num_views: int, num_queries: int, mask_hw: tuple[int, int], num_objects: int = 40, num_classes: int = 8,
    seed: int = 0, sharpness: float = 10.0, noise: float = 1.5,
) -> SyntheticMasks:
    """Draw a synthetic prediction (float32, CPU). Needs ``num_queries >= num_objects``."""
    if num_queries < num_objects:
        raise ValueError(f"num_queries ({num_queries}) must be at least num_objects ({num_objects})")
    g = torch.Generator().manual_seed(seed)
    h, w = mask_hw
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    seeds = torch.rand(num_objects, 2, generator=g)
    drift = 0.3 * (torch.rand(num_objects, 2, generator=g) - 0.5)
    partition = torch.empty(num_views, h, w, dtype=torch.int64)
    for v in range(num_views):
        p = seeds + drift * v / max(num_views - 1, 1)
        d2 = (ys[None] - p[:, 0, None, None]) ** 2 + (xs[None] - p[:, 1, None, None]) ** 2
        partition[v] = d2.argmin(0)
    inside = torch.nn.functional.one_hot(partition, num_objects).permute(0, 3, 1, 2).float()  # [V, O, h, w]
    kinds = torch.randint(0, 4, (num_queries - num_objects,), generator=g)
    targets = [inside[:, o] for o in range(num_objects)]
    for kind in kinds.tolist():
        o, o2 = torch.randint(0, num_objects, (2,), generator=g).tolist()
        if kind == 0:  # duplicate
            targets.append(inside[:, o])
        elif kind == 1:  # merge of two objects
            targets.append(torch.clamp(inside[:, o] + inside[:, o2], max=1.0))
        elif kind == 2:  # partial: the left part of an object
            targets.append(inside[:, o] * (xs < torch.rand((), generator=g)).float())
        else:  # background query
            targets.append(torch.zeros(num_views, h, w))
    target = torch.stack(targets, 1)  # [V, Q, h, w]
    logits = sharpness * (2 * target - 1) + noise * torch.randn(target.shape, generator=g)
    logits[:, num_objects:][:, kinds == 3] -= 3.0
    classes = torch.randint(0, num_classes, (num_objects,), generator=g)
    class_logits = torch.randn(num_queries, num_classes, generator=g) - 4.0
    class_logits[torch.arange(num_objects), classes] += 8.0
    good = torch.nonzero(kinds != 3).flatten() + num_objects
    class_logits[good, torch.randint(0, num_classes, (len(good),), generator=g)] += 5.0
    return SyntheticMasks(class_logits=class_logits, mask_logits=logits.float(), partition=partition)
