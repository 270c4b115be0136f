"""Nearest-neighbour resize of label maps, pixel-identical to Pillow's ``Image.resize(size, Image.NEAREST)``.

Panoptic Lifting's evaluation (``read_and_resize_labels`` in ``dataset/preprocessing/preprocess_scannet.py``) resizes
every label PNG to 512x512 with Pillow before scoring, so numbers only compare with published ones when our resize
picks the very same source pixels. Pillow's nearest resize is an affine transform sampled at output pixel centres:
output pixel ``x`` reads source pixel ``floor(x0 + x * s)`` with ``s = in / out`` and ``x0 = s / 2``, where the
running coordinate is accumulated by repeated addition in double precision (``ImagingScaleAffine`` in Pillow's
``libImaging/Geometry.c``, the path taken for 8-bit ``L`` and 32-bit ``I`` images). For the reference size 512 (any
power of two) ``s`` is a dyadic rational, every addition is exact, and the result equals the exact
``floor((2x + 1) * in / (2 * out))`` — and Pillow's other path (``I;16`` images, a direct product) agrees too.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Int, Shaped

REFERENCE_SIZE = 512
"""Side of the square the reference protocol resizes every label map to."""


def pil_nearest_indices(n_in: int, n_out: int) -> Int[np.ndarray, " n_out"]:
    """Source index of every output pixel along one axis, as Pillow's nearest resize chooses it.

    Args:
        n_in: input length in pixels.
        n_out: output length in pixels.

    Returns:
        int64 indices into the input axis, one per output pixel.
    """
    if n_in <= 0 or n_out <= 0:
        raise ValueError(f"resize lengths must be positive, got {n_in} -> {n_out}")
    step = n_in / n_out
    coords = np.full(n_out, step, dtype=np.float64)
    coords[0] = step * 0.5
    # np.add.accumulate adds left to right (no pairwise summation), like Pillow's `xo += a[0]` loop.
    coords = np.add.accumulate(coords)
    return np.minimum(np.floor(coords).astype(np.int64), n_in - 1)


def resize_nearest(labels: Shaped[np.ndarray, "H W"], height: int, width: int) -> Shaped[np.ndarray, "h w"]:
    """Resize a label map with Pillow's nearest-neighbour rule (no value is ever mixed).

    Args:
        labels: [H, W] integer label map.
        height: output height.
        width: output width.

    Returns:
        [height, width] label map of the same dtype.
    """
    if labels.ndim != 2:
        raise ValueError(f"a label map must be 2-D [H, W], got shape {labels.shape}")
    if labels.shape == (height, width):
        return labels.copy()
    rows = pil_nearest_indices(labels.shape[0], height)
    cols = pil_nearest_indices(labels.shape[1], width)
    return labels[rows[:, None], cols[None, :]]
