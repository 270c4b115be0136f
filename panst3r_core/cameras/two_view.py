"""Relative rotation of a view pair from its matches: OpenCV's USAC/MAGSAC++ essential matrix and homography,
disambiguated by the local pointmap, then polished on the Sampson error.

Convention: ``R_b_a`` maps directions from camera ``a`` to camera ``b`` (OpenCV axes): ``x_b = R_b_a x_a + t``. Only the
rotation is used downstream; translations come from the local pointmaps (:mod:`.translation`).

Matches alone leave two ambiguities that COLMAP resolves with its two-view configuration logic
(``estimators/two_view_geometry.cc``): a plane seen from two places has two essential-matrix / homography solutions,
and a pure rotation (or identical images) leaves the essential matrix undetermined. Here the local pointmap decides:
every candidate rotation gets the translation that best puts view ``a``'s local points on view ``b``'s rays, and the
candidate with the smallest residual wins; a negligible translation marks a pure rotation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from jaxtyping import Bool, Float, Int
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from panst3r_splat.core.transforms import nearest_rotation

log = logging.getLogger(__name__)

PNP_IRLS_ITERATIONS = 4
"""Re-weighted least-squares rounds of the translation in :func:`pointmap_residual`."""


@dataclass(frozen=True)
class TwoViewOptions:
    """Robust two-view estimation settings."""

    threshold_px: float = 1.0
    """MAGSAC inlier threshold in pixels (converted with the pair's mean focal)."""
    confidence: float = 0.9999
    """RANSAC confidence."""
    max_iterations: int = 2000
    """RANSAC iteration cap."""
    min_inliers: int = 30
    """Pairs with fewer essential-matrix inliers are not used."""
    min_inlier_ratio: float = 0.2
    """Pairs whose inlier share is below this are not used (repetitive or wrong matches)."""
    max_pointmap_residual: float = 0.15
    """A pair is refused when even its best candidate leaves the median inlier this far from its ray (distance over
    depth, about radians): the depth contradicts the epipolar model, so the matches are mostly wrong."""
    max_scored_matches: int = 150
    """Matches the candidates are scored on against the pointmap (an even subsample)."""
    polish_tolerance: float = 1.5
    """The polished pose is kept when its pointmap residual is at most this times the unpolished one."""
    min_baseline: float = 0.01
    """Pairs whose baseline is below this share of the median point depth are treated as pure rotations."""
    max_polish_matches: int = 1000
    """Inliers used to polish the relative pose (an even subsample)."""
    max_ransac_matches: int = 500
    """Matches the robust estimators see (an even subsample); every match is then classified by the model found."""
    min_similarity_consensus: float = 0.2
    """Pairs where no similarity transform of view ``a``'s local points onto view ``b``'s at the matches agrees with
    at least this share of them (:func:`similarity_consensus`) are refused before the robust estimators run: their
    matches are mostly wrong, and their RANSAC would run all its iterations (~25 ms) only to be refused later. On
    the built-in model's outputs for 4 rooms no pair the full estimate accepts scored below 0.36, while about half of
    the refused ones did; 610 ground-truth pairs with 30 % outliers and a weak model's depth (20 % short focal, 10 %
    depth noise) scored 0.27 or more. 0 turns the check off."""
    similarity_samples: int = 64
    """3-match samples of :func:`similarity_consensus` (deterministic)."""
    similarity_tolerance: float = 0.1
    """A match agrees with a similarity when it maps within this share of its depth."""


@dataclass(frozen=True)
class TwoViewGeometry:
    """The relative rotation of one pair and the matches it explains."""

    R_b_a: Float[np.ndarray, "3 3"]
    """Rotation from camera ``a`` to camera ``b``."""
    inliers: Bool[np.ndarray, "M"]
    """Which of the pair's matches the model explains."""
    rotation_only: bool
    """True when the pair shows no parallax (the rotation came from the homography)."""

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def _normalised(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    return (uv - K[:2, 2]) / np.array([K[0, 0], K[1, 1]])


def _subsample(num: int, cap: int) -> np.ndarray:
    return np.arange(0, num, -(-num // cap)) if num > cap else np.arange(num)


def sampson_distance(xa: np.ndarray, xb: np.ndarray, E: np.ndarray) -> np.ndarray:
    """First-order geometric distance of each normalised match to the epipolar geometry ``E``."""
    return np.abs(_signed_sampson(xa, xb, E))


def _signed_sampson(xa: np.ndarray, xb: np.ndarray, E: np.ndarray) -> np.ndarray:
    ha = np.concatenate([xa, np.ones((len(xa), 1))], axis=1)
    hb = np.concatenate([xb, np.ones((len(xb), 1))], axis=1)
    Ea, Etb = ha @ E.T, hb @ E
    num = np.einsum("ni,ni->n", hb, Ea)
    den = Ea[:, 0] ** 2 + Ea[:, 1] ** 2 + Etb[:, 0] ** 2 + Etb[:, 1] ** 2
    return num / np.sqrt(np.maximum(den, 1e-300))


def _essential_candidates(xa: np.ndarray, xb: np.ndarray, threshold: float, options: TwoViewOptions):
    """``(E, [R candidates])`` from normalised coordinates (both rotations of the decomposition), or None."""
    sub = _subsample(len(xa), options.max_ransac_matches)
    E, mask = cv2.findEssentialMat(xa[sub], xb[sub], np.eye(3), method=cv2.USAC_MAGSAC, prob=options.confidence,
                                   threshold=threshold, maxIters=options.max_iterations)
    if E is None or mask is None or E.shape[0] < 3:
        return None
    E = E[:3]  # OpenCV may stack several solutions for degenerate input; the first is its best
    R1, R2, _ = cv2.decomposeEssentialMat(E)
    return E, [R1, R2]


def similarity_consensus(
    points_a: Float[np.ndarray, "M 3"], points_b: Float[np.ndarray, "M 3"], options: TwoViewOptions
) -> float | None:
    """The largest share of matches that one similarity (scale, rotation, translation: the local pointmaps are each
    at their own scale) maps from view ``a``'s local points to view ``b``'s within ``options.similarity_tolerance``
    of their depth, over ``options.similarity_samples`` 3-match samples (Umeyama fits, all at once). Rows with a
    point missing are left out; None when fewer than ``options.min_inliers`` remain (no verdict).

    A depth-based check, coarse next to the epipolar one (a model's depth is a few per cent off), but it needs no
    RANSAC: right matches agree on one similarity, wrong ones scatter."""
    known = np.isfinite(points_a).all(axis=1) & np.isfinite(points_b).all(axis=1)
    known &= np.linalg.norm(np.nan_to_num(points_b), axis=1) > 0
    rows = np.flatnonzero(known)
    if len(rows) < max(options.min_inliers, 3):
        return None
    rows = rows[_subsample(len(rows), options.max_ransac_matches)]
    pa, pb = points_a[rows], points_b[rows]
    rng = np.random.default_rng(0)
    idx = np.stack([rng.choice(len(rows), 3, replace=False) for _ in range(options.similarity_samples)])  # [S, 3]
    A, B = pa[idx], pb[idx]  # [S, 3, 3]: sample, match, xyz
    ma, mb = A.mean(axis=1), B.mean(axis=1)
    Ac, Bc = A - ma[:, None], B - mb[:, None]
    U, sv, Vt = np.linalg.svd(np.einsum("sni,snj->sij", Bc, Ac))
    d = np.sign(np.linalg.det(U @ Vt))  # [S]: no reflections
    U[:, :, 2] *= d[:, None]
    R = U @ Vt
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (sv[:, 0] + sv[:, 1] + d * sv[:, 2]) / (Ac**2).sum(axis=(1, 2))
        t = mb - scale[:, None] * np.einsum("sij,sj->si", R, ma)
        mapped = scale[:, None, None] * np.einsum("sij,mj->smi", R, pa) + t[:, None]  # [S, M, 3]
        err = np.linalg.norm(mapped - pb[None], axis=2) / np.linalg.norm(pb, axis=1)[None]
    return float((err < options.similarity_tolerance).sum(axis=1).max() / len(rows))


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def polish_relative_pose(
    xa: Float[np.ndarray, "M 2"], xb: Float[np.ndarray, "M 2"], R_b_a: Float[np.ndarray, "3 3"],
    t_dir: Float[np.ndarray, "3"],
) -> tuple[Float[np.ndarray, "3 3"], Float[np.ndarray, "3"]]:
    """Least-squares Sampson error over ``(R_b_a, unit t)`` on inlier matches (normalised coordinates), started
    from the robust estimate: MAGSAC's model is fitted to a minimal or weighted sample, this uses every inlier."""
    t_dir = t_dir / np.linalg.norm(t_dir)
    basis = np.linalg.svd(t_dir[None])[2][1:].T  # [3, 2] orthonormal, perpendicular to t

    def pose(x):
        R = Rotation.from_rotvec(x[:3]).as_matrix() @ R_b_a
        t = t_dir + basis @ x[3:]
        return R, t / np.linalg.norm(t)

    def fun(x):
        R, t = pose(x)
        return _signed_sampson(xa, xb, _skew(t) @ R)  # signed: smooth at the solution

    if len(xa) < 6:
        return R_b_a, t_dir
    result = least_squares(fun, np.zeros(5), method="lm", xtol=1e-12, ftol=1e-12, max_nfev=60)
    return pose(result.x)


def _homography_candidates(ua, ub, Ka, Kb, threshold_px: float, options: TwoViewOptions):
    """``(inlier mask, [R candidates])`` of a robust homography: the rotations of its decomposition and the rotation
    nearest to ``K_b^-1 H K_a`` (exact for a pure rotation), or None."""
    sub = _subsample(len(ua), options.max_ransac_matches)
    H, mask = cv2.findHomography(ua[sub], ub[sub], cv2.USAC_MAGSAC, threshold_px, maxIters=options.max_iterations,
                                 confidence=options.confidence)
    if H is None or mask is None:
        return None
    M = np.linalg.inv(Kb) @ H @ Ka
    if np.linalg.det(M) < 0:
        M = -M
    _, Rs, _, _ = cv2.decomposeHomographyMat(M, np.eye(3))
    return _homography_inliers(ua, ub, H, threshold_px), [nearest_rotation(M), *Rs]


RANSAC_TRANSLATION_SAMPLES = 32
"""2-match samples that start the translation of :func:`pointmap_residual`."""


@dataclass(frozen=True)
class _RayGeometry:
    """What :func:`pointmap_residual` computes from the rays and points alone, built once per pair and shared by
    its candidate rotations (the same operations as per call, so the same numbers)."""

    d: Float[np.ndarray, "M 3"]
    """Unit rays of view ``b``."""
    w: Float[np.ndarray, "M"]
    """``1 / |x_a|``: a distance to a ray divided by it is about an angle."""
    S: Float[np.ndarray, "M 3 3"]
    """``S @ v = d x v``."""
    samples: Int[np.ndarray, "S 2"]
    """Two distinct matches per RANSAC sample (deterministic)."""
    A: Float[np.ndarray, "S 6 3"]
    """Each sample's weighted rows, whose least squares give its translation."""
    AtA: Float[np.ndarray, "S 3 3"]
    """Their normal matrices."""


def _ray_geometry(rays_b: Float[np.ndarray, "M 3"], points_a: Float[np.ndarray, "M 3"]) -> _RayGeometry:
    d = rays_b / np.linalg.norm(rays_b, axis=1, keepdims=True)
    w = 1.0 / np.linalg.norm(points_a, axis=1)
    S = np.stack([np.cross(d, e) for e in np.eye(3)], axis=2)  # [M, 3, 3]: S @ v = d x v
    n = len(S)
    rng = np.random.default_rng(0)
    first = rng.integers(0, n, RANSAC_TRANSLATION_SAMPLES)
    idx = np.stack([first, (first + rng.integers(1, max(n, 2), RANSAC_TRANSLATION_SAMPLES)) % n], axis=1)
    A = (S[idx] * w[idx][..., None, None]).reshape(len(idx), 6, 3)
    AtA = np.einsum("sji,sjk->sik", A, A) + 1e-12 * np.eye(3)
    return _RayGeometry(d=d, w=w, S=S, samples=idx, A=A, AtA=AtA)


def _ransac_translation(geometry: _RayGeometry, SX: Float[np.ndarray, "M 3"]) -> Float[np.ndarray, "3"]:
    """The translation of the 2-match sample that puts the most points within 0.02 of their lines (deterministic).

    The counts compare squared distances, from one ``[3M, 3] @ [3, S]`` product (5x faster than the ``[S, M, 3]``
    einsum and norm; only a distance within rounding of 0.02 could count differently)."""
    S, w, idx = geometry.S, geometry.w, geometry.samples
    b = -(SX[idx] * w[idx][..., None]).reshape(len(idx), 6)
    ts = np.linalg.solve(geometry.AtA, np.einsum("sji,sj->si", geometry.A, b)[..., None])[..., 0]  # [samples, 3]
    offset = SX.T[:, :, None] + (S.reshape(-1, 3) @ ts.T).reshape(len(S), 3, -1).transpose(1, 0, 2)  # [3, M, S]
    line_sq = (offset[0] ** 2 + offset[1] ** 2 + offset[2] ** 2) * (w**2)[:, None]  # [M, samples]
    return ts[int(np.argmax((line_sq < 0.02**2).sum(axis=0)))]


def _ransac_translation_reference(S: np.ndarray, SX: np.ndarray, w: np.ndarray, samples: int = 32) -> np.ndarray:
    """Reference twin of :func:`_ransac_translation`: everything per call, distances by an einsum and a norm."""
    n = len(S)
    rng = np.random.default_rng(0)
    first = rng.integers(0, n, samples)
    idx = np.stack([first, (first + rng.integers(1, max(n, 2), samples)) % n], axis=1)  # two distinct matches
    A = (S[idx] * w[idx][..., None, None]).reshape(len(idx), 6, 3)
    b = -(SX[idx] * w[idx][..., None]).reshape(len(idx), 6)
    AtA = np.einsum("sji,sjk->sik", A, A) + 1e-12 * np.eye(3)
    ts = np.linalg.solve(AtA, np.einsum("sji,sj->si", A, b)[..., None])[..., 0]  # [samples, 3]
    line = np.linalg.norm(SX[None] + np.einsum("nij,sj->sni", S, ts), axis=2) * w[None]  # [samples, n]
    return ts[int(np.argmax((line < 0.02).sum(axis=1)))]


def pointmap_residual(
    R_b_a: Float[np.ndarray, "3 3"], rays_b: Float[np.ndarray, "M 3"], points_a: Float[np.ndarray, "M 3"]
) -> tuple[float, Float[np.ndarray, "3"]]:
    """How well a rotation explains the matches given view ``a``'s local points: the translation ``t`` (``x_b = R
    x_a + t``, in ``a``'s pointmap units) that puts the points on the lines of sight of ``b`` by least squares, and
    the median distance to the rays (in front of the camera) divided by ``|x_a|`` (radians, roughly). The depth of
    the local pointmap tells the two planar solutions of an essential matrix or a homography apart, and the
    ray (not line) distance the twisted pair, which matches alone cannot."""
    return _pointmap_residual(R_b_a, _ray_geometry(rays_b, points_a), points_a)


def _pointmap_residual(
    R_b_a: Float[np.ndarray, "3 3"], geometry: _RayGeometry, points_a: Float[np.ndarray, "M 3"]
) -> tuple[float, Float[np.ndarray, "3"]]:
    """:func:`pointmap_residual` with the rays' part already built (one pair's candidates share it)."""
    d, w, S = geometry.d, geometry.w, geometry.S
    X = points_a @ R_b_a.T
    SX = np.einsum("mij,mj->mi", S, X)
    # Start from the best of a few minimal (2-match) solutions, then Cauchy re-weighting: outlier matches must not
    # drag t (a plain least-squares start with 30 % outliers is too far off for re-weighting to recover).
    t = _ransac_translation(geometry, SX)
    for _ in range(PNP_IRLS_ITERATIONS):
        line = np.linalg.norm(SX + S @ t, axis=1) * w
        robust = 1.0 / (1.0 + (line / (3.0 * max(float(np.median(line)), 1e-12))) ** 2)
        ww = w * np.sqrt(robust)
        t = np.linalg.lstsq((S * ww[:, None, None]).reshape(-1, 3), -(SX * ww[:, None]).reshape(-1), rcond=None)[0]
    p = X + t
    along = np.einsum("mi,mi->m", d, p)
    # Distance to the ray, not the line: a point behind the camera (the twisted-pair solution) is far from it.
    r = np.linalg.norm(p - np.maximum(along, 0.0)[:, None] * d, axis=1) * w
    return float(np.median(r)), t


def estimate_two_view(
    uv_a: Float[np.ndarray, "M 2"],
    uv_b: Float[np.ndarray, "M 2"],
    K_a: Float[np.ndarray, "3 3"],
    K_b: Float[np.ndarray, "3 3"],
    points_a: Float[np.ndarray, "M 3"],
    options: TwoViewOptions = TwoViewOptions(),
    previous: TwoViewGeometry | None = None,
    points_b: Float[np.ndarray, "M 3"] | None = None,
) -> TwoViewGeometry | None:
    """Relative rotation of a pair from pixel matches, or None when the pair is not usable (too few or too
    inconsistent matches).

    Candidates: both rotations of the robust essential matrix and those of a robust homography (plus the rotation
    nearest to it, for pure rotations); the one whose :func:`pointmap_residual` on ``points_a`` (view ``a``'s local
    points at the matches, NaN where unknown) is lowest wins, and is polished on the Sampson error unless the pair
    shows no parallax.

    ``previous``: the pair already estimated under slightly different intrinsics (the camera solver's focal
    self-calibration, a *refit*): its rotation and inliers replace the robust estimators' candidates, then the same
    checks and polish. (The RANSAC, which on many pairs runs to its iteration cap, was most of the cost of a pass.)

    ``points_b``: view ``b``'s local points at the matches (NaN where unknown); with them, a pair whose
    :func:`similarity_consensus` is below ``options.min_similarity_consensus`` is refused before the robust
    estimators run."""
    uv_a = np.ascontiguousarray(uv_a, dtype=np.float64)
    uv_b = np.ascontiguousarray(uv_b, dtype=np.float64)
    if uv_a.shape[0] < max(options.min_inliers, 8):
        return None
    focal = float(np.mean([K_a[0, 0], K_a[1, 1], K_b[0, 0], K_b[1, 1]]))
    threshold = options.threshold_px / focal
    xa, xb = _normalised(uv_a, K_a), _normalised(uv_b, K_b)
    if previous is not None:
        if previous.inliers.shape != (uv_a.shape[0],):
            raise ValueError(f"previous inliers are for {previous.inliers.shape[0]} matches, not {uv_a.shape[0]}")
        return _choose(xa, xb, threshold, [(previous.R_b_a, previous.inliers)], points_a, options)
    if points_b is not None and options.min_similarity_consensus > 0:
        consensus = similarity_consensus(points_a, points_b, options)
        if consensus is not None and consensus < options.min_similarity_consensus:
            return None  # the local points at the matches agree on no similarity: mostly wrong matches
    essential = _essential_candidates(xa, xb, threshold, options)
    homography = _homography_candidates(uv_a, uv_b, K_a, K_b, options.threshold_px, options)
    candidates = []  # (rotation, inliers of the model it comes from)
    if essential is not None:
        e_inliers = sampson_distance(xa, xb, essential[0]) < threshold
        candidates += [(R, e_inliers) for R in essential[1]]
    if homography is not None:
        candidates += [(R, homography[0]) for R in homography[1]]
    return _choose(xa, xb, threshold, candidates, points_a, options)


def _choose(xa: np.ndarray, xb: np.ndarray, threshold: float, candidates: list, points_a: np.ndarray,
            options: TwoViewOptions) -> TwoViewGeometry | None:
    """The candidate rotation that best explains the local points (:func:`pointmap_residual`), polished on the
    Sampson error unless the pair shows no parallax, and its inliers; None when no candidate agrees with the depth
    or too few matches remain."""
    known = np.isfinite(points_a).all(axis=1) & (np.linalg.norm(np.nan_to_num(points_a), axis=1) > 0)
    rows = np.flatnonzero(known)
    if len(rows) < options.min_inliers or not candidates:
        return None
    rows = rows[_subsample(len(rows), options.max_scored_matches)]
    rays_b = np.concatenate([xb[rows], np.ones((len(rows), 1))], axis=1)
    depth = float(np.median(np.linalg.norm(points_a[rows], axis=1)))
    geometry = _ray_geometry(rays_b, points_a[rows])  # shared by the candidates and the polished pose
    scored = [(*_pointmap_residual(R, geometry, points_a[rows]), R, model_inliers)
              for R, model_inliers in _distinct(candidates)]
    residual, t, R, inliers = min(scored, key=lambda item: item[0])
    if residual > options.max_pointmap_residual:
        return None  # no candidate agrees with the depth: the matches are mostly wrong
    rotation_only = float(np.linalg.norm(t)) < options.min_baseline * depth
    if rotation_only:
        inliers = _rotation_inliers(xa, xb, R, threshold)
    else:  # every inlier of the model polishes the chosen pose
        sub = np.flatnonzero(inliers)[_subsample(int(inliers.sum()), options.max_polish_matches)]
        R_polished, t_dir = polish_relative_pose(xa[sub], xb[sub], R, t)
        # On an ill-conditioned pair (small overlap, a near-plane) the Sampson error is flat and polishing can slide
        # far along it; keep the polish only where the depth still agrees.
        if _pointmap_residual(R_polished, geometry, points_a[rows])[0] <= options.polish_tolerance * residual + 1e-9:
            R = R_polished
            inliers = sampson_distance(xa, xb, _skew(t_dir) @ R) < threshold
        else:
            inliers = _pose_inliers(xa, xb, R, t, threshold)
    if inliers.sum() < options.min_inliers or inliers.mean() < options.min_inlier_ratio:
        return None
    return TwoViewGeometry(R_b_a=np.asarray(R, dtype=np.float64), inliers=inliers, rotation_only=rotation_only)


def _rotation_inliers(xa: np.ndarray, xb: np.ndarray, R: np.ndarray, threshold: float) -> np.ndarray:
    """Matches that a pure rotation maps within ``threshold`` (normalised units)."""
    ray = np.concatenate([xa, np.ones((len(xa), 1))], axis=1) @ R.T
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = ray[:, :2] / ray[:, 2:3]
    return np.linalg.norm(proj - xb, axis=1) < threshold


def _homography_inliers(ua: np.ndarray, ub: np.ndarray, H: np.ndarray, threshold_px: float) -> np.ndarray:
    """Matches that ``H`` maps within ``threshold_px``."""
    p = np.concatenate([ua, np.ones((len(ua), 1))], axis=1) @ H.T
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = p[:, :2] / p[:, 2:3]
    return np.linalg.norm(proj - ub, axis=1) < threshold_px



def _pose_inliers(xa, xb, R, t, threshold: float) -> np.ndarray:
    """Matches whose epipolar (Sampson) error under ``(R, t)`` is within ``threshold``."""
    return sampson_distance(xa, xb, _skew(t / np.linalg.norm(t)) @ R) < threshold


def _distinct(candidates: list) -> list:
    """Candidates with their rotation listed once (a homography decomposition repeats rotations)."""
    out: list = []
    for R, inliers in candidates:
        if all(np.abs(R - other).max() > 1e-9 for other, _ in out):
            out.append((R, inliers))
    return out
