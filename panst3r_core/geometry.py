"""Cameras and point clouds from PanSt3R / MUSt3R pointmaps (method.md section 4).

The network predicts, per pixel, a point in the world frame (``pts3d``, the camera frame of keyframe #0), the same
point in the view's own camera frame (``pts3d_local``, OpenCV axes) and a confidence ``conf = 1 + exp(raw) >= 1``.
Cameras are recovered exactly as the official demo does (tools/demo_panst3r.py:258-277), with no PnP:

- focal: dust3r ``estimate_focal_knowing_depth(focal_mode='weiszfeld')`` on the local pointmap, principal point fixed;
- camera-to-world: confidence-weighted rigid Procrustes (``roma.rigid_points_registration``, weights ``conf - 1``,
  no scaling) from the local to the global points.

Pixel convention (the project's, see CLI.md): integer pixel coordinates are pixel centres, so the geometric image
centre is ``((W - 1) / 2, (H - 1) / 2)``. The official code builds its pixel grid with the same integer coordinates
(dust3r ``xy_grid``) but fixes the principal point at ``(W / 2, H / 2)``: in our convention that is half a pixel right
of and below the geometric centre. Its ``K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]]`` is therefore already expressed in
our convention, with ``cx = W / 2``; no shift is needed to convert it. :class:`PrincipalPoint` selects which of the two
a caller wants: ``OFFICIAL`` reproduces the official numbers (use it with the official checkpoints, whose training
crops put the principal point near ``W / 2``), ``CENTER`` is the geometric centre (our own synthetic data is
rendered with it, and a pointmap of a camera with that ``K`` gives back its focal exactly).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from panst3r_splat.core.procrustes import _quaternion_procrustes, weighted_procrustes
from panst3r_splat.core.transforms import Similarity

log = logging.getLogger(__name__)

FOCAL_IRLS_ITERATIONS = 10
"""Weiszfeld iterations of dust3r ``estimate_focal_knowing_depth``."""
MIN_FOCAL_FACTOR = 0.5
MAX_FOCAL_FACTOR = 3.5
"""dust3r clamps the focal to ``[0.5, 3.5] * max(H, W) / (2 tan(30 deg))`` (a 60 degree field of view is 1.0)."""


class PrincipalPoint(enum.Enum):
    """Where the principal point is fixed when the focal is estimated (see the module docstring)."""

    CENTER = "center"
    """Geometric image centre ``((W - 1) / 2, (H - 1) / 2)``: the project's convention."""
    OFFICIAL = "official"
    """``(W / 2, H / 2)`` on the integer pixel grid, as dust3r / MUSt3R / PanSt3R compute it."""


def principal_point(height: int, width: int, mode: PrincipalPoint = PrincipalPoint.CENTER) -> tuple[float, float]:
    """``(cx, cy)`` of an ``height x width`` image in the project's pixel convention."""
    if mode is PrincipalPoint.CENTER:
        return ((width - 1) / 2.0, (height - 1) / 2.0)
    return (width / 2.0, height / 2.0)


def _pixel_grid(height: int, width: int, like: Tensor) -> Float[Tensor, "HW 2"]:
    """Integer pixel coordinates ``(x, y)`` in row-major order (dust3r ``xy_grid``)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=like.device, dtype=like.dtype),
        torch.arange(width, device=like.device, dtype=like.dtype),
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def estimate_focal_weiszfeld(
    pts3d_local: Float[Tensor, "*batch H W 3"],
    pp: tuple[float, float] | Float[Tensor, "*batch 2"] | None = None,
    *,
    min_focal_factor: float = MIN_FOCAL_FACTOR,
    max_focal_factor: float = MAX_FOCAL_FACTOR,
) -> Float[Tensor, "*batch"]:
    """Single (square-pixel) focal from a local pointmap, as dust3r ``estimate_focal_knowing_depth(weiszfeld)``.

    Minimises ``sum_pixels |uv - pp - f * (x, y) / z|`` over ``f`` by iteratively re-weighted least squares started
    from the closed-form L2 solution (10 iterations, weights ``1 / max(dist, 1e-8)``), then clamps ``f`` to
    ``[0.5, 3.5] * max(H, W) / (2 tan 30deg)``. No confidence weighting, as upstream.

    Args:
        pts3d_local: points in each view's camera frame (OpenCV axes, z forward).
        pp: principal point ``(cx, cy)`` in the project's pixel convention; ``None`` = the geometric image centre.
            Pass ``principal_point(H, W, PrincipalPoint.OFFICIAL)`` for the official numbers.
        min_focal_factor, max_focal_factor: clamp range in units of the 60-degree-field-of-view focal.

    Returns:
        The focal in pixels, one per leading index.
    """
    *batch, height, width, three = pts3d_local.shape
    if three != 3:
        raise ValueError(f"pts3d_local must end with 3 coordinates, got shape {tuple(pts3d_local.shape)}")
    pts = pts3d_local.reshape(-1, height * width, 3)  # [B, HW, 3]
    if pp is None:
        pp = principal_point(height, width)
    pp_t = torch.as_tensor(pp, dtype=pts.dtype, device=pts.device).reshape(-1, 1, 2)  # [B or 1, 1, 2]
    pixels = _pixel_grid(height, width, pts)[None] - pp_t  # [B, HW, 2]

    # Upstream replaces +-inf (points at z = 0) by 0 and, through nan_to_num's default, NaN by 0 too.
    xy_over_z = (pts[..., :2] / pts[..., 2:3]).nan_to_num(posinf=0.0, neginf=0.0)
    dot_xy_px = (xy_over_z * pixels).sum(dim=-1)  # [B, HW]
    dot_xy_xy = xy_over_z.square().sum(dim=-1)
    focal = dot_xy_px.mean(dim=1) / dot_xy_xy.mean(dim=1)  # closed-form L2 start
    for _ in range(FOCAL_IRLS_ITERATIONS):
        dist = (pixels - focal.view(-1, 1, 1) * xy_over_z).norm(dim=-1)
        weights = dist.clip(min=1e-8).reciprocal()
        focal = (weights * dot_xy_px).mean(dim=1) / (weights * dot_xy_xy).mean(dim=1)

    focal_base = max(height, width) / (2.0 * math.tan(math.radians(60.0) / 2.0))
    focal = focal.clip(min=min_focal_factor * focal_base, max=max_focal_factor * focal_base)
    return focal.reshape(batch)


def _estimate_focal_weiszfeld(pts3d_local: np.ndarray, pp: tuple[float, float]) -> float:
    """Reference twin: one view, float64 NumPy, pixel by pixel, written from the dust3r description."""
    height, width, _ = pts3d_local.shape
    pts = pts3d_local.astype(np.float64)
    rows = []
    for y in range(height):
        for x in range(width):
            px, py, pz = pts[y, x]
            with np.errstate(divide="ignore", invalid="ignore"):
                a, b = px / pz, py / pz
            a = 0.0 if not np.isfinite(a) else a
            b = 0.0 if not np.isfinite(b) else b
            rows.append((x - pp[0], y - pp[1], a, b))
    u, v, a, b = (np.array(c) for c in zip(*rows))
    dot_xy_px = a * u + b * v
    dot_xy_xy = a * a + b * b
    focal = dot_xy_px.mean() / dot_xy_xy.mean()
    for _ in range(FOCAL_IRLS_ITERATIONS):
        dist = np.hypot(u - focal * a, v - focal * b)
        w = 1.0 / np.maximum(dist, 1e-8)
        focal = (w * dot_xy_px).mean() / (w * dot_xy_xy).mean()
    focal_base = max(height, width) / (2.0 * np.tan(np.deg2rad(60.0) / 2.0))
    return float(np.clip(focal, MIN_FOCAL_FACTOR * focal_base, MAX_FOCAL_FACTOR * focal_base))


def intrinsics_from_focal(
    focal: Float[Tensor, "*batch"],
    height: int,
    width: int,
    mode: PrincipalPoint = PrincipalPoint.CENTER,
) -> Float[Tensor, "*batch 3 3"]:
    """Pinhole ``K`` with square pixels and the principal point of ``mode`` (project pixel convention)."""
    cx, cy = principal_point(height, width, mode)
    K = torch.zeros(*focal.shape, 3, 3, dtype=focal.dtype, device=focal.device)
    K[..., 0, 0] = focal
    K[..., 1, 1] = focal
    K[..., 0, 2] = cx
    K[..., 1, 2] = cy
    K[..., 2, 2] = 1.0
    return K


def _checked_weights(src: Tensor, weights: Tensor | None) -> Float[Tensor, "*batch P"]:
    """Point weights normalised to sum to one per fit (uniform where none are given or all are zero)."""
    if weights is None:
        weights = torch.ones(src.shape[:-1], dtype=src.dtype, device=src.device)
    if weights.shape != src.shape[:-1]:
        raise ValueError(f"weights must have shape {tuple(src.shape[:-1])}, got {tuple(weights.shape)}")
    if bool((weights < 0).any()):
        raise ValueError("point weights must be non-negative")
    weights = weights.to(src.dtype)
    total = weights.sum(dim=-1, keepdim=True)
    if bool((total <= 0).any()):
        log.warning("all point weights are zero for some fit; using uniform weights there")
        weights = torch.where(total > 0, weights, torch.ones_like(weights))
        total = weights.sum(dim=-1, keepdim=True)
    return weights / total


def rigid_procrustes(
    src: Float[Tensor, "*batch P 3"],
    dst: Float[Tensor, "*batch P 3"],
    weights: Float[Tensor, "*batch P"] | None = None,
) -> tuple[Float[Tensor, "*batch 3 3"], Float[Tensor, "*batch 3"]]:
    """Weighted Kabsch fit: ``(R, t)`` minimising ``sum_i w_i |R src_i + t - dst_i|^2``, no scaling.

    Same as ``roma.rigid_points_registration(src, dst, weights, compute_scaling=False)``: weights are normalised to
    sum to one, ``R`` is the proper rotation closest to the weighted cross-covariance. Points with weight 0 do not
    influence the result. Where every weight of a fit is zero, uniform weights are used (with a warning).
    """
    if src.shape != dst.shape or src.shape[-1] != 3:
        raise ValueError(f"src and dst must both be [..., P, 3], got {tuple(src.shape)} and {tuple(dst.shape)}")
    fit = weighted_procrustes(src, dst, _checked_weights(src, weights))
    return fit.R, fit.t


def _rigid_procrustes(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None):
    """Reference twin of :func:`rigid_procrustes` for one fit (quaternion method, float64)."""
    _, R, t = _quaternion_procrustes(src, dst, weights, with_scale=False)
    return R, t


def umeyama_sim3(
    src: Float[Tensor, "*batch P 3"],
    dst: Float[Tensor, "*batch P 3"],
    weights: Float[Tensor, "*batch P"] | None = None,
) -> Similarity:
    """Weighted Umeyama (1991) similarity ``dst ~ s R src + t`` (as roma with ``compute_scaling=True``).

    Used to bring predicted cameras into a dataset's frame (camera centres as the point sets). At least 2 points
    whose source positions are not all equal are needed; with fewer than 3 non-collinear points the rotation about
    their common line is not determined and the SVD picks one.
    """
    if src.shape != dst.shape or src.shape[-1] != 3:
        raise ValueError(f"src and dst must both be [..., P, 3], got {tuple(src.shape)} and {tuple(dst.shape)}")
    if src.shape[-2] < 2:
        raise ValueError(f"a similarity needs at least 2 corresponding points, got {src.shape[-2]}")
    weights = _checked_weights(src, weights)
    src_mean = (weights[..., None] * src).sum(dim=-2)
    sigma2_src = (weights * (src - src_mean[..., None, :]).square().sum(dim=-1)).sum(dim=-1)
    if bool((sigma2_src <= torch.finfo(src.dtype).tiny).any()):
        raise ValueError("cannot estimate a scale: the source points all coincide (give at least 2 distinct points)")
    fit = weighted_procrustes(src, dst, weights, with_scale=True)
    residual = (weights * (fit.apply(src) - dst).square().sum(dim=-1)).sum(dim=-1).sqrt()
    return dataclasses.replace(fit, residual=residual)


def _umeyama_sim3(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None):
    """Reference twin of :func:`umeyama_sim3` for one fit (quaternion rotation + closed-form scale, float64)."""
    s, R, t = _quaternion_procrustes(src, dst, weights, with_scale=True)
    return s, R, t


def camera_from_pointmaps(
    pts3d: Float[Tensor, "V H W 3"],
    pts3d_local: Float[Tensor, "V H W 3"],
    conf: Float[Tensor, "V H W"],
    *,
    principal_point_mode: PrincipalPoint = PrincipalPoint.CENTER,
) -> tuple[Float[Tensor, "V 3 3"], Float[Tensor, "V 4 4"]]:
    """Intrinsics and camera-to-world pose of every view, as the official demo recovers them.

    ``K`` from the Weiszfeld focal of the local pointmap (principal point per ``principal_point_mode``);
    ``T_world_cam`` from the rigid Procrustes fit ``pts3d ~ R pts3d_local + t`` with weights ``conf - 1``
    (tools/demo_panst3r.py:258-277). Computed in float32 at least, returned in the inputs' dtype.
    """
    n_views, height, width, _ = pts3d.shape
    work = torch.promote_types(pts3d.dtype, torch.float32)
    focal = estimate_focal_weiszfeld(
        pts3d_local.to(work), principal_point(height, width, principal_point_mode)
    )
    K = intrinsics_from_focal(focal, height, width, principal_point_mode)
    R, t = rigid_procrustes(
        pts3d_local.to(work).reshape(n_views, -1, 3),
        pts3d.to(work).reshape(n_views, -1, 3),
        (conf.to(work) - 1.0).clamp_min(0.0).reshape(n_views, -1),
    )
    T_world_cam = torch.zeros(n_views, 4, 4, dtype=work, device=pts3d.device)
    T_world_cam[:, :3, :3] = R
    T_world_cam[:, :3, 3] = t
    T_world_cam[:, 3, 3] = 1.0
    return K.to(pts3d.dtype), T_world_cam.to(pts3d.dtype)


def fused_point_cloud(
    pts3d: Float[Tensor, "V H W 3"],
    colors: Float[Tensor, "V H W 3"] | Tensor,
    conf: Float[Tensor, "V H W"],
    threshold: float = 3.0,
) -> tuple[Float[Tensor, "N 3"], Tensor]:
    """All views' points with ``conf >= threshold`` and their colours, concatenated in view then pixel order.

    The default threshold is the official viewer's and MUSt3R's export default (method.md section 4). ``colors``
    keeps its dtype (uint8 images or float colours).
    """
    if colors.shape != pts3d.shape or conf.shape != pts3d.shape[:-1]:
        raise ValueError(
            f"shapes disagree: pts3d {tuple(pts3d.shape)}, colors {tuple(colors.shape)}, conf {tuple(conf.shape)}"
        )
    keep: Bool[Tensor, "V H W"] = conf >= threshold
    return pts3d[keep], colors[keep]


# ------------------------------------------------------------------------------------------------ depth maps


def local_points(depth: Float[np.ndarray, "V H W"], K: Float[np.ndarray, "V 3 3"]) -> Float[np.ndarray, "V H W 3"]:
    """Points in each camera's frame (OpenCV axes) from z-depth; integer pixel coordinates are pixel centres."""
    V, H, W = depth.shape
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
    cx, cy = K[:, 0, 2, None, None], K[:, 1, 2, None, None]
    x = (u[None] - cx) / fx * depth
    y = (v[None] - cy) / fy * depth
    return np.stack([x, y, depth.astype(np.float64)], axis=-1)


def backproject_depth(depth: Float[np.ndarray, "V H W"], K: Float[np.ndarray, "V 3 3"],
                      T_world_cam: Float[np.ndarray, "V 4 4"]) -> tuple[Float[np.ndarray, "P 3"], np.ndarray]:
    """World points of every pixel with depth > 0 (z-depth, pixel-centre K) and their flat indices into (V, H, W).

    Points come in view, then row-major pixel order.
    """
    V, H, W = depth.shape
    v_idx, rows, cols = np.nonzero(depth > 0)
    local = local_points(depth, K)[v_idx, rows, cols]  # [P, 3], camera frame
    T = T_world_cam[v_idx].astype(np.float64)
    world = np.einsum("pij,pj->pi", T[:, :3, :3], local) + T[:, :3, 3]
    return world, np.ravel_multi_index((v_idx, rows, cols), (V, H, W))


def _backproject_depth(depth: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    """Reference twin of `backproject_depth`: pixel by pixel through the inverse intrinsics."""
    out = []
    for v in range(depth.shape[0]):
        K_inv = np.linalg.inv(K[v])
        for r in range(depth.shape[1]):
            for c in range(depth.shape[2]):
                if depth[v, r, c] > 0:
                    ray = K_inv @ np.array([c, r, 1.0])
                    p = ray / ray[2] * depth[v, r, c]
                    out.append(T_world_cam[v, :3, :3] @ p + T_world_cam[v, :3, 3])
    return np.array(out).reshape(-1, 3)
