"""Camera centres and per-view pointmap scales given the rotations: one linear least-squares problem.

A directed match puts the local point ``x_a`` of view ``a`` (camera frame, the model's per-view scale) on the ray of
view ``b`` through ``u_b``. With ``X = s_a R_a x_a + t_a`` and the world ray direction ``d = R_b K_b^-1 (u_b, 1)``,
``d x (X - t_b) = 0`` is linear in ``(s_a, t_a, t_b)``. Rows are divided by ``|x_a|`` (an angle-like residual, so
near and far points count alike) and re-weighted with a Cauchy loss (IRLS). Gauge: ``s_0 = 1, t_0 = 0`` (the world is
view 0's camera at view 0's pointmap scale). The normal equations are accumulated pair by pair, so the memory does not
grow with the number of matches.

A view seen only from the same centre (pure rotation) constrains no scale: a weak prior ``s = 1`` keeps the system
regular without moving a determined solution measurably.
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


@dataclass(frozen=True)
class TranslationOptions:
    """IRLS settings of the translation problem."""

    iterations: int = 8
    """IRLS iterations (the first is plain least squares)."""
    cauchy_scale: float = 3.0
    """Cauchy scale in units of the robust (MAD) spread of the residuals."""


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
