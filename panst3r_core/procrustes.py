"""Weighted Procrustes (rigid and similarity), differentiable: the one fit behind the cameras recovered from
pointmaps (`geometry`), the pose loss and the training metrics.

The pose loss (``losses.relative_pose_loss``) back-propagates through the rotation fitted between a view's local
and global pointmaps. Autograd through ``torch.linalg.svd`` differentiates ``U`` and ``V`` separately, with terms
``1 / (s_i^2 - s_j^2)`` that blow up (inf - inf = NaN) whenever two singular values coincide, although the rotation
``R = U V^T`` itself is smooth there. :class:`_SpecialProcrustes` uses the closed-form derivative of the rotation,
whose only denominators are ``s_i + s_j`` (the sign-corrected singular values): finite unless the fit is genuinely
ambiguous (rank <= 1, or a reflection with two equal weak axes). ``_special_procrustes`` is the autograd-through-SVD
twin it is tested against, and ``_weighted_procrustes`` a float64 twin by Horn's quaternion method.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from panst3r_splat.core.transforms import Similarity


_DENOMINATOR_FLOOR = 1e-4
"""Floor of ``s_i + s_j`` relative to the largest singular value in the backward pass: only near-degenerate fits
(all points on a line, or a reflection ambiguity) reach it, and there the gradient is large but finite."""


def _signed_svd(M: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``M = U' diag(s') V^T`` with ``det(U' V^T) = +1``: the weakest axis of ``U`` and ``s`` flipped if needed."""
    U, S, Vh = torch.linalg.svd(M)
    det = torch.linalg.det(U @ Vh)
    sign = torch.ones_like(S)
    sign[..., -1] = torch.where(det < 0, -1.0, 1.0).to(S.dtype)
    return U * sign[..., None, :], S * sign, Vh.transpose(-1, -2)


class _SpecialProcrustes(torch.autograd.Function):
    """``R = argmax_{R in SO(3)} tr(R^T M)`` with the closed-form backward of the polar factor.

    With the signed SVD ``M = U diag(s) V^T`` (``det(U V^T) = 1``), ``dR = U X V^T`` where the skew matrix ``X``
    has ``X_ij = (P_ij - P_ji) / (s_i + s_j)``, ``P = U^T dM V``. Hence for an upstream gradient ``G``:
    ``dL/dM = U B V^T`` with ``A = U^T G V`` and ``B_ij = (A_ij - A_ji) / (s_i + s_j)``.
    """

    @staticmethod
    def forward(ctx, M: Tensor) -> Tensor:  # type: ignore[override]
        U, s, V = _signed_svd(M)
        ctx.save_for_backward(U, s, V)
        return U @ V.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad_R: Tensor) -> Tensor:  # type: ignore[override]
        U, s, V = ctx.saved_tensors
        A = U.transpose(-1, -2) @ grad_R @ V
        denom = s[..., :, None] + s[..., None, :]
        floor = _DENOMINATOR_FLOOR * s[..., :1, None].abs() + torch.finfo(s.dtype).tiny
        B = (A - A.transpose(-1, -2)) / torch.maximum(denom, floor)
        return U @ B @ V.transpose(-1, -2)


def special_procrustes(M: Float[Tensor, "*B 3 3"]) -> Float[Tensor, "*B 3 3"]:
    """The proper rotation closest to ``M`` (maximises ``tr(R^T M)``), differentiable with a stable backward.

    Computed in float64 (3x3 matrices: negligible cost) and returned in ``M``'s dtype.
    """
    return _SpecialProcrustes.apply(M.double()).to(M.dtype)


def _special_procrustes(M: Float[Tensor, "*B 3 3"]) -> Float[Tensor, "*B 3 3"]:
    """Reference twin of :func:`special_procrustes`: plain autograd through ``torch.linalg.svd``."""
    U, s, V = _signed_svd(M)
    return U @ V.transpose(-1, -2)


def weighted_procrustes(
    src: Float[Tensor, "*B N 3"],
    dst: Float[Tensor, "*B N 3"],
    weights: Float[Tensor, "*B N"],
    *,
    with_scale: bool = False,
) -> Similarity:
    """Weighted Kabsch (``with_scale=False``) or Umeyama fit minimising ``sum_i w_i |s R src_i + t - dst_i|^2``.

    Differentiable in ``src``, ``dst`` and ``weights``. Weights need not be normalised; a fit whose weights sum to
    zero returns the identity rotation and a translation from an all-zero centroid, so callers must mask such fits.
    """
    w = weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    src_mean = (w[..., None] * src).sum(-2)
    dst_mean = (w[..., None] * dst).sum(-2)
    src_c = src - src_mean[..., None, :]
    dst_c = dst - dst_mean[..., None, :]
    cov = torch.einsum("...n,...ni,...nj->...ij", w, dst_c, src_c)  # [*B, 3, 3] = sum w dst src^T
    R = special_procrustes(cov)
    if with_scale:
        src_var = (w * src_c.square().sum(-1)).sum(-1)
        scale = (R * cov).sum((-1, -2)) / src_var.clamp_min(torch.finfo(src_var.dtype).tiny)
    else:
        scale = torch.ones(src.shape[:-2], dtype=src.dtype, device=src.device)
    t = dst_mean - scale[..., None] * (R @ src_mean[..., None])[..., 0]
    return Similarity(scale=scale, R=R, t=t)


def _quaternion_procrustes(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None, with_scale: bool
) -> tuple[float, np.ndarray, np.ndarray]:
    """Reference twin: Horn's closed-form quaternion solution (a different algorithm from the SVD one), float64."""
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    w = np.ones(len(src)) if weights is None else weights.astype(np.float64)
    w = w / w.sum()
    src_mean = (w[:, None] * src).sum(0)
    dst_mean = (w[:, None] * dst).sum(0)
    a = src - src_mean
    b = dst - dst_mean
    S = (w[:, None, None] * a[:, :, None] * b[:, None, :]).sum(0)  # S[i, j] = sum w a_i b_j
    N = np.array(
        [
            [S[0, 0] + S[1, 1] + S[2, 2], S[1, 2] - S[2, 1], S[2, 0] - S[0, 2], S[0, 1] - S[1, 0]],
            [S[1, 2] - S[2, 1], S[0, 0] - S[1, 1] - S[2, 2], S[0, 1] + S[1, 0], S[2, 0] + S[0, 2]],
            [S[2, 0] - S[0, 2], S[0, 1] + S[1, 0], -S[0, 0] + S[1, 1] - S[2, 2], S[1, 2] + S[2, 1]],
            [S[0, 1] - S[1, 0], S[2, 0] + S[0, 2], S[1, 2] + S[2, 1], -S[0, 0] - S[1, 1] + S[2, 2]],
        ]
    )
    eigvals, eigvecs = np.linalg.eigh(N)
    qw, qx, qy, qz = eigvecs[:, np.argmax(eigvals)]
    R = np.array(
        [
            [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
            [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
            [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
        ]
    )
    scale = 1.0
    if with_scale:
        rotated = a @ R.T
        scale = float((w * (rotated * b).sum(1)).sum() / (w * (a * a).sum(1)).sum())
    t = dst_mean - scale * R @ src_mean
    return scale, R, t


def _weighted_procrustes(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray, *, with_scale: bool = False
) -> tuple[np.ndarray, np.ndarray, float]:
    """Reference twin for one fit: Horn's (1987) quaternion method in float64, a different algorithm from the SVD
    (also the twin of `geometry.rigid_procrustes` and `geometry.umeyama_sim3`)."""
    scale, R, t = _quaternion_procrustes(src, dst, weights, with_scale)
    return R, t, scale
