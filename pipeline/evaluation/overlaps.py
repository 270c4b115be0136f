"""Pixel-count tables of co-occurring (predicted class, predicted id, GT class, GT id) labels.

Every panoptic metric here is a function of these counts alone: segment areas are its marginals and segment
intersections its entries. Counting one frame at a time and summing the tables lets a scene of hundreds of
512x512 frames be scored in the memory of one frame, and the same per-frame tables feed the scene-level PQ
(tables summed), the per-view PQ (tables kept apart) and the mIoU (class marginals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from jaxtyping import Int, Integer

from panst3r_splat.pipeline.errors import UserError


@dataclass(frozen=True, eq=False)
class SegmentOverlaps:
    """How many pixels carry each distinct (pred class, pred id, GT class, GT id) quadruple.

    Rows are distinct quadruples with a positive count; the order of rows carries no meaning.
    """

    pred_semantics: Int[np.ndarray, " R"]
    """Predicted class id (``pred_semantics`` PNG value)."""
    pred_instances: Int[np.ndarray, " R"]
    """Predicted instance id (``pred_surrogateid`` PNG value), any integer."""
    gt_semantics: Int[np.ndarray, " R"]
    """Ground-truth class id (``rs_semantics``, 0 = void)."""
    gt_instances: Int[np.ndarray, " R"]
    """Ground-truth instance id (``rs_instance``)."""
    pixels: Int[np.ndarray, " R"]
    """Number of pixels with this quadruple."""

    @property
    def total(self) -> int:
        """Number of pixels counted."""
        return int(self.pixels.sum())

    def columns(self) -> Int[np.ndarray, "R 4"]:
        """The four label columns side by side: [R, 4] (pred class, pred id, GT class, GT id)."""
        return np.stack([self.pred_semantics, self.pred_instances, self.gt_semantics, self.gt_instances], axis=1)

    def select(self, rows: np.ndarray) -> "SegmentOverlaps":
        """The table restricted to the rows of a boolean mask or index array."""
        return SegmentOverlaps(self.pred_semantics[rows], self.pred_instances[rows], self.gt_semantics[rows],
                               self.gt_instances[rows], self.pixels[rows])

    def without_gt_void(self) -> "SegmentOverlaps":
        """Drop the pixels whose GT class is 0 (void), as the reference protocol does before anything else."""
        return self.select(self.gt_semantics != 0)


def _group_rows(columns: Int[np.ndarray, "R 4"], pixels: Int[np.ndarray, " R"]) -> SegmentOverlaps:
    """Sum the pixel counts of identical rows."""
    if columns.shape[0] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return SegmentOverlaps(empty, empty, empty, empty, empty)
    _, first, index = np.unique(_row_keys(columns), return_index=True, return_inverse=True)
    index = index.reshape(-1)
    counts = np.bincount(index, weights=pixels.astype(np.float64)).astype(np.int64)
    rows = columns[first]
    return SegmentOverlaps(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], counts)


def _row_keys(columns: Int[np.ndarray, "R 4"]) -> Int[np.ndarray, " R"]:
    """One int64 key per row (mixed radix over the observed ranges), equal keys iff equal rows."""
    lows = columns.min(axis=0)
    spans = columns.max(axis=0) - lows + 1
    # Mixed radix fits int64 for PNG inputs (8 + 16 + 8 + 16 bits); exotic ranges fall back to row-wise unique.
    if float(np.prod(spans.astype(np.float64))) < 2.0**62:
        shifted = columns - lows
        keys = shifted[:, 0]
        for axis in range(1, 4):
            keys = keys * spans[axis] + shifted[:, axis]
        return keys.astype(np.int64)
    _, index = np.unique(columns, axis=0, return_inverse=True)
    return index.reshape(-1).astype(np.int64)


def count_overlaps(
    pred_semantics: Integer[np.ndarray, "*shape"],
    pred_instances: Integer[np.ndarray, "*shape"],
    gt_semantics: Integer[np.ndarray, "*shape"],
    gt_instances: Integer[np.ndarray, "*shape"],
) -> SegmentOverlaps:
    """Count every (pred class, pred id, GT class, GT id) quadruple over all pixels of equal-shape label arrays.

    Args:
        pred_semantics: predicted class per pixel.
        pred_instances: predicted instance id per pixel (negative ids are refused: PNG ids are unsigned).
        gt_semantics: ground-truth class per pixel (0 = void).
        gt_instances: ground-truth instance id per pixel.

    Returns:
        The overlap table of those pixels.
    """
    arrays = [np.asarray(a) for a in (pred_semantics, pred_instances, gt_semantics, gt_instances)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise UserError(f"label arrays must share one shape, got {[a.shape for a in arrays]}")
    for name, array in zip(("pred_semantics", "pred_instances", "gt_semantics", "gt_instances"), arrays):
        if not np.issubdtype(array.dtype, np.integer):
            raise UserError(f"{name} must hold integer labels, got dtype {array.dtype}")
        if array.size and int(array.min()) < 0:
            raise UserError(f"{name} holds negative labels (min {int(array.min())}); labels are unsigned PNG values")
    columns = np.stack([a.reshape(-1).astype(np.int64) for a in arrays], axis=1)  # [P, 4]
    return _group_rows(columns, np.ones(columns.shape[0], dtype=np.int64))


def concat_overlaps(tables: Sequence[SegmentOverlaps]) -> SegmentOverlaps:
    """Sum overlap tables (e.g. of the frames of a scene): the table of all their pixels together."""
    if not tables:
        return _group_rows(np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64))
    columns = np.concatenate([t.columns() for t in tables], axis=0)
    pixels = np.concatenate([t.pixels for t in tables])
    return _group_rows(columns, pixels)
