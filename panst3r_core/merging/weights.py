"""The QUBO weight matrix of the mask selection (PanSt3R paper Eq. 4, official ``weight_from_masks``).

``A_ii = -Q_i / (H W V)`` and ``A_ij = (1 + penalty) / 2 * Q_ij / (H W V)``, with the soft area
``Q_i = sum_p M_i(p)`` and the soft overlap ``Q_ij = sum_p min(M_i(p), M_j(p))`` over every pixel of every view, M the
sigmoid masks upsampled to the image size. The official code loops over queries and takes the minimum of one mask
against all earlier ones at full resolution: an i x V x H x W temporary per query on top of the Q x V x H x W masks,
so it is memory bound. Here the views stream one at a time, and within a view the pair sums run on tiles of
(block x block queries) x (chunk pixels) whose temporary stays cache sized; per-tile float32 sums go into a float64
accumulator. Only one triangle of query blocks is computed (min is symmetric).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm import tqdm

from panst3r_splat.core.merging.masks import _work_dtype, view_mask_probs
from panst3r_splat.core.merging.types import WeightMode

_BLOCK = 50
"""Queries per tile side (200 queries make 4 x 4 blocks, 10 of them in the lower triangle)."""
_TILE_ELEMENTS = {"cpu": 1 << 21, "cuda": 1 << 26}
"""Elements of the block x block x chunk temporary: cache sized on CPU, large on a GPU."""


def _accumulate_pair_min_sums(probs: Float[Tensor, "Q P"], acc: Float[Tensor, "Q Q"]) -> None:
    """``acc[i, j] += sum_p min(probs[i, p], probs[j, p])`` for query blocks on and below the diagonal."""
    Q, P = probs.shape
    block = min(_BLOCK, Q)
    chunk = max(1, _TILE_ELEMENTS.get(probs.device.type, 1 << 21) // (block * block))
    buf = torch.empty(block, block, min(chunk, P), dtype=probs.dtype, device=probs.device)
    starts = range(0, Q, block)
    for p0 in range(0, P, chunk):
        tile = probs[:, p0 : p0 + chunk]  # [Q, c]
        c = tile.shape[1]
        for i0 in starts:
            rows = tile[i0 : i0 + block, None, :]
            for j0 in range(0, i0 + 1, block):
                cols = tile[None, j0 : j0 + block, :]
                out = buf[: rows.shape[0], : cols.shape[1], :c]
                torch.minimum(rows, cols, out=out)
                acc[i0 : i0 + block, j0 : j0 + block] += out.sum(-1)


def _weights_from_sums(sums: Float[Tensor, "Q Q"], penalty: float, num_pixels: int) -> Float[Tensor, "Q Q"]:
    """A from the lower block triangle of the soft area (diagonal) / overlap (off-diagonal) sums."""
    lower = torch.tril(sums)
    overlaps = lower + torch.tril(sums, -1).T
    A = overlaps * ((1.0 + penalty) / 2.0)
    A.diagonal().copy_(-overlaps.diagonal())
    return A / num_pixels


def qubo_weights(
    mask_logits: Float[Tensor, "V Q h w"],
    image_hw: tuple[int, int],
    *,
    penalty: float = 1.0,
    mode: WeightMode = "exact",
) -> Float[Tensor, "Q Q"]:
    """The official QUBO matrix ``A`` (float64, on the masks' device), streamed over views.

    Args:
        mask_logits: mask logits at mask resolution (h = H/2, w = W/2), before the sigmoid.
        image_hw: (H, W) the masks are upsampled to in ``"exact"`` mode.
        penalty: overlap weight, lambda_p = 1 + penalty.
        mode: ``"exact"`` (official, full resolution) or ``"mask_res"`` (no upsampling: about 4x faster, approximate).
    """
    V, Q = mask_logits.shape[:2]
    if mode not in ("exact", "mask_res"):
        raise ValueError(f"mode must be 'exact' or 'mask_res', got {mode!r}")
    acc = torch.zeros(Q, Q, dtype=torch.float64, device=mask_logits.device)
    for v in tqdm(range(V), desc="QUBO weights", unit="view", disable=None, leave=False):
        if mode == "exact":
            probs = view_mask_probs(mask_logits, v, image_hw)
        else:
            probs = mask_logits[v].to(_work_dtype(mask_logits.dtype)).sigmoid()
        _accumulate_pair_min_sums(probs.reshape(Q, -1), acc)
    num_pixels = V * (image_hw[0] * image_hw[1] if mode == "exact" else mask_logits.shape[2] * mask_logits.shape[3])
    return _weights_from_sums(acc, penalty, num_pixels)


def _weight_from_masks(masks: Float[Tensor, "Q V H W"], penalty: float = 1.0) -> Float[Tensor, "Q Q"]:
    """Reference twin of ``qubo_weights``: the official loop on the full mask tensor, in float64."""
    Q, V, H, W = masks.shape
    flat = masks.reshape(Q, -1).to(torch.float64)
    A = torch.zeros(Q, Q, dtype=torch.float64, device=masks.device)
    for i in range(Q):
        A[i, i] = -flat[i].sum()
        for j in range(i):
            overlap = torch.minimum(flat[i], flat[j]).sum()
            A[i, j] = A[j, i] = (1.0 + penalty) / 2.0 * overlap
    return A / (H * W * V)
