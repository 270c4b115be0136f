"""Rotation averaging laws: exact recovery, gauge, robustness to wrong pairs; the pair-error metric."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial.transform import Rotation

from panst3r_splat.core.cameras.metrics import UNCONNECTED_DEG, pair_errors
from panst3r_splat.core.cameras.rotation_averaging import average_rotations, edge_residuals_deg
from panst3r_splat.core.transforms import nearest_rotation


def _problem(num_views: int, seed: int):
    R = Rotation.random(num_views, random_state=seed).as_matrix()
    edges = np.array(list(itertools.combinations(range(num_views), 2)))
    R_rel = np.transpose(R[edges[:, 1]], (0, 2, 1)) @ R[edges[:, 0]]  # R_b^T R_a
    return R, edges, R_rel


def _error_deg(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    aligned = truth[0].T[None] @ truth  # the solver's gauge: view 0 is the world
    return np.degrees(Rotation.from_matrix(np.transpose(estimate, (0, 2, 1)) @ aligned).magnitude())


def test_exact_relative_rotations_give_exact_absolute_rotations_in_view0_gauge() -> None:
    R, edges, R_rel = _problem(7, 0)
    estimate = average_rotations(7, edges, R_rel, np.ones(len(edges)))
    np.testing.assert_allclose(estimate[0], np.eye(3), atol=1e-12)
    assert _error_deg(estimate, R).max() < 1e-9
    assert edge_residuals_deg(estimate, edges, R_rel).max() < 1e-9


def test_wrong_pairs_are_outvoted() -> None:
    R, edges, R_rel = _problem(10, 1)
    rng = np.random.default_rng(0)
    wrong = rng.random(len(edges)) < 0.2
    R_rel = R_rel.copy()
    R_rel[wrong] = Rotation.random(int(wrong.sum()), random_state=2).as_matrix()
    noisy = R_rel @ Rotation.from_rotvec(rng.normal(0, np.radians(0.3), (len(edges), 3))).as_matrix()
    estimate = average_rotations(10, edges, noisy, np.ones(len(edges)))
    without_wrong = average_rotations(10, edges[~wrong], noisy[~wrong], np.ones(int((~wrong).sum())))
    assert _error_deg(estimate, R).max() < 1.0  # about the noise of one pair
    assert _error_deg(estimate, without_wrong).max() < 0.1  # as if the wrong pairs had not been there
    assert (edge_residuals_deg(estimate, edges, noisy)[wrong] > 10.0).all()


def test_nearest_rotation_is_a_projection() -> None:
    R = Rotation.random(4, random_state=3).as_matrix()
    np.testing.assert_allclose(nearest_rotation(R), R, atol=1e-12)
    np.testing.assert_allclose(nearest_rotation(2.5 * R), R, atol=1e-12)
    assert np.allclose(np.linalg.det(nearest_rotation(-R)), 1.0)


def test_pair_errors_are_frame_and_scale_free_and_count_missing_views() -> None:
    rng = np.random.default_rng(4)
    T = np.tile(np.eye(4), (5, 1, 1))
    T[:, :3, :3] = Rotation.random(5, random_state=5).as_matrix()
    T[:, :3, 3] = rng.normal(size=(5, 3))
    S = np.eye(4)
    S[:3, :3] = 3.0 * Rotation.random(random_state=6).as_matrix()  # a similarity of the world
    S[:3, 3] = [1.0, -2.0, 0.5]
    moved = S @ T
    moved[:, :3, :3] /= 3.0
    errors = pair_errors(moved, T)
    assert errors.rotation_deg.max() < 1e-6 and np.nanmax(errors.translation_deg) < 1e-6
    moved[2] = np.nan
    errors = pair_errors(moved, T)
    assert (errors.rotation_deg == UNCONNECTED_DEG).sum() == 4 and errors.connected_share == 0.8
