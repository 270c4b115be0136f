"""The camera solver: matches + local pointmaps -> intrinsics, camera-to-world poses and per-view scales.

    solution = solve_cameras(pts3d_local, matches)                        # matches: list of PairMatches
    solution = solve_cameras_from_descriptors(pts3d_local, descriptors, descriptor_conf)

Steps (issue #17): intrinsics from the local pointmaps (:mod:`.intrinsics`) -> per unordered pair, the relative
rotation from an essential matrix (USAC/MAGSAC, :mod:`.two_view`) -> the largest connected view graph -> robust
rotation averaging (:mod:`.rotation_averaging`) -> centres and scales by linear least squares (:mod:`.translation`)
-> optional joint refinement of the reprojection error (:mod:`.refine`) -> global pointmaps = local pointmaps placed
by the cameras. Views outside the connected graph get NaN cameras and ``camera_ok = False``. The refinement also
measures one focal factor for all views; while it differs from 1 by more than ``focal_tolerance`` the local pointmaps
are re-read with the corrected focal and everything is solved again (a weak model's focal is off by up to 25 %).

World frame: the camera of the first connected view (OpenCV axes), at that view's pointmap scale (its scale is 1).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from jaxtyping import Bool, Float, Int

from panst3r_splat.core.cameras.intrinsics import intrinsics_from_local_pointmaps
from panst3r_splat.core.cameras.matching import MatchingOptions, PairMatches, match_descriptors
from panst3r_splat.core.cameras.refine import RefineOptions, estimate_focal_factor, refine_cameras
from panst3r_splat.core.cameras.rotation_averaging import (
    RotationAveragingOptions,
    average_rotations,
    edge_residuals_deg,
)
from panst3r_splat.core.cameras.translation import PlacedMatches, TranslationOptions, solve_translations
from panst3r_splat.core.cameras.two_view import TwoViewGeometry, TwoViewOptions, estimate_two_view
from panst3r_splat.core.geometry import PrincipalPoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SolverOptions:
    """Settings of every step (each a small dataclass of its own module)."""

    matching: MatchingOptions = field(default_factory=MatchingOptions)
    two_view: TwoViewOptions = field(default_factory=TwoViewOptions)
    rotations: RotationAveragingOptions = field(default_factory=RotationAveragingOptions)
    translations: TranslationOptions = field(default_factory=TranslationOptions)
    refine: RefineOptions | None = field(default_factory=RefineOptions)
    """Joint refinement of the reprojection error; None skips it."""
    max_edge_residual_deg: float = 10.0
    """Pairs whose rotation disagrees with the averaged rotations by more than this are dropped as wrong."""
    max_matches_per_pair: int = 1000
    """Inlier matches per directed pair used for the translations (a deterministic subsample beyond)."""
    self_calibration_passes: int = 3
    """Passes of focal self-calibration (:func:`.refine.estimate_focal_factor`): while the solved focal factor is off
    by more than ``focal_tolerance``, the pointmaps are re-read with the corrected focal and everything is solved
    again. 0 keeps the focal of the local pointmaps."""
    focal_tolerance: float = 0.02
    """Relative focal change below which a self-calibration pass stops."""
    refit_focal_change: float = 0.03
    """A later self-calibration pass refits the first pass's usable pairs from their rotations and inliers when the
    focal moved by at most this share from the first pass's; beyond, it estimates every pair again. Refits anchor
    the next focal measurement to the first pass's: allowed up to 10 %, they took the distorted ground-truth sweep
    rooms of `scripts/evaluate_cameras.py` from 0.59 to 0.83 deg median (one room stopped its self-calibration at
    a focal 8 % off), and refitting every pass took the orbit rooms from 1.5 to 2.0 deg."""
    principal_point: PrincipalPoint = PrincipalPoint.CENTER
    """Where the principal point is fixed."""
    seed: int = 0
    """Seed of OpenCV's RANSAC and of the match subsampling."""


@dataclass(frozen=True)
class CameraSolution:
    """The solved cameras of every view (NaN where ``camera_ok`` is False)."""

    T_world_cam: Float[np.ndarray, "V 4 4"]
    """Camera-to-world, OpenCV axes; the world is the first connected view's camera."""
    K: Float[np.ndarray, "V 3 3"]
    """Intrinsics at the pointmaps' resolution (from the local pointmaps; finite for every view)."""
    scale: Float[np.ndarray, "V"]
    """Factor from each local pointmap to the world: ``X_world = scale * R x_local + t``."""
    camera_ok: Bool[np.ndarray, "V"]
    """Whether the view is connected to the reference view through usable pairs."""
    num_pairs: Int[np.ndarray, "V"]
    """Usable pairs the view is part of (after rotation averaging)."""
    num_inliers: Int[np.ndarray, "V"]
    """Inlier matches of those pairs that involve the view."""
    rotation_residual_deg: Float[np.ndarray, "V"]
    """Median disagreement of the view's pairs with the averaged rotations (NaN when unconnected)."""
    reprojection_px: Float[np.ndarray, "V"]
    """Median reprojection error of the matches landing in the view, in pixels (NaN when unconnected)."""
    seconds: float
    """Wall time of the solve (matching included when it was done here)."""
    focal_factor: float = 1.0
    """Self-calibrated focal / the focal of the local pointmaps (``K`` already includes it); the local points are
    re-read as ``(x / f, y / f, z)`` before they are placed."""

    @property
    def num_views(self) -> int:
        return int(self.camera_ok.shape[0])

    def global_pointmaps(self, pts3d_local: Float[np.ndarray, "V H W 3"]) -> Float[np.ndarray, "V H W 3"]:
        """Local pointmaps placed in the world: ``scale * R x + t`` (NaN for unconnected views)."""
        R = self.T_world_cam[:, None, None, :3, :3]
        t = self.T_world_cam[:, None, None, :3, 3]
        local = np.asarray(pts3d_local, dtype=np.float64) * [1.0 / self.focal_factor, 1.0 / self.focal_factor, 1.0]
        return self.scale[:, None, None, None] * np.einsum("vhwij,vhwj->vhwi", np.broadcast_to(
            R, local.shape[:3] + (3, 3)), local) + t


def _group_pairs(matches: list[PairMatches]) -> dict[tuple[int, int], list[PairMatches]]:
    groups: dict[tuple[int, int], list[PairMatches]] = defaultdict(list)
    for m in matches:
        groups[(min(m.view_a, m.view_b), max(m.view_a, m.view_b))].append(m)
    return groups


def _pair_uv(group: list[PairMatches], a: int) -> tuple[np.ndarray, np.ndarray]:
    """All matches of an unordered pair as pixel coordinates in ``(a, b)`` order."""
    ua, ub = [], []
    for m in group:
        pa, pb = m.pixels_a.astype(np.float64), m.uv_b
        ua.append(pa if m.view_a == a else pb)
        ub.append(pb if m.view_a == a else pa)
    return np.concatenate(ua), np.concatenate(ub)


def _largest_component(num_views: int, edges: list[tuple[int, int]]) -> list[int]:
    """Views of the largest connected component (ties: the one with the lowest view), sorted."""
    parent = list(range(num_views))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        parent[find(a)] = find(b)
    comps: dict[int, list[int]] = defaultdict(list)
    for v in range(num_views):
        comps[find(v)].append(v)
    return max(comps.values(), key=lambda c: (len(c), -c[0]))


def _sample_points(pts3d_local: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    return np.asarray(pts3d_local[pixels[:, 1], pixels[:, 0]], dtype=np.float64)


def _placed(m: PairMatches, inliers: np.ndarray, pts3d_local: np.ndarray, K: np.ndarray, index: dict[int, int],
            rng: np.random.Generator, cap: int) -> PlacedMatches | None:
    keep = np.flatnonzero(inliers)
    points = _sample_points(pts3d_local[m.view_a], m.pixels_a[keep])
    good = np.isfinite(points).all(axis=1) & (points[:, 2] > 0)
    keep = keep[good]
    if len(keep) > cap:
        keep = np.sort(rng.choice(keep, cap, replace=False))
    if len(keep) == 0:
        return None
    uv = m.uv_b[keep]
    rays = np.concatenate([uv, np.ones((len(uv), 1))], axis=1) @ np.linalg.inv(K[m.view_b]).T
    return PlacedMatches(index[m.view_a], index[m.view_b], _sample_points(pts3d_local[m.view_a], m.pixels_a[keep]),
                         rays, _points_nearest(pts3d_local[m.view_b], uv))


def _check_inputs(pts3d_local: np.ndarray, matches: list[PairMatches]) -> None:
    if pts3d_local.ndim != 4 or pts3d_local.shape[-1] != 3:
        raise ValueError(f"pts3d_local must be (V, H, W, 3), got shape {pts3d_local.shape}")
    num_views, height, width, _ = pts3d_local.shape
    if num_views < 2:
        raise ValueError(f"the camera solver needs at least 2 views, got {num_views}: give more photos of the scene")
    for m in matches:
        if not (0 <= m.view_a < num_views and 0 <= m.view_b < num_views):
            raise ValueError(f"matches between views {m.view_a} and {m.view_b}, but there are {num_views} views")
        if len(m) and (m.pixels_a.min() < 0 or (m.pixels_a[:, 0] >= width).any() or (m.pixels_a[:, 1] >= height).any()):
            raise ValueError(f"matches of views {m.view_a}->{m.view_b} have pixels outside the {width}x{height} image")


def _points_nearest(pts3d_local: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Local points at the pixel nearest to each match position (a new array)."""
    height, width = pts3d_local.shape[:2]
    x = np.clip(np.rint(uv[:, 0]).astype(np.int64), 0, width - 1)
    y = np.clip(np.rint(uv[:, 1]).astype(np.int64), 0, height - 1)
    return np.asarray(pts3d_local[y, x], dtype=np.float64)


def _points_on_grid(pts3d_local: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Local points at matches that lie on grid pixels (NaN elsewhere: ground-truth matches land anywhere)."""
    out = _points_nearest(pts3d_local, uv)
    out[np.abs(uv - np.rint(uv)).max(axis=1) >= 1e-6] = np.nan
    return out


def _unique_rows(rows: Float[np.ndarray, "M 4"]) -> tuple[Float[np.ndarray, "U 4"], Int[np.ndarray, "M"]]:
    """``np.unique(rows, axis=0, return_inverse=True)`` (the same sorted rows and inverse) by one ``lexsort``: the
    structured-array sort behind ``axis=0`` cost more than a millisecond per pair."""
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.int64)
    order = np.lexsort(rows.T[::-1])  # the first column is the primary key
    ordered = rows[order]
    new = np.concatenate([[True], (ordered[1:] != ordered[:-1]).any(axis=1)])
    inverse = np.empty(len(rows), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def _two_view_all(groups, K, pts3d_local: np.ndarray, options: SolverOptions,
                  previous: dict[tuple[int, int], TwoViewGeometry] | None = None,
                  ) -> dict[tuple[int, int], TwoViewGeometry]:
    """The two-view geometry of every pair of ``groups`` (those it finds usable). With ``previous`` (the same
    matches under slightly other intrinsics), only its pairs, each refitted from its previous rotation and inliers
    (:func:`.two_view.estimate_two_view` with ``previous``)."""
    import cv2

    cv2.setRNGSeed(options.seed)
    pairs = {}
    for (a, b), group in sorted(groups.items()):
        if previous is not None and (a, b) not in previous:
            continue
        ua, ub = _pair_uv(group, a)
        # Matches used from both views are duplicates here: estimate on the unique ones, map the inliers back.
        unique, inverse = _unique_rows(np.concatenate([ua, ub], axis=1))
        points_a = _points_on_grid(pts3d_local[a], unique[:, :2])
        if previous is None:
            # The pre-check compares both views' local points, b's at the nearest pixels (ground-truth matches
            # land anywhere).
            geometry = estimate_two_view(unique[:, :2], unique[:, 2:], K[a], K[b], points_a, options.two_view,
                                         points_b=_points_nearest(pts3d_local[b], unique[:, 2:]))
        else:  # a refit: no pre-check, the pair passed it
            inliers = np.zeros(len(unique), dtype=bool)
            inliers[inverse.ravel()] = previous[(a, b)].inliers  # duplicates share their value
            geometry = estimate_two_view(unique[:, :2], unique[:, 2:], K[a], K[b], points_a, options.two_view,
                                         previous=dataclasses.replace(previous[(a, b)], inliers=inliers))
        if geometry is not None:
            pairs[(a, b)] = dataclasses.replace(geometry, inliers=geometry.inliers[inverse.ravel()])
    return pairs


def _rotations(num_views: int, pairs: dict[tuple[int, int], TwoViewGeometry], options: SolverOptions):
    """``(views, R_world_cam of views, kept pairs)`` of the largest component that survives the residual check."""
    kept = dict(pairs)
    for attempt in range(4):
        views = _largest_component(num_views, list(kept))
        if len(views) < 2:
            raise ValueError("the views share too few reliable matches to place at least 2 cameras: give photos that "
                             "overlap more, or use --cameras head")
        index = {v: i for i, v in enumerate(views)}
        keys = [k for k in kept if k[0] in index and k[1] in index]
        edges = np.array([(index[a], index[b]) for a, b in keys])
        R_rel = np.stack([kept[k].R_b_a for k in keys])
        weights = np.sqrt(np.array([kept[k].num_inliers for k in keys], dtype=np.float64))
        R = average_rotations(len(views), edges, R_rel, weights, options.rotations)
        residual = edge_residuals_deg(R, edges, R_rel)
        bad = residual > options.max_edge_residual_deg
        if not bad.any() or attempt == 3:
            return views, R, {k: kept[k] for k in keys}, dict(zip(keys, residual))
        log.debug("dropping %d pairs whose rotation disagrees by > %.0f deg", int(bad.sum()),
                  options.max_edge_residual_deg)
        kept = {k: kept[k] for k, b in zip(keys, bad) if not b}
    raise AssertionError("unreachable")


def solve_cameras(
    pts3d_local: Float[np.ndarray, "V H W 3"],
    matches: list[PairMatches],
    options: SolverOptions = SolverOptions(),
) -> CameraSolution:
    """Cameras of every view from directed matches and the local pointmaps (see the module docstring), with focal
    self-calibration (``options.self_calibration_passes``).

    Raises ``ValueError`` when fewer than 2 views can be connected.
    """
    start = time.perf_counter()
    pts3d_local = np.asarray(pts3d_local, dtype=np.float64)
    _check_inputs(pts3d_local, matches)
    factor = 1.0
    solution, phi, usable = _solve_once(pts3d_local, matches, options)
    for _ in range(options.self_calibration_passes):
        if abs(np.log(phi)) <= np.log1p(options.focal_tolerance):
            break
        log.info("camera solver: focal of the local pointmaps off by a factor %.3f?", factor * phi)
        rescaled = pts3d_local * [1.0 / (factor * phi), 1.0 / (factor * phi), 1.0]
        try:
            # After a small focal change, a later pass refits the first pass's usable pairs from their rotations and
            # inliers: no RANSAC (run to its iteration cap on many pairs, it was most of the cost of a pass), and a
            # pair refused at the first focal (mostly wrong matches) is not retried. After a larger one, everything
            # is estimated again (a focal a few per cent off refuses good pairs and biases the rotations).
            small = abs(np.log(factor * phi)) <= np.log1p(options.refit_focal_change)
            candidate, next_phi, _ = _solve_once(rescaled, matches, options, previous=usable if small else None)
        except ValueError:
            break
        # The focal measurement has local minima: keep a pass only when the views agree better with it.
        if _agreement(candidate) >= _agreement(solution):
            log.info("camera solver: the corrected focal does not fit the matches better; keeping %.3f", factor)
            break
        factor *= phi
        solution, phi = candidate, next_phi
    return dataclasses.replace(solution, focal_factor=factor, seconds=time.perf_counter() - start)


def _agreement(solution: CameraSolution) -> float:
    """Lower is better: median reprojection error over the connected views, unconnected views counting as 1e6 px."""
    errors = np.where(solution.camera_ok, solution.reprojection_px, 1e6)
    return float(np.median(np.nan_to_num(errors, nan=1e6)))


def _solve_once(
    pts3d_local: np.ndarray, matches: list[PairMatches], options: SolverOptions,
    previous: dict[tuple[int, int], TwoViewGeometry] | None = None,
) -> tuple[CameraSolution, float, dict[tuple[int, int], TwoViewGeometry]]:
    """One pass of every step (the two-view geometry refitted from ``previous`` when given, see
    :func:`_two_view_all`); also the focal factor the refinement asks for (1 without self-calibration) and the
    usable two-view geometry of each pair."""
    start = time.perf_counter()
    num_views = pts3d_local.shape[0]
    K = intrinsics_from_local_pointmaps(pts3d_local, options.principal_point)
    groups = _group_pairs([m for m in matches if len(m)])
    pairs = _two_view_all(groups, K, pts3d_local, options, previous)
    views, R, kept, rot_residual = _rotations(num_views, pairs, options)
    index = {v: i for i, v in enumerate(views)}
    rng = np.random.default_rng(options.seed)
    placed: list[PlacedMatches] = []
    for key, geometry in kept.items():
        offset = 0
        for m in groups[key]:
            inl = geometry.inliers[offset:offset + len(m)]
            offset += len(m)
            p = _placed(m, inl, pts3d_local, K, index, rng, options.max_matches_per_pair)
            if p is not None:
                placed.append(p)
    scales, centres = solve_translations(len(views), placed, R, options.translations)
    Ks = K[views].copy()
    phi = 1.0
    if options.refine is not None:
        if options.self_calibration_passes > 0:
            phi = estimate_focal_factor(placed, Ks, R, centres, scales, options.refine)
        R, centres, scales = refine_cameras(placed, Ks, R, centres, scales, options.refine)
    return (_solution(num_views, views, K, R, centres, scales, kept, rot_residual, placed, Ks, start), phi,
            pairs)


def _solution(num_views, views, K, R, centres, scales, kept, rot_residual, placed, Ks, start) -> CameraSolution:
    from panst3r_splat.core.cameras.refine import reprojection_errors

    T = np.full((num_views, 4, 4), np.nan)
    T[views, :3, :3] = R
    T[views, :3, 3] = centres
    T[views, 3] = [0.0, 0.0, 0.0, 1.0]
    scale = np.full(num_views, np.nan)
    scale[views] = scales
    ok = np.zeros(num_views, dtype=bool)
    ok[views] = True
    num_pairs = np.zeros(num_views, dtype=np.int64)
    num_inliers = np.zeros(num_views, dtype=np.int64)
    residuals: dict[int, list[float]] = defaultdict(list)
    for (a, b), geometry in kept.items():
        for v in (a, b):
            num_pairs[v] += 1
            num_inliers[v] += geometry.num_inliers
            residuals[v].append(float(rot_residual[(a, b)]))
    rot = np.array([np.median(residuals[v]) if ok[v] and residuals[v] else np.nan for v in range(num_views)])
    reproj = np.full(num_views, np.nan)
    errors = reprojection_errors(placed, Ks, R, centres, scales)
    per_view: dict[int, list[np.ndarray]] = defaultdict(list)
    for m, e in zip(placed, errors):
        per_view[m.view_b].append(e)
    for i, v in enumerate(views):
        if per_view[i]:
            reproj[v] = float(np.median(np.concatenate(per_view[i])))
    return CameraSolution(T_world_cam=T, K=K, scale=scale, camera_ok=ok, num_pairs=num_pairs,
                          num_inliers=num_inliers, rotation_residual_deg=rot, reprojection_px=reproj,
                          seconds=time.perf_counter() - start)


def solve_cameras_from_descriptors(
    pts3d_local: Float[np.ndarray, "V H W 3"],
    descriptors,
    descriptor_conf,
    options: SolverOptions = SolverOptions(),
) -> CameraSolution:
    """Match the dense descriptors (mutual nearest neighbours, :mod:`.matching`), then :func:`solve_cameras`.

    ``descriptors``: per view ``(H, W, D)`` L2-normalised; ``descriptor_conf``: per view ``(H, W)``, ``>= 1``.
    Matches go both ways (each MNN match is used from either view), and the reported time includes matching.
    """
    start = time.perf_counter()
    matches = match_descriptors(descriptors, descriptor_conf, options.matching)
    both = [m for pair in matches for m in ((pair, pair.reversed()) if len(pair) else ())]
    solution = solve_cameras(pts3d_local, both, options)
    return _with_seconds(solution, time.perf_counter() - start)


def _with_seconds(solution: CameraSolution, seconds: float) -> CameraSolution:
    return dataclasses.replace(solution, seconds=seconds)
