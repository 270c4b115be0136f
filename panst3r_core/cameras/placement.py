"""Local pointmaps placed under known cameras (issue #17, "known poses"): one scale per view from multi-view
consistency, never from ground-truth depth.

Given each view's camera (`T_world_cam`, `K`, both known: a dataset's poses, a nerfstudio `transforms.json`) and its
local depth `z` (the z of the model's local pointmap, right up to an unknown per-view factor), the view's points are
`X = T_world_cam (s_v z K^-1 [u, v, 1])`. The factor `s_v` comes from 2D correspondences with the other views:

1. SIFT features per image (OpenCV), matched per view pair among the candidates the *known* epipolar geometry
   allows (Sampson distance below `epipolar_px`; mutual nearest neighbours + Lowe's ratio test): no pose is
   estimated, so a few correct matches are enough;
2. each kept match is triangulated with the known cameras (midpoint of the two rays; rays closer than
   `min_angle_deg` to parallel are dropped), which gives its depth in each view in the cameras' units;
3. `s_v` = the densest value of (triangulated depth / local depth at the matched pixel) over the view's matches
   (a mode, not a median: wrong matches along an epipolar line can be the majority, but they scatter).

Depth consistency alone (projecting one view's points into another and comparing depths) cannot fix the scale: a
wall parallel to the baseline looks consistent at any scale, so the photometric correspondences carry it. The
translations fix the scene scale, so the points come out in the cameras' units. A view with fewer than
`min_matches` triangulated matches takes the median world depth of the others (`connected` False, one warning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from jaxtyping import Bool, Float, UInt8

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlacementOptions:
    """Settings of `place_under_cameras`."""

    epipolar_px: float = 1.5
    """Largest Sampson distance (pixels) of a match to the known epipolar geometry."""
    ratio: float = 0.9
    """Lowe's ratio test of the SIFT matching, among the candidates the epipolar geometry allows."""
    min_angle_deg: float = 1.0
    """Smallest angle between the two rays of a triangulated match."""
    min_matches: int = 8
    """Triangulated matches agreeing with its scale (inside the densest window) a view needs for its own scale."""
    mode_width: float = 0.05
    """Width (in log depth ratio) of the window whose densest position gives a view's scale."""
    upscale: int = 2
    """Images are enlarged by this factor before SIFT (low-resolution photos give few keypoints otherwise)."""


@dataclass(frozen=True)
class Placement:
    """The views' scales and their points in the cameras' world frame."""

    scale: Float[np.ndarray, "V"]
    """Factor from each view's local depth to the world units of the cameras."""
    pts3d: Float[np.ndarray, "V H W 3"]
    """World points of every pixel (NaN where the local depth is invalid)."""
    connected: Bool[np.ndarray, "V"]
    """Whether the view's scale came from its own matches (False: the other views' median world depth)."""
    matches: np.ndarray
    """Triangulated matches that agree with each view's scale (inside the densest window), (V,) int."""
    spread: Float[np.ndarray, "V"]
    """Median absolute deviation of the view's log depth ratios (how well one scale fits its matches)."""


def pixel_rays(K: Float[np.ndarray, "V 3 3"], height: int, width: int) -> Float[np.ndarray, "V H W 3"]:
    """`K^-1 [u, v, 1]` of every pixel (integer coordinates at pixel centres), scaled to z = 1."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)  # [H, W, 3]
    K_inv = np.linalg.inv(np.asarray(K, dtype=np.float64))  # [V, 3, 3]
    rays = np.einsum("vij,hwj->vhwi", K_inv, pixels)
    return rays / rays[..., 2:3]


def _features(images: np.ndarray, upscale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """SIFT keypoints (pixel coordinates of the original image, centres at integers) and descriptors per view."""
    import cv2

    sift = cv2.SIFT_create(contrastThreshold=0.01)  # low-contrast synthetic and indoor textures
    out = []
    for image in images:
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        if upscale > 1:
            gray = cv2.resize(gray, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
        keypoints, desc = sift.detectAndCompute(gray, None)
        # cv2.resize maps pixel centres as x_big = (x + 0.5) * upscale - 0.5
        xy = np.array([k.pt for k in keypoints], dtype=np.float64).reshape(-1, 2)
        xy = (xy + 0.5) / upscale - 0.5
        out.append((xy, np.zeros((0, 128), np.float32) if desc is None else desc))
    return out


def _guided_match(desc_a: np.ndarray, desc_b: np.ndarray, allowed: np.ndarray, ratio: float) -> np.ndarray:
    """Mutual nearest neighbours among the pairs `allowed` (Na, Nb) by the known epipolar geometry, passing the
    ratio test among the allowed candidates; (M, 2) index pairs."""
    if len(desc_a) == 0 or len(desc_b) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    a = desc_a.astype(np.float64)
    b = desc_b.astype(np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    dist = np.where(allowed, np.sqrt(np.maximum(d2, 0)), np.inf)  # [Na, Nb]
    best_b = np.argmin(dist, axis=1)
    best_a = np.argmin(dist, axis=0)
    rows = np.arange(len(a))
    first = dist[rows, best_b]
    second = np.partition(dist, 1, axis=1)[:, 1] if dist.shape[1] > 1 else np.full(len(a), np.inf)
    good = np.isfinite(first) & (best_a[best_b] == rows) & (first < ratio * second)
    return np.stack([rows[good], best_b[good]], axis=1)


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def _fundamental(K_a: np.ndarray, K_b: np.ndarray, T_a: np.ndarray, T_b: np.ndarray) -> np.ndarray:
    """F with x_b^T F x_a = 0 for the known cameras (camera-to-world, OpenCV)."""
    T_ba = np.linalg.inv(T_b) @ T_a  # camera a -> camera b
    return np.linalg.inv(K_b).T @ _skew(T_ba[:3, 3]) @ T_ba[:3, :3] @ np.linalg.inv(K_a)


def _epipolar_band(xy_a: np.ndarray, xy_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, T_a: np.ndarray,
                   T_b: np.ndarray, max_px: float) -> np.ndarray:
    """(Na, Nb): whether each keypoint pair's Sampson distance to the known epipolar geometry is below `max_px`."""
    F = _fundamental(K_a, K_b, T_a, T_b)
    pa = np.concatenate([xy_a, np.ones((len(xy_a), 1))], axis=1)
    pb = np.concatenate([xy_b, np.ones((len(xy_b), 1))], axis=1)
    Fa = pa @ F.T  # [Na, 3] epipolar lines in b
    Ftb = pb @ F  # [Nb, 3] epipolar lines in a
    num = (pb @ Fa.T).T ** 2  # [Na, Nb]
    den = (Fa[:, 0] ** 2 + Fa[:, 1] ** 2)[:, None] + (Ftb[:, 0] ** 2 + Ftb[:, 1] ** 2)[None]
    return num / np.maximum(den, 1e-12) < max_px ** 2


def _triangulated_depths(xy_a: np.ndarray, xy_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, T_a: np.ndarray,
                         T_b: np.ndarray, options: PlacementOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depths (z in each camera) of matches consistent with the known epipolar geometry, and which were kept."""
    T_ba = np.linalg.inv(T_b) @ T_a  # camera a -> camera b
    R, t = T_ba[:3, :3], T_ba[:3, 3]
    F = _fundamental(K_a, K_b, T_a, T_b)
    pa = np.concatenate([xy_a, np.ones((len(xy_a), 1))], axis=1)
    pb = np.concatenate([xy_b, np.ones((len(xy_b), 1))], axis=1)
    Fa, Ftb = pa @ F.T, pb @ F
    num = np.einsum("ni,ni->n", pb, Fa) ** 2
    sampson = num / np.maximum(Fa[:, 0] ** 2 + Fa[:, 1] ** 2 + Ftb[:, 0] ** 2 + Ftb[:, 1] ** 2, 1e-12)
    ray_a = pa @ np.linalg.inv(K_a).T  # z = 1 in camera a
    ray_b = (pb @ np.linalg.inv(K_b).T) @ R  # camera b's rays expressed in camera a (direction only)
    c_b = -R.T @ t  # centre of b in camera a
    # midpoint triangulation: minimise |la ray_a - (c_b + lb ray_b)|
    aa = np.einsum("ni,ni->n", ray_a, ray_a)
    bb = np.einsum("ni,ni->n", ray_b, ray_b)
    ab = np.einsum("ni,ni->n", ray_a, ray_b)
    ca = ray_a @ c_b
    cb = ray_b @ c_b
    det = aa * bb - ab ** 2
    la = (bb * ca - ab * cb) / np.maximum(det, 1e-18)
    lb = (ab * ca - aa * cb) / np.maximum(det, 1e-18)
    cos = ab / np.sqrt(aa * bb)
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    keep = (sampson < options.epipolar_px ** 2) & (la > 0) & (lb > 0) & (angle > options.min_angle_deg)
    # la is z-depth in a (ray_a has z = 1); the depth in b is z of the point in camera b's frame
    z_b = ((la[:, None] * ray_a) @ R.T + t)[:, 2]
    return la, z_b, keep


def _local_depth_at(depth: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Local depth at the nearest pixel (NaN outside the image or where invalid)."""
    H, W = depth.shape
    col, row = np.rint(xy[:, 0]).astype(np.int64), np.rint(xy[:, 1]).astype(np.int64)
    inside = (col >= 0) & (row >= 0) & (col < W) & (row < H)
    out = np.full(len(xy), np.nan)
    out[inside] = depth[row[inside], col[inside]]
    return out


def _mode(values: np.ndarray, width: float) -> tuple[float, int]:
    """The centre of the densest window of `width` (then the median inside it): robust to a majority of outliers,
    which wrong matches along an epipolar line are (they scatter, the right ones agree)."""
    ordered = np.sort(values)
    upper = np.searchsorted(ordered, ordered + width, side="right")
    i = int(np.argmax(upper - np.arange(len(ordered))))
    return float(np.median(ordered[i:upper[i]])), int(upper[i] - i)


def depth_ratios(images: UInt8[np.ndarray, "V H W 3"], depth: Float[np.ndarray, "V H W"],
                 K: Float[np.ndarray, "V 3 3"], T_world_cam: Float[np.ndarray, "V 4 4"],
                 options: PlacementOptions = PlacementOptions()) -> list[np.ndarray]:
    """Per view, the log ratios (triangulated depth / local depth) of its matches with every other view."""
    V = len(images)
    features = _features(images, options.upscale)
    logs: list[list[np.ndarray]] = [[] for _ in range(V)]
    for a in range(V):
        for b in range(a + 1, V):
            allowed = _epipolar_band(features[a][0], features[b][0], K[a], K[b], T_world_cam[a], T_world_cam[b],
                                     options.epipolar_px)
            pairs = _guided_match(features[a][1], features[b][1], allowed, options.ratio)
            if len(pairs) == 0:
                continue
            xy_a, xy_b = features[a][0][pairs[:, 0]], features[b][0][pairs[:, 1]]
            z_a, z_b, keep = _triangulated_depths(xy_a, xy_b, K[a], K[b], T_world_cam[a], T_world_cam[b], options)
            for view, xy, z in ((a, xy_a, z_a), (b, xy_b, z_b)):
                local = _local_depth_at(depth[view], xy)
                good = keep & np.isfinite(local) & (local > 0)
                logs[view].append(np.log(z[good] / local[good]))
    return [np.concatenate(v) if v else np.zeros(0) for v in logs]


def place_under_cameras(images: UInt8[np.ndarray, "V H W 3"], pts3d_local: Float[np.ndarray, "V H W 3"],
                        K: Float[np.ndarray, "V 3 3"], T_world_cam: Float[np.ndarray, "V 4 4"],
                        options: PlacementOptions = PlacementOptions()) -> Placement:
    """Per-view scales of the local pointmaps under the known cameras (OpenCV, camera-to-world; `K` at the
    pointmaps' resolution, pixel centres at integers), and the placed world points.

    Only the local z-depth is used: each pixel's point lies on the known camera's ray through that pixel, so the
    points agree with the images the splats train on even where the model's own focal is off. Raises ValueError
    when no view has enough matches (say what to do at the boundary).
    """
    V, H, W, _ = pts3d_local.shape
    if V < 2:
        raise ValueError(f"placing pointmaps by multi-view consistency needs at least 2 views, got {V}")
    depth = np.asarray(pts3d_local[..., 2], dtype=np.float64)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    K = np.asarray(K, dtype=np.float64)
    T = np.asarray(T_world_cam, dtype=np.float64)
    logs = depth_ratios(np.asarray(images), depth, K, T, options)
    scale = np.full(V, np.nan)
    spread = np.full(V, np.nan)
    counts = np.zeros(V, dtype=np.int64)  # matches that agree with the view's scale
    for v in range(V):
        if len(logs[v]):
            centre, counts[v] = _mode(logs[v], options.mode_width)
            scale[v] = np.exp(centre)
            spread[v] = float(np.median(np.abs(logs[v] - centre)))
    connected = counts >= options.min_matches
    if not connected.any():
        raise ValueError(f"no view has {options.min_matches} image matches consistent with the known cameras "
                         f"(matches per view: {counts.tolist()}); the photos may not overlap, or the poses may "
                         "not belong to them")
    if not connected.all():
        world_depth = np.median([scale[v] * np.nanmedian(depth[v]) for v in np.flatnonzero(connected)])
        for v in np.flatnonzero(~connected):
            scale[v] = world_depth / np.nanmedian(depth[v])
        logger.warning("placement: %d of %d views have fewer than %d matches consistent with the known cameras "
                       "(views %s); they take the others' median depth", int((~connected).sum()), V,
                       options.min_matches, np.flatnonzero(~connected).tolist())
    rays = pixel_rays(K, H, W)
    local = rays * (depth * scale[:, None, None])[..., None]  # [V, H, W, 3] camera frame, world units
    pts3d = np.einsum("vij,vhwj->vhwi", T[:, :3, :3], local) + T[:, None, None, :3, 3]
    return Placement(scale=scale, pts3d=pts3d, connected=connected, matches=counts, spread=spread)
