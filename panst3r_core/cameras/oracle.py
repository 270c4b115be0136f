"""Ground-truth inputs for the camera solver, from depth and poses (synthetic scenes): local pointmaps, exact
matches, corrupted matches, and stand-in dense descriptors. For tests and the camera evaluation only; a predicting
run never sees these.

Frames: ``T_world_cam`` camera-to-world, OpenCV axes; ``depth`` is z-depth (0 = nothing hit); pixel convention: integer
coordinates are pixel centres.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from jaxtyping import Float

from panst3r_splat.core.cameras.matching import PairMatches


def local_pointmaps(depth: Float[np.ndarray, "V H W"], K: Float[np.ndarray, "V 3 3"]) -> Float[np.ndarray, "V H W 3"]:
    """``depth * K^-1 (x, y, 1)`` per pixel, camera frame; NaN where the depth is 0."""
    num_views, height, width = depth.shape
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    pix = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # [H, W, 3]
    rays = np.einsum("vij,hwj->vhwi", np.linalg.inv(K), pix)
    pts = rays * depth[..., None].astype(np.float64)
    pts[depth <= 0] = np.nan
    return pts


def world_points(depth, K, T_world_cam) -> Float[np.ndarray, "V H W 3"]:
    """The local pointmaps placed by the true cameras."""
    pts = local_pointmaps(depth, K)
    return np.einsum("vij,vhwj->vhwi", T_world_cam[:, :3, :3], pts) + T_world_cam[:, None, None, :3, 3]


def _project(X: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Y = (X - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]  # camera frame
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = Y[:, :2] / Y[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
    return uv, Y[:, 2]


def ground_truth_matches(
    depth: Float[np.ndarray, "V H W"],
    K: Float[np.ndarray, "V 3 3"],
    T_world_cam: Float[np.ndarray, "V 4 4"],
    *,
    max_per_pair: int = 400,
    occlusion_tolerance: float = 0.02,
    seed: int = 0,
) -> list[PairMatches]:
    """Exact directed matches for every ordered view pair: grid pixels of ``a`` whose surface point is visible in
    ``b`` (in front, inside, not occluded by more than ``occlusion_tolerance`` relative depth), at their exact
    sub-pixel position in ``b``. At most ``max_per_pair`` random pixels per ordered pair."""
    rng = np.random.default_rng(seed)
    num_views, height, width = depth.shape
    X = world_points(depth, K, T_world_cam)
    out = []
    for a, b in itertools.permutations(range(num_views), 2):
        ys, xs = np.nonzero(depth[a] > 0)
        uv, z = _project(X[a, ys, xs], K[b], T_world_cam[b])
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
        idx = np.flatnonzero(inside)
        near = np.rint(uv[idx]).astype(np.int64)
        seen = np.abs(depth[b][near[:, 1], near[:, 0]] - z[idx]) <= occlusion_tolerance * z[idx]
        idx = idx[seen]
        if len(idx) > max_per_pair:
            idx = np.sort(rng.choice(idx, max_per_pair, replace=False))
        out.append(PairMatches(a, b, np.stack([xs[idx], ys[idx]], axis=1), uv[idx]))
    return out


def corrupt_matches(
    matches: list[PairMatches], *, outlier_share: float, noise_px: float, image_hw: tuple[int, int], seed: int = 0
) -> list[PairMatches]:
    """Gaussian pixel noise (``noise_px`` standard deviation) on ``uv_b`` and a share of the matches replaced by
    uniformly random positions in ``b``."""
    rng = np.random.default_rng(seed)
    height, width = image_hw
    out = []
    for m in matches:
        uv = m.uv_b + rng.normal(0.0, noise_px, m.uv_b.shape)
        bad = rng.random(len(m)) < outlier_share
        uv[bad] = rng.uniform([0, 0], [width - 1, height - 1], (int(bad.sum()), 2))
        out.append(PairMatches(m.view_a, m.view_b, m.pixels_a, np.clip(uv, 0, [width - 1, height - 1])))
    return out


def synthetic_descriptors(
    world_pts: Float[np.ndarray, "V H W 3"],
    *,
    dim: int = 64,
    length_scale: float = 0.05,
    seed: int = 0,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Stand-in dense descriptors: L2-normalised random Fourier features of each pixel's world point (Rahimi & Recht
    2007), so descriptor dot products approximate a Gaussian kernel of 3D distance with ``length_scale`` (metres).
    Confidence 2 where the point exists; where it does not, confidence 1 and a zero descriptor (never matched). Returns per-view lists as the model
    would (``(H, W, D)`` and ``(H, W)`` float32 tensors)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, 1.0 / length_scale, (3, dim))
    phase = rng.uniform(0.0, 2 * np.pi, dim)
    valid = np.isfinite(world_pts).all(axis=-1)
    feats = np.cos(np.nan_to_num(world_pts) @ W + phase)
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    feats[~valid] = 0.0
    conf = np.where(valid, 2.0, 1.0)
    return ([torch.from_numpy(f.astype(np.float32)) for f in feats],
            [torch.from_numpy(c.astype(np.float32)) for c in conf])


def distort_pointmaps(
    pts3d_local: Float[np.ndarray, "V H W 3"], *, focal_factor: float, depth_noise: float, seed: int = 0
) -> Float[np.ndarray, "V H W 3"]:
    """Local pointmaps with the errors a weak model makes: a focal off by ``focal_factor`` (x and y divided by it, so
    the Weiszfeld focal comes out ``focal_factor`` times the true one) and a smooth multiplicative depth error of
    relative size ``depth_noise`` (a random 4x3 field, bilinearly upsampled, per view)."""
    rng = np.random.default_rng(seed)
    num_views, height, width, _ = pts3d_local.shape
    coarse = rng.normal(0.0, depth_noise, (num_views, 3, 4))
    ys = np.linspace(0, 2, height)[:, None]
    xs = np.linspace(0, 3, width)[None, :]
    y0, x0 = np.minimum(ys.astype(int), 1), np.minimum(xs.astype(int), 2)
    fy, fx = ys - y0, xs - x0
    field = ((1 - fy) * (1 - fx) * coarse[:, y0, x0] + (1 - fy) * fx * coarse[:, y0, x0 + 1]
             + fy * (1 - fx) * coarse[:, y0 + 1, x0] + fy * fx * coarse[:, y0 + 1, x0 + 1])  # [V, H, W]
    out = np.array(pts3d_local, dtype=np.float64, copy=True)
    out[..., :2] /= focal_factor
    return out * (1.0 + field)[..., None]
