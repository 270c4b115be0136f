"""Camera centres and per-view pointmap scales given the rotations.

A directed match puts the local point ``x_a`` of view ``a`` (camera frame, the model's per-view scale) on the ray of
view ``b`` through ``u_b``. With ``X = s_a R_a x_a + t_a`` and the world ray direction ``d = R_b K_b^-1 (u_b, 1)``,
``d x (X - t_b) = 0`` is linear in ``(s_a, t_a, t_b)``. Rows are divided by ``|x_a|`` (an angle-like residual, so
near and far points count alike) and re-weighted with a Cauchy loss (IRLS). Gauge: ``s_0 = 1, t_0 = 0`` (the world is
view 0's camera at view 0's pointmap scale). The normal equations are accumulated pair by pair, so the memory does not
grow with the number of matches.

The scales come first when the matches carry view ``b``'s local points too (the solver's do): distances between
matched points do not depend on the cameras, so each pair gives ``log(s_a / s_b)`` (:func:`pair_log_scale`), and
the per-view ``log s`` are their Cauchy-reweighted least-squares average; the centres then solve the rows above
with the scales fixed. Solving scales and centres together from the rays alone is homogeneous: a group of views tied
to the rest by few or inconsistent matches lowers its cost by shrinking its scales (and the distances between its
centres) towards 0, which the built-in model's noisy rotations did on a demo room (four views at scale 0.01-0.03).
Without the ratios (or when a view has none) the joint solve remains.

A view seen only from the same centre (pure rotation) constrains no scale in the joint solve: a weak prior ``s = 1``
keeps the system regular without moving a determined solution measurably.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
from jaxtyping import Float

SCALE_PRIOR = 1e-9
"""Weight of the ``s = 1`` prior, relative to the mean diagonal of the normal matrix."""
MIN_RESIDUAL_SCALE = 1e-6
"""Floor of the robust residual scale (radians): exact data must not down-weight rows for rounding noise."""


@dataclass(frozen=True)
class PlacedMatches:
    """The inlier matches of one directed pair, ready for the translation problem."""

    view_a: int
    view_b: int
    points_a: Float[np.ndarray, "M 3"]
    """Local points of view ``a`` at the matched pixels (camera frame, the pointmap's scale)."""
    rays_b: Float[np.ndarray, "M 3"]
    """``K_b^-1 (u_b, 1)``: the matched rays in camera ``b``'s frame (not normalised)."""
    points_b: Float[np.ndarray, "M 3"] | None = None
    """Local points of view ``b`` at the pixels nearest the matches (NaN where unknown), when known: they give the
    pair's scale ratio (:func:`pair_log_scale`)."""


@dataclass(frozen=True)
class TranslationOptions:
    """IRLS settings of the translation problem."""

    iterations: int = 8
    """IRLS iterations (the first is plain least squares)."""
    cauchy_scale: float = 3.0
    """Cauchy scale in units of the robust (MAD) spread of the residuals."""
    pair_scales: bool = True
    """Scales first, from the pairs' scale ratios (:func:`pair_log_scale`, averaged in log space), then the centres
    with the scales fixed, when every pair carries ``points_b``. Solving scales and centres together from the rays
    alone lets a weakly tied group of views lower its cost by shrinking its scales towards 0."""


def _skew(v: np.ndarray) -> np.ndarray:
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def _concatenated(matches: list[PlacedMatches]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(view_a [N], view_b [N], points_a [N, 3], rays_b [N, 3])`` of all pairs together."""
    if not matches:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3))
    va = np.concatenate([np.full(len(m.points_a), m.view_a) for m in matches])
    vb = np.concatenate([np.full(len(m.points_a), m.view_b) for m in matches])
    return va, vb, np.concatenate([m.points_a for m in matches]), np.concatenate([m.rays_b for m in matches])


def _rows(va, vb, points_a, rays_b, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 3, 7]`` rows over ``(s_a, t_a, t_b)``, already divided by ``|x_a|``, and their ``[N, 7]`` columns."""
    d = np.einsum("nij,nj->ni", R[vb], rays_b)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    S = _skew(d)  # [N, 3, 3]
    X = np.einsum("nij,nj->ni", R[va], points_a)
    J = np.concatenate([(S @ X[:, :, None]), S, -S], axis=2)  # [N, 3, 7]
    J /= np.linalg.norm(points_a, axis=1)[:, None, None]
    cols = np.concatenate([4 * va[:, None] + np.arange(4), 4 * vb[:, None] + 1 + np.arange(3)], axis=1)
    return J, cols


def match_residuals(
    matches: list[PlacedMatches], R_world_cam: Float[np.ndarray, "V 3 3"], scales: Float[np.ndarray, "V"],
    centres: Float[np.ndarray, "V 3"],
) -> Float[np.ndarray, "N"]:
    """Each match's distance from its ray divided by ``|x_a|`` (radians, roughly), all pairs concatenated."""
    J, cols = _rows(*_concatenated(matches), R_world_cam)
    x = np.concatenate([scales[:, None], centres], axis=1).ravel()
    return np.linalg.norm(np.einsum("nkj,nj->nk", J, x[cols]), axis=1)


def _pair_blocks(matches: list[PlacedMatches]) -> list[tuple[slice, np.ndarray]]:
    """Per directed pair: its rows in the concatenated matches and its ``[7]`` columns over ``(s_a, t_a, t_b)`` (the
    same for every match of the pair)."""
    ends = np.cumsum([len(m.points_a) for m in matches], dtype=np.int64)
    return [(slice(int(end) - len(m.points_a), int(end)),
             np.concatenate([4 * m.view_a + np.arange(4), 4 * m.view_b + 1 + np.arange(3)]))
            for m, end in zip(matches, ends)]


def _normal_matrix(
    J: Float[np.ndarray, "N 3 7"], weights: Float[np.ndarray, "N"], blocks: list[tuple[slice, np.ndarray]], n: int
) -> Float[np.ndarray, "n n"]:
    """``sum_m w_m J_m^T J_m`` scattered into the ``[n, n]`` normal matrix, one ``7 x 7`` product per directed pair
    (all matches of a pair share their columns): no ``[N, 7, 7]`` array and no sparse assembly of ``49 N``
    entries, which cost ~20 s per solve at 64 views."""
    A = np.zeros((n, n))
    Jw = J * np.sqrt(weights)[:, None, None]
    for rows, cols in blocks:
        block = Jw[rows].reshape(-1, 7)  # [3 M, 7]
        A[np.ix_(cols, cols)] += block.T @ block  # the 7 columns of a pair are distinct (view_a != view_b)
    return A


def _normal_matrix_reference(
    J: Float[np.ndarray, "N 3 7"], cols: np.ndarray, weights: Float[np.ndarray, "N"], n: int
) -> Float[np.ndarray, "n n"]:
    """Reference twin of :func:`_normal_matrix`: every match's ``7 x 7`` block summed by a sparse assembly."""
    JtJ = weights[:, None, None] * np.einsum("nki,nkj->nij", J, J)  # [N, 7, 7]
    rr, cc = np.broadcast_to(cols[:, :, None], JtJ.shape), np.broadcast_to(cols[:, None, :], JtJ.shape)
    return scipy.sparse.coo_matrix((JtJ.ravel(), (rr.ravel(), cc.ravel())), shape=(n, n)).toarray()


def _gauged_solve(A: Float[np.ndarray, "n n"]) -> Float[np.ndarray, "n"]:
    """The parameters ``(s, t)`` of every view from the normal matrix (no right-hand side: the problem is
    homogeneous), with the gauge ``s_0 = 1, t_0 = 0`` and the weak ``s = 1`` prior."""
    n = A.shape[0]
    rhs = -A[4:, 0]  # gauge: s_0 = 1 moves to the right-hand side, t_0 = 0 drops out
    A = A[4:, 4:].copy()
    prior = SCALE_PRIOR * max(float(np.mean(np.diag(A))), 1e-30)
    scale_idx = np.arange(0, n - 4, 4)
    A[scale_idx, scale_idx] += prior
    rhs[scale_idx] += prior
    return np.concatenate([[1.0, 0.0, 0.0, 0.0], np.linalg.solve(A, rhs)])


PAIR_SCALE_SAMPLES = 256
"""Match pairs whose distance ratios give a view pair's scale ratio (:func:`pair_log_scale`)."""


def pair_log_scale(points_a: Float[np.ndarray, "M 3"], points_b: Float[np.ndarray, "M 3"]) -> float | None:
    """``log(s_a / s_b)`` of one view pair from its matches' local points: distances between two matched points do
    not depend on the cameras, so ``|x_b,i - x_b,j| / |x_a,i - x_a,j|`` is the pair's scale ratio; the median over
    ``PAIR_SCALE_SAMPLES`` pairs of matches (deterministic). None with fewer than 8 usable matches."""
    known = np.flatnonzero(np.isfinite(points_a).all(axis=1) & np.isfinite(points_b).all(axis=1))
    if len(known) < 8:
        return None
    rng = np.random.default_rng(0)
    i, j = rng.choice(known, (2, PAIR_SCALE_SAMPLES))
    da = np.linalg.norm(points_a[i] - points_a[j], axis=1)
    db = np.linalg.norm(points_b[i] - points_b[j], axis=1)
    usable = (da > 0) & (db > 0)
    if usable.sum() < 8:
        return None
    return float(np.median(np.log(db[usable] / da[usable])))


def _log_scales(num_views: int, matches: list[PlacedMatches], options: TranslationOptions) -> np.ndarray | None:
    """Per-view ``log s`` (view 0: 0) averaged over the pairs' ratios (:func:`pair_log_scale`), weighted by the
    square root of their match counts, Cauchy-reweighted; None when a view has no ratio to the others."""
    rows, rhs, weights = [], [], []
    for m in matches:
        if m.points_b is None:
            return None
        ratio = pair_log_scale(m.points_a, m.points_b)
        if ratio is not None:
            rows.append((m.view_a, m.view_b))
            rhs.append(ratio)
            weights.append(np.sqrt(len(m.points_a)))
    if not rows:
        return None
    A = np.zeros((len(rows), num_views))
    for k, (a, b) in enumerate(rows):
        A[k, a], A[k, b] = 1.0, -1.0
    A, rhs, base = A[:, 1:], np.asarray(rhs), np.asarray(weights)
    if np.linalg.matrix_rank(A) < num_views - 1:
        return None
    w = base.copy()
    for _ in range(options.iterations):
        sw = np.sqrt(w)
        x = np.linalg.lstsq(A * sw[:, None], rhs * sw, rcond=None)[0]
        res = np.abs(A @ x - rhs)
        sigma = max(1.4826 * float(np.median(res)), 1e-3)
        w = base / (1.0 + (res / (options.cauchy_scale * sigma)) ** 2)
    return np.concatenate([[0.0], x])


def _centres_given_scales(num_views: int, J: np.ndarray, cols: np.ndarray, blocks, scales: np.ndarray,
                          options: TranslationOptions) -> np.ndarray:
    """Camera centres ``[V, 3]`` (view 0 at 0) by Cauchy-IRLS least squares of the rows with the scales fixed."""
    s_col = scales[cols[:, 0] // 4]  # [N]: s_a of each row
    Jt, b = J[:, :, 1:], -J[:, :, 0] * s_col[:, None]  # [N, 3, 6], [N, 3]
    weights = np.ones(len(J))
    n = 3 * num_views
    tcols = [np.concatenate([3 * (c[0] // 4) + np.arange(3), 3 * ((c[4] - 1) // 4) + np.arange(3)])
             for _, c in blocks]
    view_a, view_b = cols[:, 0] // 4, (cols[:, 4] - 1) // 4
    tcols_all = np.concatenate([3 * view_a[:, None] + np.arange(3), 3 * view_b[:, None] + np.arange(3)], axis=1)
    for it in range(options.iterations):
        A, rhs = np.zeros((n, n)), np.zeros(n)
        sw = np.sqrt(weights)
        for (rows, _), tc in zip(blocks, tcols):
            Jb = (Jt[rows] * sw[rows, None, None]).reshape(-1, 6)
            bb = (b[rows] * sw[rows, None]).reshape(-1)
            A[np.ix_(tc, tc)] += Jb.T @ Jb
            rhs[tc] += Jb.T @ bb
        t = np.concatenate([np.zeros(3), np.linalg.solve(A[3:, 3:], rhs[3:])])
        if it + 1 == options.iterations:
            break
        res = np.linalg.norm(np.einsum("nkj,nj->nk", Jt, t[tcols_all]) - b, axis=1)
        sigma = max(1.4826 * float(np.median(res)), MIN_RESIDUAL_SCALE)
        weights = 1.0 / (1.0 + (res / (options.cauchy_scale * sigma)) ** 2)
    return t.reshape(num_views, 3)


def solve_translations(
    num_views: int,
    matches: list[PlacedMatches],
    R_world_cam: Float[np.ndarray, "V 3 3"],
    options: TranslationOptions = TranslationOptions(),
) -> tuple[Float[np.ndarray, "V"], Float[np.ndarray, "V 3"]]:
    """``(scales, centres)``: per-view pointmap scale and camera centre in the world (``t`` of ``T_world_cam``).

    The views must be connected by ``matches``; view 0 is the gauge (scale 1, centre 0).
    """
    J, cols = _rows(*_concatenated(matches), R_world_cam)
    blocks = _pair_blocks(matches)
    log_scales = _log_scales(num_views, matches, options) if options.pair_scales else None
    if log_scales is not None:
        scales = np.exp(log_scales)
        return scales, _centres_given_scales(num_views, J, cols, blocks, scales, options)
    weights = np.ones(len(J))
    x = np.zeros(4 * num_views)
    for it in range(options.iterations):
        x = _gauged_solve(_normal_matrix(J, weights, blocks, 4 * num_views))
        if it + 1 == options.iterations:
            break
        res = np.linalg.norm(np.einsum("nkj,nj->nk", J, x[cols]), axis=1)
        sigma = max(1.4826 * float(np.median(res)), MIN_RESIDUAL_SCALE)
        weights = 1.0 / (1.0 + (res / (options.cauchy_scale * sigma)) ** 2)
    x = x.reshape(num_views, 4)
    return x[:, 0], x[:, 1:]
