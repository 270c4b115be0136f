"""Robust refinement on the reprojection error: rotations, centres, pointmap scales and a depth factor per matched
point (a bundle adjustment whose points start on the local pointmaps and may move along their rays, held there by a
prior), plus focal self-calibration.

Each directed match places ``X = s_a R_a (d_m x_a) + t_a`` and compares its projection in view ``b`` with ``u_b``
(pixels). ``scipy.optimize.least_squares`` (trust region reflective) with a soft-L1 loss and an analytic sparse
Jacobian; rotations are updated on the left, ``R <- exp([w]) R``, re-linearised at every outer round. View 0 is the
gauge.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from jaxtyping import Float
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from panst3r_splat.core.cameras.translation import PlacedMatches, _concatenated, _skew

log = logging.getLogger(__name__)

PARAMS_PER_VIEW = 7
"""Rotation increment (3), centre (3), log scale (1)."""
FOCAL_MATCHES_PER_PAIR = 40
"""Matches per directed pair used to measure the focal factor (one number: a few suffice)."""
FOCAL_MAX_MATCHES = 6000
"""Matches used to measure the focal factor in all (fewer per pair when there are many pairs: 64 views have ~800
directed pairs, and 40 matches each made the measurement a third of the solve)."""
FOCAL_MIN_MATCHES_PER_PAIR = 8
"""Matches per directed pair kept however many pairs there are."""
FOCAL_FACTOR_STARTS = (1.0, 1.3)
"""Starting points of :func:`estimate_focal_factor` (weak models' focals tend to be short: factors above 1)."""


@dataclass(frozen=True)
class RefineOptions:
    """Refinement settings."""

    rounds: int = 2
    """Outer re-linearisation rounds."""
    max_nfev: int = 20
    """Function evaluations per round."""
    loss_scale_px: float = 2.0
    """Soft-L1 scale in pixels (errors beyond count about linearly)."""
    rotations: bool = True
    """Also refine the rotations (with ``free_depths``, a model's depth errors do not pull them: without, a smooth
    10 % depth error took the median from 0.3-0.6 deg to 2.2 deg)."""
    free_depths: bool = True
    """Every matched point also gets its own depth factor (a bundle adjustment whose points move along their rays),
    held to the local pointmap by ``depth_prior_px``."""
    depth_prior_px: float = 5.0
    """Weight of a point's log-depth change, in pixels of reprojection error per unit (10 % depth: 0.5 px)."""
    max_matches_per_pair: int = 100
    """Matches per directed pair used here (every k-th of the already subsampled set)."""
    max_matches: int = 20000
    """Matches used in all: with many pairs each keeps fewer (at least ``min_matches_per_pair``). Every match adds
    a free depth, so the cost grows with the total; 64 views have ~800 directed pairs, which ~25 matches each
    constrain as well as 100."""
    min_matches_per_pair: int = 20
    """Matches per directed pair kept however many pairs there are."""


@dataclass(frozen=True)
class _Problem:
    va: np.ndarray  # [N]
    vb: np.ndarray  # [N]
    points_a: np.ndarray  # [N, 3]
    target: np.ndarray  # [N, 2] pixels in b
    f: np.ndarray  # [N, 2] focal of b
    c: np.ndarray  # [N, 2] principal point of b


def _problem(matches: list[PlacedMatches], K: np.ndarray) -> _Problem:
    va, vb, points_a, rays_b = _concatenated(matches)
    f = np.stack([K[vb, 0, 0], K[vb, 1, 1]], axis=1)
    c = K[vb, :2, 2]
    return _Problem(va, vb, points_a, rays_b[:, :2] / rays_b[:, 2:3] * f + c, f, c)


def _project(p: _Problem, R: np.ndarray, centres: np.ndarray, scales: np.ndarray):
    Xr = scales[p.va, None] * np.einsum("nij,nj->ni", R[p.va], p.points_a)
    P = Xr + centres[p.va] - centres[p.vb]
    Y = np.einsum("nji,nj->ni", R[p.vb], P)  # R_b^T P
    # Points behind or beside camera b: a floor on z keeps their residual large but finite (a plain 1e-9 floor
    # makes residuals of 1e12 px that swamp the robust loss).
    z = np.maximum(Y[:, 2], 0.05 * np.linalg.norm(Y, axis=1) + 1e-12)
    return Y[:, :2] / z[:, None] * p.f + p.c - p.target, Xr, P, Y, z


def reprojection_errors(
    matches: list[PlacedMatches], K: Float[np.ndarray, "V 3 3"], R_world_cam: Float[np.ndarray, "V 3 3"],
    centres: Float[np.ndarray, "V 3"], scales: Float[np.ndarray, "V"],
) -> list[Float[np.ndarray, "M"]]:
    """Per directed pair, each match's reprojection error in view ``b`` (pixels)."""
    if not matches:
        return []
    err = np.linalg.norm(_project(_problem(matches, K), R_world_cam, centres, scales)[0], axis=1)
    return np.split(err, np.cumsum([len(m.points_a) for m in matches])[:-1])


def _residual_derivatives(p: _Problem, R: np.ndarray, Xr, P, Y, z) -> tuple[np.ndarray, np.ndarray]:
    """``([N, 2, 7], [N, 2, 6])``: each residual's derivatives with respect to the parameters of view ``a``
    (rotation, centre, log scale; the last is also the derivative with respect to the point's own log-depth) and of
    view ``b`` (rotation, centre).

    With ``g_k`` the gradient of pixel coordinate ``k`` with respect to the world point (``[N, 2, 3]``), a left
    rotation increment ``w`` of ``a`` moves the point by ``w x Xr`` and one of ``b`` moves ``P`` by ``-w x P``:
    ``g . (w x v) = w . (v x g)``, so the rotation columns are cross products (no batched ``3 x 3`` products)."""
    Rb = R[p.vb]  # [N, 3, 3]; Y = R_b^T P
    fz = p.f / z[:, None]  # [N, 2]
    # dr_k/dY = (f_k / z) (e_k - Y_k / z e_z); dr_k/dP = that times R_b^T, i.e. a row combination of R_b's columns.
    g = fz[:, :, None] * (Rb.transpose(0, 2, 1)[:, :2] - (Y[:, :2] / z[:, None])[:, :, None] * Rb[:, None, :, 2])
    J_a = np.concatenate([np.cross(Xr[:, None], g), g, np.einsum("nki,ni->nk", g, Xr)[:, :, None]], axis=2)
    J_b = np.concatenate([np.cross(g, P[:, None]), -g], axis=2)
    return J_a, J_b


def _column_map(num_views: int, free: np.ndarray) -> np.ndarray:
    """``[V * 7]``: the column of each view parameter among the unknowns (view-major, the free parameters of views
    ``1..V-1``), -1 for view 0 (the gauge) and for parameters held fixed."""
    index = np.full((num_views, PARAMS_PER_VIEW), -1, dtype=np.int64)
    index[1:, free] = np.arange((num_views - 1) * int(free.sum())).reshape(num_views - 1, -1)
    return index.ravel()


def _view_entries(p: _Problem, J_a: np.ndarray, J_b: np.ndarray, column_of: np.ndarray):
    """``(cols [2N, 13], vals [2N, 13])``: the view-parameter entries of every residual row (row ``2 i + k`` is
    coordinate ``k`` of match ``i``); a column of -1 marks an entry that is not an unknown."""
    cols = np.concatenate([column_of[p.va[:, None] * PARAMS_PER_VIEW + np.arange(7)],
                           column_of[p.vb[:, None] * PARAMS_PER_VIEW + np.arange(6)]], axis=1)  # [N, 13]
    vals = np.concatenate([J_a, J_b], axis=2)  # [N, 2, 13]
    return np.repeat(cols, 2, axis=0), vals.reshape(-1, 13)


def _csr_rows(cols: np.ndarray, vals: np.ndarray, num_cols: int) -> scipy.sparse.csr_matrix:
    """A CSR matrix straight from its rows' entries (``[R, K]``; columns < 0 left out): no sparse assembly (the
    ``coo -> csr`` sort of millions of entries was most of the refinement's Jacobian time)."""
    keep = cols >= 0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    return scipy.sparse.csr_matrix((vals[keep], cols[keep], indptr), shape=(len(cols), num_cols))


def _view_jacobian(
    p: _Problem, J_a: np.ndarray, J_b: np.ndarray, column_of: np.ndarray, num_cols: int, extra=None
) -> scipy.sparse.csr_matrix:
    """The sparse ``[2N, num_cols]`` Jacobian: the view-parameter derivatives (:func:`_residual_derivatives`) in
    the columns of ``column_of`` (:func:`_column_map`), with ``extra = (cols, vals)`` (``[2N, k]`` each: entries
    in columns after the view parameters) appended to every row."""
    cols, vals = _view_entries(p, J_a, J_b, column_of)
    if extra is not None:
        cols, vals = np.concatenate([cols, extra[0]], axis=1), np.concatenate([vals, extra[1]], axis=1)
    return _csr_rows(cols, vals, num_cols)


def _jacobian_reference(p: _Problem, R: np.ndarray, num_views: int, Xr, P, Y, z) -> scipy.sparse.csr_matrix:
    """Reference twin of :func:`_residual_derivatives` and :func:`_view_jacobian` (every view parameter free,
    nothing appended): the chain rule as ``[N, 2, 3] @ [N, 3, k]`` products and a sparse assembly of the blocks of
    views ``a`` and ``b``."""
    n = len(Y)
    dr_dY = np.zeros((n, 2, 3))
    dr_dY[:, 0, 0] = p.f[:, 0] / z
    dr_dY[:, 1, 1] = p.f[:, 1] / z
    dr_dY[:, 0, 2] = -p.f[:, 0] * Y[:, 0] / z**2
    dr_dY[:, 1, 2] = -p.f[:, 1] * Y[:, 1] / z**2
    Rbt = np.transpose(R[p.vb], (0, 2, 1))
    J_a = dr_dY @ np.concatenate([Rbt @ -_skew(Xr), Rbt, (Rbt @ Xr[:, :, None])], axis=2)  # [N, 2, 7]
    J_b = dr_dY @ np.concatenate([Rbt @ _skew(P), -Rbt], axis=2)  # [N, 2, 6]
    rows, cols, vals = [], [], []
    r = np.arange(2 * n).reshape(n, 2)
    for view, J in [(p.va, J_a), (p.vb, J_b)]:
        k = J.shape[2]
        keep = view != 0  # view 0 is the gauge
        cc = (view[keep] - 1)[:, None] * PARAMS_PER_VIEW + np.arange(k)  # [n', k]
        rows.append(np.broadcast_to(r[keep][:, :, None], (int(keep.sum()), 2, k)).ravel())
        cols.append(np.broadcast_to(cc[:, None, :], (int(keep.sum()), 2, k)).ravel())
        vals.append(J[keep].ravel())
    shape = (2 * n, (num_views - 1) * PARAMS_PER_VIEW)
    return scipy.sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                   shape=shape).tocsr()


def _round(p: _Problem, R0, c0, s0, options: RefineOptions):
    n = len(R0)

    free = np.ones(PARAMS_PER_VIEW, dtype=bool)
    free[:3] = options.rotations
    per_view = int(free.sum())

    num_view_params = (n - 1) * per_view
    num_points = len(p.va) if options.free_depths else 0
    prior = options.depth_prior_px

    def unpack(x):
        q = np.zeros((n, PARAMS_PER_VIEW))
        q[1:, free] = x[:num_view_params].reshape(n - 1, per_view)
        return Rotation.from_rotvec(q[:, :3]).as_matrix() @ R0, c0 + q[:, 3:6], s0 * np.exp(q[:, 6])

    def moved(x) -> _Problem:
        if not num_points:
            return p
        return dataclasses.replace(p, points_a=p.points_a * np.exp(x[num_view_params:])[:, None])

    def fun(x):
        residual = _project(moved(x), *unpack(x))[0].ravel()
        return np.concatenate([residual, prior * x[num_view_params:]]) if num_points else residual

    column_of = _column_map(n, free)

    def jac(x):
        R, c, s = unpack(x)
        q = moved(x)
        J_a, J_b = _residual_derivatives(q, R, *_project(q, R, c, s)[1:])
        if not num_points:
            return _view_jacobian(q, J_a, J_b, column_of, num_view_params)
        depth = (num_view_params + np.repeat(np.arange(num_points), 2)[:, None], J_a[:, :, 6].reshape(-1, 1))
        top = _view_jacobian(q, J_a, J_b, column_of, num_view_params + num_points, extra=depth)  # + own log-depth
        bottom = scipy.sparse.csr_matrix((np.full(num_points, prior), num_view_params + np.arange(num_points),
                                          np.arange(num_points + 1)), shape=(num_points, top.shape[1]))
        return scipy.sparse.vstack([top, bottom], format="csr")

    x0 = np.zeros(num_view_params + num_points)
    result = least_squares(fun, x0, jac=jac, loss="soft_l1", f_scale=options.loss_scale_px, method="trf",
                           x_scale="jac", max_nfev=options.max_nfev, tr_solver="lsmr")
    return unpack(result.x)


def _per_pair_cap(num_pairs: int, per_pair: int, total: int, floor: int) -> int:
    """Matches each of ``num_pairs`` pairs keeps: ``per_pair``, fewer when that would exceed ``total`` in all, never
    fewer than ``floor``."""
    return max(floor, min(per_pair, total // max(num_pairs, 1)))


def _strided(matches: list[PlacedMatches], cap: int) -> list[PlacedMatches]:
    """At most ``cap`` matches per pair, an even subsample (every k-th match)."""
    out = []
    for m in matches:
        step = -(-len(m.points_a) // cap)
        out.append(PlacedMatches(m.view_a, m.view_b, m.points_a[::step], m.rays_b[::step]))
    return out


def refine_cameras(
    matches: list[PlacedMatches],
    K: Float[np.ndarray, "V 3 3"],
    R_world_cam: Float[np.ndarray, "V 3 3"],
    centres: Float[np.ndarray, "V 3"],
    scales: Float[np.ndarray, "V"],
    options: RefineOptions = RefineOptions(),
) -> tuple[Float[np.ndarray, "V 3 3"], Float[np.ndarray, "V 3"], Float[np.ndarray, "V"]]:
    """``(R_world_cam, centres, scales)`` after minimising the robust reprojection error (view 0 stays fixed;
    rotations only with ``options.rotations``)."""
    if len(R_world_cam) < 2 or not matches:
        return R_world_cam, centres, scales
    cap = _per_pair_cap(len(matches), options.max_matches_per_pair, options.max_matches, options.min_matches_per_pair)
    p = _problem(_strided(matches, cap), K)
    R, c, s = R_world_cam, centres, scales
    for _ in range(options.rounds):
        R, c, s = _round(p, R, c, s, options)
    return R, c, s


def estimate_focal_factor(
    matches: list[PlacedMatches],
    K: Float[np.ndarray, "V 3 3"],
    R_world_cam: Float[np.ndarray, "V 3 3"],
    centres: Float[np.ndarray, "V 3"],
    scales: Float[np.ndarray, "V"],
    options: RefineOptions = RefineOptions(),
) -> float:
    """One focal factor ``phi`` for all views: the focal of the local pointmaps times ``phi`` (their points
    re-read as depth along the rays of the new focal, ``x, y -> x / phi, y / phi``) minimises the robust
    reprojection error jointly with rotations, centres and scales. A weak model's pointmaps get the field of view
    wrong the same way in every view (25 % too short a focal at 192x144, ../shared/docs/model_and_cameras_findings.md);
    the epipolar geometry of other views tells the right one."""
    n = len(R_world_cam)
    if n < 2 or not matches:
        return 1.0
    cap = _per_pair_cap(len(matches), FOCAL_MATCHES_PER_PAIR, FOCAL_MAX_MATCHES, FOCAL_MIN_MATCHES_PER_PAIR)
    base = _problem(_strided(matches, cap), K)

    def problem(log_phi: float) -> _Problem:
        phi = float(np.exp(log_phi))
        return _Problem(base.va, base.vb, base.points_a * [1.0 / phi, 1.0 / phi, 1.0], base.target, base.f * phi,
                        base.c)

    def unpack(x):
        q = np.zeros((n, PARAMS_PER_VIEW))
        q[1:, :6] = x[:-1].reshape(n - 1, 6)  # scales stay: a pure rotation would leave them free to run off
        return Rotation.from_rotvec(q[:, :3]).as_matrix() @ R_world_cam, centres + q[:, 3:6], scales * np.exp(q[:, 6])

    def fun(x):
        return _project(problem(x[-1]), *unpack(x))[0].ravel()

    column_of = _column_map(n, np.arange(PARAMS_PER_VIEW) < 6)
    phi_col = np.full((2 * len(base.va), 1), (n - 1) * 6)

    def jac(x):
        R, c, s = unpack(x)
        p = problem(x[-1])
        r0, Xr, P, Y, z = _project(p, R, c, s)
        eps = 1e-6
        dphi = (_project(problem(x[-1] + eps), R, c, s)[0].ravel() - r0.ravel()) / eps
        J_a, J_b = _residual_derivatives(p, R, Xr, P, Y, z)
        return _view_jacobian(p, J_a, J_b, column_of, (n - 1) * 6 + 1, extra=(phi_col, dphi[:, None]))

    best = None
    for start in FOCAL_FACTOR_STARTS:  # the cost has local minima in phi: a couple of starts, the lowest wins
        x0 = np.zeros((n - 1) * 6 + 1)
        x0[-1] = np.log(start)
        result = least_squares(fun, x0, jac=jac, loss="soft_l1", f_scale=options.loss_scale_px, method="trf",
                               x_scale="jac", max_nfev=3 * options.max_nfev, tr_solver="lsmr")
        log.debug("focal factor from %.2f: %.4f, cost %.4g after %d evaluations", start, np.exp(result.x[-1]),
                  result.cost, result.nfev)
        if best is None or result.cost < best.cost:
            best = result
    return float(np.exp(best.x[-1]))
