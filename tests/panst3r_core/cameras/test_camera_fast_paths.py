"""The camera solver's fast paths against their slow, obviously-correct twins (STYLE.md principle 8)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from panst3r_splat.core.cameras.refine import (
    PARAMS_PER_VIEW,
    _column_map,
    _jacobian_reference,
    _problem,
    _project,
    _residual_derivatives,
    _view_jacobian,
)
from panst3r_splat.core.cameras.solver import _unique_rows
from panst3r_splat.core.cameras.translation import (
    PlacedMatches,
    _concatenated,
    _normal_matrix,
    _normal_matrix_reference,
    _pair_blocks,
    _rows,
)
from panst3r_splat.core.cameras.two_view import (
    _ransac_translation,
    _ransac_translation_reference,
    _ray_geometry,
    pointmap_residual,
)


def _placed_matches(num_views: int, seed: int) -> list[PlacedMatches]:
    """Random directed matches between random view pairs (points in front of the camera, rays through the image)."""
    rng = np.random.default_rng(seed)
    out = []
    for a in range(num_views):
        for b in range(num_views):
            if a != b and rng.random() < 0.5:
                m = int(rng.integers(1, 60))
                rays = np.concatenate([rng.normal(0.0, 0.3, (m, 2)), np.ones((m, 1))], axis=1)
                out.append(PlacedMatches(a, b, rng.uniform([-1, -1, 2], [1, 1, 4], (m, 3)), rays))
    return out


def test_pairwise_normal_matrix_is_the_sparse_assembly() -> None:
    num_views = 7
    matches = _placed_matches(num_views, seed=0)
    R = Rotation.random(num_views, random_state=1).as_matrix()
    J, cols = _rows(*_concatenated(matches), R)
    weights = np.random.default_rng(2).uniform(0.1, 1.0, len(J))
    fast = _normal_matrix(J, weights, _pair_blocks(matches), 4 * num_views)
    slow = _normal_matrix_reference(J, cols, weights, 4 * num_views)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12 * np.abs(slow).max())


def test_direct_csr_jacobian_is_the_chain_rule_and_sparse_assembly() -> None:
    num_views = 6
    matches = _placed_matches(num_views, seed=3)
    K = np.repeat(np.array([[100.0, 0.0, 64.0], [0.0, 110.0, 48.0], [0.0, 0.0, 1.0]])[None], num_views, axis=0)
    rng = np.random.default_rng(4)
    R = Rotation.random(num_views, random_state=5).as_matrix()
    centres, scales = rng.normal(0.0, 0.5, (num_views, 3)), np.exp(rng.normal(0.0, 0.2, num_views))
    p = _problem(matches, K)
    _, Xr, P, Y, z = _project(p, R, centres, scales)
    J_a, J_b = _residual_derivatives(p, R, Xr, P, Y, z)
    every = np.ones(PARAMS_PER_VIEW, dtype=bool)
    fast = _view_jacobian(p, J_a, J_b, _column_map(num_views, every), (num_views - 1) * PARAMS_PER_VIEW)
    slow = _jacobian_reference(p, R, num_views, Xr, P, Y, z)
    scale = abs(slow).max()
    assert abs(fast - slow).max() <= 1e-12 * scale  # relative to the largest entry (pixels per unit)
    # Held-fixed parameters leave their columns out, in view-major order.
    no_rotation = every.copy()
    no_rotation[:3] = False
    reduced = _view_jacobian(p, J_a, J_b, _column_map(num_views, no_rotation), (num_views - 1) * 4)
    keep = np.flatnonzero(np.tile(no_rotation, num_views - 1))
    assert abs(reduced - slow[:, keep]).max() <= 1e-12 * scale


@pytest.mark.parametrize("outliers", [False, True])
def test_shared_ray_geometry_gives_the_same_translation_starts(outliers: bool) -> None:
    rng = np.random.default_rng(6)
    points = rng.uniform([-1, -1, 2], [1, 1, 5], (150, 3))
    R, t = Rotation.from_rotvec(rng.normal(0.0, 0.2, 3)).as_matrix(), rng.normal(0.0, 0.3, 3)
    seen = points @ R.T + t  # in front of camera b
    rays = seen / seen[:, 2:]
    if outliers:
        rays[:45, :2] += rng.normal(0.0, 0.3, (45, 2))
    geometry = _ray_geometry(rays, points)
    for candidate in [R, *Rotation.random(5, random_state=8).as_matrix()]:
        SX = np.einsum("mij,mj->mi", geometry.S, points @ candidate.T)
        np.testing.assert_array_equal(_ransac_translation(geometry, SX),
                                      _ransac_translation_reference(geometry.S, SX, geometry.w))
    residual, translation = pointmap_residual(R, rays, points)
    assert residual < 1e-9  # the true rotation explains the points
    if not outliers:
        np.testing.assert_allclose(translation, t, atol=1e-9)


def test_unique_rows_is_numpy_unique() -> None:
    rng = np.random.default_rng(11)
    rows = rng.integers(0, 3, (500, 4)).astype(np.float64)
    rows[::7] += 0.5
    for case in (rows, rows[:1], rows[:0]):
        unique, inverse = _unique_rows(case)
        expected, expected_inverse = np.unique(case, axis=0, return_inverse=True)
        np.testing.assert_array_equal(unique, expected)
        np.testing.assert_array_equal(inverse, expected_inverse.ravel())
        np.testing.assert_array_equal(unique[inverse], case)
