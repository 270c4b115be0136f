"""The one geometry vocabulary: laws of the similarity type, rotation angles, quaternions, rigid inverses, look-at."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from panst3r_splat.core.transforms import (
    Similarity, look_at, nearest_rotation, quaternion_to_rotation, relative_rotation_deg, rigid_inverse,
    rotation_angle_deg, rotation_to_quaternion,
)

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _similarity(seed: int) -> Similarity:
    rng = np.random.default_rng(seed)
    R = torch.from_numpy(Rotation.random(random_state=seed).as_matrix())
    return Similarity(scale=torch.tensor(rng.uniform(0.2, 5.0)), R=R, t=torch.from_numpy(rng.normal(size=3)))


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_similarity_inverse_and_matrix_laws(seed: int) -> None:
    sim = _similarity(seed)
    points = torch.from_numpy(np.random.default_rng(seed).normal(size=(20, 3)))
    torch.testing.assert_close(sim.inverse().apply(sim.apply(points)), points)
    homogeneous = torch.cat([points, torch.ones(20, 1, dtype=points.dtype)], 1) @ sim.matrix().T
    torch.testing.assert_close(homogeneous[:, :3], sim.apply(points))
    torch.testing.assert_close(sim.inverse().matrix(), torch.linalg.inv(sim.matrix()))


@settings(max_examples=20, deadline=None)
@given(seeds)
def test_moving_cameras_keeps_their_axes_and_moves_their_centres(seed: int) -> None:
    sim = _similarity(seed)
    T = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    T[:, :3, :3] = torch.from_numpy(Rotation.random(3, random_state=seed + 1).as_matrix())
    T[:, :3, 3] = torch.from_numpy(np.random.default_rng(seed).normal(size=(3, 3)))
    moved = sim.transform_T_world_cam(T)
    torch.testing.assert_close(moved[:, :3, 3], sim.apply(T[:, :3, 3]))
    torch.testing.assert_close(moved[:, :3, :3] @ moved[:, :3, :3].transpose(1, 2),
                               torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
    torch.testing.assert_close(sim.inverse().transform_T_world_cam(moved), T)


def test_identity_and_from_parts() -> None:
    points = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(Similarity.identity().apply(points), points)
    sim = Similarity.from_parts(2.0, np.eye(3), [1.0, 0.0, 0.0])
    torch.testing.assert_close(sim.apply(points), 2 * points + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=0.0, max_value=180.0), seeds)
def test_rotation_angle_is_the_angle_in_torch_and_numpy(angle: float, seed: int) -> None:
    axis = np.random.default_rng(seed).normal(size=3)
    R = Rotation.from_rotvec(np.radians(angle) * axis / np.linalg.norm(axis)).as_matrix()
    assert float(rotation_angle_deg(R)) == pytest.approx(angle, abs=1e-6)
    assert float(rotation_angle_deg(torch.from_numpy(R))) == pytest.approx(angle, abs=1e-6)
    other = Rotation.random(random_state=seed).as_matrix()
    assert float(relative_rotation_deg(other, other @ R)) == pytest.approx(angle, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_quaternions_round_trip_with_a_non_negative_w(seed: int) -> None:
    R = Rotation.random(4, random_state=seed).as_matrix()
    q = rotation_to_quaternion(R)
    assert q.shape == (4, 4) and (q[:, 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_rotation(q), R, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_rotation(3.0 * q[0]), R[0], atol=1e-12)  # any norm


def test_quaternion_order_is_w_first() -> None:
    half_turn_about_z = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(rotation_to_quaternion(half_turn_about_z), [0.0, 0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(rotation_to_quaternion(np.eye(3)), [1.0, 0.0, 0.0, 0.0])


def test_rigid_inverse_and_nearest_rotation() -> None:
    T = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    T[:, :3, :3] = torch.from_numpy(Rotation.random(2, random_state=3).as_matrix())
    T[:, :3, 3] = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(rigid_inverse(T), torch.linalg.inv(T))
    R = Rotation.random(random_state=4).as_matrix()
    np.testing.assert_allclose(nearest_rotation(2.0 * R), R, atol=1e-12)  # a scaled rotation projects back
    reflected = R @ np.diag([1.0, 1.0, -1.0])
    assert np.linalg.det(nearest_rotation(reflected)) == pytest.approx(1.0)


def test_look_at_points_the_optical_axis_and_keeps_up_up() -> None:
    T = look_at(np.array([1.0, 2.0, 1.5]), np.array([3.0, 2.0, 1.5]))
    np.testing.assert_allclose(T[:3, 2], [1.0, 0.0, 0.0], atol=1e-12)  # z forward, towards the target
    np.testing.assert_allclose(T[:3, 1], [0.0, 0.0, -1.0], atol=1e-12)  # y down on screen = world down
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)
    straight_down = look_at(np.zeros(3), np.array([0.0, 0.0, -2.0]))  # along `up`: still a rotation
    np.testing.assert_allclose(straight_down[:3, 2], [0.0, 0.0, -1.0], atol=1e-12)
    assert np.linalg.det(straight_down[:3, :3]) == pytest.approx(1.0)
    rolled = look_at(np.array([1.0, 2.0, 1.5]), np.array([3.0, 2.0, 1.5]), roll=np.pi / 2)
    np.testing.assert_allclose(rolled[:3, 2], T[:3, 2], atol=1e-12)
    assert float(rotation_angle_deg(T[:3, :3].T @ rolled[:3, :3])) == pytest.approx(90.0)
