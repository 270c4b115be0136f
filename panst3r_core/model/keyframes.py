"""Keyframe policies: which views build the MUSt3R memory and decode the queries, and in which order.

The first keyframe is the reference image: the world frame is its camera frame. Policies (one type per mode):

- :class:`AllKeyframes`: every view, in input order (official default up to 50 views);
- :class:`LinspaceKeyframes`: ``np.linspace(0, V-1, K).astype(int)`` (official without retrieval);
- :class:`FarthestPointKeyframes`: farthest-point sampling on global descriptors of the encoder tokens, then the
  official retrieval ordering (start at the most connected keyframe, then repeatedly append the keyframe most similar
  to any already chosen), so the memory grows through overlapping views. For large unordered collections, where
  linspace over the file order says nothing about coverage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

#: Official default: all views up to this many, else this many keyframes.
DEFAULT_MAX_KEYFRAMES = 50


@runtime_checkable
class KeyframePolicy(Protocol):
    """Chooses keyframe indices (memory order) from per-view descriptors."""

    def select(self, descriptors: Float[Tensor, "V D"]) -> list[int]:
        """Keyframe indices in memory order."""
        raise NotImplementedError


@dataclass(frozen=True)
class AllKeyframes:
    """Every view is a keyframe, in input order."""

    def select(self, descriptors: Float[Tensor, "V D"]) -> list[int]:
        """All indices."""
        return list(range(descriptors.shape[0]))


@dataclass(frozen=True)
class _KeyframeCount:
    """A selector that picks a fixed number of keyframes."""

    num: int
    """Number of keyframes K (at least 1)."""

    def __post_init__(self) -> None:
        if self.num < 1:
            raise ValueError(f"number of keyframes must be at least 1, got {self.num}")


@dataclass(frozen=True)
class LinspaceKeyframes(_KeyframeCount):
    """K evenly spaced views (all views when K >= V)."""

    def select(self, descriptors: Float[Tensor, "V D"]) -> list[int]:
        """``np.linspace(0, V - 1, K).astype(int)``."""
        V = descriptors.shape[0]
        if self.num >= V:
            return list(range(V))
        return [int(i) for i in np.linspace(0, V - 1, self.num).astype(int)]


@dataclass(frozen=True)
class FarthestPointKeyframes(_KeyframeCount):
    """K views spread over the collection by farthest-point sampling on descriptor cosine distance."""

    def select(self, descriptors: Float[Tensor, "V D"]) -> list[int]:
        """Deterministic: sampling starts at the medoid (highest summed similarity)."""
        V = descriptors.shape[0]
        d = torch.nn.functional.normalize(descriptors.double(), dim=-1)
        sim = (d @ d.T).cpu().numpy()
        k = min(self.num, V)
        anchors = farthest_point_sampling(1.0 - sim, k, first=int(np.argmax(sim.sum(axis=1))))
        return order_by_similarity(sim[np.ix_(anchors, anchors)], anchors)


def default_keyframe_policy(num_views: int) -> KeyframePolicy:
    """Official default: all views up to 50, else 50 evenly spaced."""
    if num_views <= DEFAULT_MAX_KEYFRAMES:
        return AllKeyframes()
    return LinspaceKeyframes(DEFAULT_MAX_KEYFRAMES)


def farthest_point_sampling(dist: np.ndarray, k: int, first: int) -> list[int]:
    """Greedy k-centre selection on a (V, V) distance matrix, starting at ``first``."""
    chosen = [first]
    min_dist = dist[first].copy()
    for _ in range(1, k):
        min_dist[chosen] = -np.inf
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        min_dist = np.minimum(min_dist, dist[nxt])
    return chosen


def _farthest_point_sampling(dist: np.ndarray, k: int, first: int) -> list[int]:
    """Reference twin of :func:`farthest_point_sampling`: recomputes every distance to the chosen set."""
    chosen = [first]
    while len(chosen) < k:
        rest = [i for i in range(dist.shape[0]) if i not in chosen]
        chosen.append(max(rest, key=lambda i: (min(dist[i, j] for j in chosen), -i)))
    return chosen


def order_by_similarity(sim: np.ndarray, ids: list[int]) -> list[int]:
    """Official retrieval ordering: start with the most connected anchor, then append the anchor most similar to any
    already ordered one (panst3r.py ``_get_keyframes_retrieval``)."""
    sim = sim.copy()
    n = len(ids)
    np.fill_diagonal(sim, 0.0)
    order = [int(np.argmax(sim.sum(axis=-1)))]
    sim[:, order[0]] = 0.0
    while len(order) < n:
        rows = sim[np.array(order)]
        col = int(np.unravel_index(np.argmax(rows), rows.shape)[1])
        if col in order:  # all remaining similarities are zero: take the first unused one
            col = next(i for i in range(n) if i not in order)
        order.append(col)
        sim[:, col] = 0.0
    return [ids[i] for i in order]


def memory_schedule(num_images: int, init: int = 2, step: int = 1) -> list[int]:
    """Batch sizes for building the memory: ``init`` images together, then ``step`` at a time ([2, 1, 1, ...])."""
    if num_images <= 0:
        return []
    sizes = [min(init, num_images)]
    while sum(sizes) < num_images:
        sizes.append(min(step, num_images - sum(sizes)))
    return sizes
