"""Training-only cross-view correspondence loss on patch tokens (our addition for training from scratch).

Why: trained from scratch on a CPU budget, the decoder settles on the "copy" solution (every view's global points
equal to its local points, relative rotation error at the no-rotation baseline, training_probe.md). Leaving it needs
the decoder's cross-attention to find the patches of the reference view that show the same surface, which MUSt3R
inherits from CroCo pre-training that we cannot afford. This loss asks for it directly: the tokens of two views at
patches that see the same 3D point must be each other's nearest neighbours among all patches of the other view
(InfoNCE, as MASt3R's matching head, on L2-normalised tokens with a fixed temperature). It adds no parameter and is
computed on features the model has anyway, so checkpoints and inference are unchanged.

Ground-truth matches come from the GT pointmaps alone (no cameras): the 3D point at the centre pixel of a patch of
view ``a`` is looked up among all valid pixels of view ``b``; when the nearest one lies within ``rel_tol`` times the
point's depth it is the same surface (visible and inside view ``b``), and its patch is the target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from panst3r_splat.core.training.descriptors import NO_MATCH, pixel_correspondences


def patch_correspondences(
    gt_world: Float[Tensor, "V H W 3"],
    gt_local: Float[Tensor, "V H W 3"],
    valid: Bool[Tensor, "V H W"],
    patch_size: int,
    *,
    rel_tol: float = 0.03,
) -> Int[Tensor, "V V T"]:
    """``m[a, b, t]``: the patch of view ``b`` that sees the surface at the centre of patch ``t`` of view ``a``.

    Patches are numbered row-major over the ``(H / p, W / p)`` grid, as the encoder's tokens. :data:`NO_MATCH` where
    the centre pixel is invalid, where the point is hidden or outside view ``b`` (nearest point of ``b`` farther than
    ``rel_tol * depth``), and on the diagonal ``a == b``: the pixel correspondences of the patch centres
    (:func:`~panst3r_splat.core.training.descriptors.pixel_correspondences`), mapped to their patches.
    """
    V, H, W, _ = gt_world.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image size {W}x{H} is not a multiple of the patch size {p}")
    gw = W // p
    rows = torch.arange(p // 2, H, p, device=valid.device)
    cols = torch.arange(p // 2, W, p, device=valid.device)
    centres = (rows[:, None] * W + cols[None, :]).reshape(-1).expand(V, -1)  # [V, T] flat pixel indices
    pixels = pixel_correspondences(gt_world, gt_local, valid, centres, rel_tol=rel_tol)
    patches = pixels // W // p * gw + pixels % W // p
    return torch.where(pixels == NO_MATCH, NO_MATCH, patches)


def correspondence_loss(
    tokens: Float[Tensor, "V T D"],
    matches: Int[Tensor, "V V T"],
    *,
    temperature: float = 0.1,
) -> Float[Tensor, ""]:
    """Mean InfoNCE over every matched patch of every ordered pair of views (0 when nothing matches).

    For patch ``t`` of view ``a`` matched to patch ``s`` of view ``b``: cross-entropy of the softmax over all patches
    of view ``b`` of ``cos(tokens[a, t], tokens[b, .]) / temperature`` against ``s``.
    """
    V, T, _ = tokens.shape
    if matches.shape != (V, V, T):
        raise ValueError(f"matches must be {(V, V, T)} for tokens {tuple(tokens.shape)}, got {tuple(matches.shape)}")
    feats = F.normalize(tokens.float(), dim=-1)
    logits = torch.einsum("atd,bsd->abts", feats, feats) / temperature  # [V, V, T, T]
    keep = matches != NO_MATCH
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], matches[keep])


def _correspondence_loss(tokens: Tensor, matches: Tensor, *, temperature: float = 0.1) -> Tensor:
    """Reference twin of :func:`correspondence_loss`: one match at a time."""
    feats = F.normalize(tokens.float(), dim=-1)
    losses = []
    V, T, _ = tokens.shape
    for a in range(V):
        for b in range(V):
            for t in range(T):
                s = int(matches[a, b, t])
                if s == NO_MATCH:
                    continue
                logits = feats[b] @ feats[a, t] / temperature
                losses.append(torch.logsumexp(logits, 0) - logits[s])
    return torch.stack(losses).mean() if losses else tokens.sum() * 0.0
