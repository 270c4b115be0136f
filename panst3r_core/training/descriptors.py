"""Pixel-level InfoNCE on the dense descriptors (MASt3R's matching loss), with ground-truth correspondences.

For each ordered pair of views ``(a, b)`` of a scene, ``num_queries`` valid pixels of view ``a`` are drawn; the pixel
of view ``b`` that sees the same surface (the nearest valid GT point of ``b`` within ``rel_tol`` times the depth: so
hidden points and points outside view ``b`` have none) is the positive. The candidates of the softmax are the
positives of every query of the pair (MASt3R's in-batch negatives) plus ``num_negatives`` random pixels of view ``b``
and the 8 neighbours of each positive at ``neighbour_step`` pixels (hard negatives that teach pixel accuracy).

The matching confidence ``c >= 1`` weighs each query as DUSt3R's confidence-aware loss does,
``c * nce - alpha * log(c)``: a pixel the descriptors match well (``nce < alpha``) earns a high confidence, which the
camera solver uses to choose the pixels it matches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

NO_MATCH = -1
"""Entry of a correspondence table (pixels here, patches in ``correspondence.py``) without a visible counterpart."""


def pixel_correspondences(
    gt_world: Float[Tensor, "V H W 3"],
    gt_local: Float[Tensor, "V H W 3"],
    valid: Bool[Tensor, "V H W"],
    queries: Int[Tensor, "V P"],
    *,
    rel_tol: float = 0.02,
) -> Int[Tensor, "V V P"]:
    """``m[a, b, i]``: flat pixel index of view ``b`` that sees the surface at pixel ``queries[a, i]`` of view ``a``
    (:data:`NO_MATCH` when hidden, outside view ``b``, invalid, or ``a == b``)."""
    V, H, W, _ = gt_world.shape
    points = torch.where(valid[..., None], gt_world, 0.0).reshape(V, H * W, 3).float()
    depth = gt_local[..., 2].reshape(V, H * W).float()
    flat_valid = valid.reshape(V, H * W)
    out = torch.full((V, V, queries.shape[1]), NO_MATCH, dtype=torch.long, device=valid.device)
    for b in range(V):
        pix_b = flat_valid[b].nonzero().squeeze(1)
        if pix_b.numel() == 0:
            continue
        for a in range(V):
            if a == b:
                continue
            q = queries[a]
            q_ok = flat_valid[a, q] & (depth[a, q] > 0)
            dist, nearest = torch.cdist(points[a, q], points[b, pix_b]).min(dim=1)
            ok = q_ok & (dist < rel_tol * depth[a, q])
            out[a, b] = torch.where(ok, pix_b[nearest], NO_MATCH)
    return out


def sample_query_pixels(valid: Bool[Tensor, "V H W"], num: int, generator: torch.Generator | None) -> Int[Tensor, "V P"]:
    """``num`` random valid pixels per view (flat indices; with replacement when a view has fewer valid pixels,
    any pixel when it has none)."""
    V = valid.shape[0]
    weights = valid.reshape(V, -1).float()
    weights = torch.where(weights.sum(-1, keepdim=True) > 0, weights, torch.ones_like(weights))
    replace = bool((weights.sum(-1) < num).any())
    return torch.multinomial(weights.cpu(), num, replacement=replace, generator=generator).to(valid.device)


def _neighbours(pixels: Int[Tensor, " M"], H: int, W: int, step: int) -> Int[Tensor, " M8"]:
    """The 8 pixels at ``step`` around each pixel (clamped to the image), flat indices."""
    y, x = pixels // W, pixels % W
    offsets = [(dy, dx) for dy in (-step, 0, step) for dx in (-step, 0, step) if dy or dx]
    ny = torch.stack([(y + dy).clamp(0, H - 1) for dy, _ in offsets], dim=1)
    nx = torch.stack([(x + dx).clamp(0, W - 1) for _, dx in offsets], dim=1)
    return (ny * W + nx).reshape(-1)


def descriptor_loss(
    descriptors: Float[Tensor, "V H W D"],
    conf: Float[Tensor, "V H W"],
    queries: Int[Tensor, "V P"],
    matches: Int[Tensor, "V V P"],
    *,
    temperature: float = 0.07,
    conf_alpha: float = 1.0,
    num_negatives: int = 256,
    neighbour_step: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[Float[Tensor, ""], Float[Tensor, ""]]:
    """``(confidence-weighted loss, plain mean InfoNCE)`` over every matched query of every ordered view pair
    (zeros when nothing matches). ``descriptors`` are L2-normalised."""
    V, H, W, D = descriptors.shape
    flat = descriptors.reshape(V, H * W, D)
    flat_conf = conf.reshape(V, H * W)
    weighted, plain = [], []
    for a in range(V):
        for b in range(V):
            keep = matches[a, b] != NO_MATCH
            if a == b or not bool(keep.any()):
                continue
            q, pos = queries[a][keep], matches[a, b][keep]
            rand = torch.randint(0, H * W, (num_negatives,), generator=generator).to(pos.device)
            cand = torch.cat([pos, _neighbours(pos, H, W, neighbour_step), rand])
            logits = flat[a, q] @ flat[b, cand].T / temperature  # [M, M + 8M + R]
            # A candidate equal to the positive pixel (a duplicate) would be a false negative: mask it out.
            same = cand[None, :] == pos[:, None]
            same[torch.arange(len(pos)), torch.arange(len(pos))] = False
            nce = F.cross_entropy(logits.masked_fill(same, float("-inf")), torch.arange(len(pos), device=pos.device),
                                  reduction="none")
            c = flat_conf[a, q]
            weighted.append(c * nce - conf_alpha * c.log())
            plain.append(nce)
    if not weighted:
        zero = descriptors.sum() * 0.0 + conf.sum() * 0.0
        return zero, zero.detach()
    return torch.cat(weighted).mean(), torch.cat(plain).mean().detach()


def _descriptor_nce(descriptors: Tensor, a: int, qa: int, b: int, pos: int, cand: list[int], temperature: float) -> Tensor:
    """Reference twin of one InfoNCE term: explicit log-sum-exp over the candidate pixels (duplicates of the
    positive removed)."""
    V, H, W, D = descriptors.shape
    flat = descriptors.reshape(V, H * W, D)
    others = [c for c in cand if c != pos]
    scores = torch.stack([flat[a, qa] @ flat[b, c] for c in [pos] + others]) / temperature
    return torch.logsumexp(scores, 0) - scores[0]
