"""OpenCV <-> nerfstudio camera conventions and the dataparser normalisation: round trips, hand cases, and the law
that every convention change leaves the pixel a world point projects to unchanged (checked against nerfstudio's own
ray generator)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from panst3r_splat.pipeline.datasets.conventions import (
    NormalisationTransform,
    as_4x4,
    from_nerfstudio_cameras,
    intrinsics_from_nerfstudio,
    intrinsics_to_nerfstudio,
    normalisation_from_poses,
    opencv_to_opengl,
    opengl_to_opencv,
    to_nerfstudio_cameras,
)

W, H = 16, 12


def _rotations(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r))
        out.append(q * np.sign(np.linalg.det(q)))
    return torch.tensor(np.stack(out))


def _cameras(n: int, seed: int) -> torch.Tensor:
    T = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    T[:, :3, :3] = _rotations(n, seed)
    T[:, :3, 3] = torch.tensor(np.random.default_rng(seed + 100).normal(size=(n, 3)) * 3.0)
    return T


def _K() -> torch.Tensor:
    return torch.tensor([[14.0, 0.0, (W - 1) / 2], [0.0, 15.0, (H - 1) / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _project(K: torch.Tensor, T_world_cam: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Pixel of world point X in our convention (OpenCV camera-to-world, pixel-centre K)."""
    R, t = T_world_cam[:3, :3], T_world_cam[:3, 3]
    x_cam = R.T @ (X - t)
    uvw = K @ x_cam
    return uvw[:2] / uvw[2]


@pytest.mark.parametrize("seed", range(4))
def test_axis_flip_is_an_involution(seed: int) -> None:
    T = _cameras(5, seed)
    torch.testing.assert_close(opengl_to_opencv(opencv_to_opengl(T)), T, rtol=0, atol=0)
    torch.testing.assert_close(opencv_to_opengl(opengl_to_opencv(T[:, :3])), T[:, :3], rtol=0, atol=0)


def test_axis_flip_hand_case() -> None:
    # An OpenCV camera at the origin looking down +z: in OpenGL axes it looks down its -z, which is world +z.
    gl = opencv_to_opengl(torch.eye(4))
    torch.testing.assert_close(gl, torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0])))
    forward_world = gl[:3, :3] @ torch.tensor([0.0, 0.0, -1.0])
    torch.testing.assert_close(forward_world, torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(as_4x4(gl[:3]), gl)


def test_intrinsics_hand_case_and_round_trip() -> None:
    fx, fy, cx, cy = intrinsics_to_nerfstudio(_K()[None])
    # Our image centre (W - 1) / 2 is nerfstudio's W / 2 (its pixel centres sit at +0.5).
    assert float(cx) == W / 2 and float(cy) == H / 2 and float(fx) == 14.0 and float(fy) == 15.0
    torch.testing.assert_close(intrinsics_from_nerfstudio(fx, fy, cx, cy)[0], _K())


@pytest.mark.parametrize("seed, n", [(0, 4), (1, 1), (2, 3)])
def test_nerfstudio_cameras_round_trip(seed: int, n: int) -> None:
    T = _cameras(n, seed).float()
    K = _K().float().expand(n, 3, 3).clone()
    K_back, T_back = from_nerfstudio_cameras(to_nerfstudio_cameras(K, T, W, H))
    torch.testing.assert_close(K_back, K)
    torch.testing.assert_close(T_back, T)


@pytest.mark.parametrize("seed", range(3))
def test_nerfstudio_rays_pass_through_our_projection(seed: int) -> None:
    """A point at depth z behind pixel (row, col) in our convention lies on nerfstudio's ray of that pixel."""
    T = _cameras(1, seed)
    K = _K()
    cams = to_nerfstudio_cameras(K[None].float(), T.float(), W, H)
    rays = cams.generate_rays(camera_indices=0, keep_shape=True)
    rng = np.random.default_rng(seed)
    for row, col, z in [(0, 0, 2.0), (H - 1, W - 1, 0.5), (int(rng.integers(H)), int(rng.integers(W)), 7.0)]:
        x_cam = torch.linalg.solve(K, torch.tensor([col, row, 1.0], dtype=torch.float64)) * z
        X = T[0, :3, :3] @ x_cam + T[0, :3, 3]
        origin = rays.origins[row, col].double()
        direction = rays.directions[row, col].double()
        offset = X - origin
        along = offset @ direction
        assert along > 0
        torch.testing.assert_close(origin + along * direction, X, atol=1e-4, rtol=0)
        torch.testing.assert_close(_project(K, T[0], X), torch.tensor([col, row], dtype=torch.float64))


def _random_normalisation(seed: int) -> NormalisationTransform:
    R = _rotations(1, seed)[0]
    t = np.random.default_rng(seed).normal(size=3)
    return NormalisationTransform(R=tuple(map(tuple, R.tolist())), t=tuple(t.tolist()), scale=0.3 + seed)


@pytest.mark.parametrize("seed", range(4))
def test_normalisation_round_trips(seed: int) -> None:
    norm = _random_normalisation(seed)
    X = torch.tensor(np.random.default_rng(seed).normal(size=(10, 3)))
    torch.testing.assert_close(norm.invert_points(norm.apply_points(X)), X)
    T = _cameras(3, seed)
    torch.testing.assert_close(norm.invert_T_world_cam(norm.apply_T_world_cam(T)), T)
    back = NormalisationTransform.from_json(json.loads(json.dumps(norm.to_json())))
    torch.testing.assert_close(back.apply_points(X), norm.apply_points(X))
    fit = norm.to_data()
    torch.testing.assert_close(fit.apply(norm.apply_points(X)), X)


@pytest.mark.parametrize("seed", range(4))
def test_normalisation_keeps_every_projection(seed: int) -> None:
    """A similarity moves points and cameras together: pixels do not change (and the axes stay orthonormal)."""
    norm = _random_normalisation(seed)
    T = _cameras(3, seed)
    X = torch.tensor(np.random.default_rng(seed + 7).normal(size=(6, 3)))
    T_ns = norm.apply_T_world_cam(T)
    X_ns = norm.apply_points(X)
    for v in range(3):
        R = T_ns[v, :3, :3]
        torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=R.dtype))
        for x, x_ns in zip(X, X_ns):
            torch.testing.assert_close(_project(_K(), T_ns[v], x_ns), _project(_K(), T[v], x))


def test_normalisation_hand_case() -> None:
    # Cameras at x = 1 and x = 3 (no rotation): centring moves them to -1, +1; they already fill [-1, 1].
    T = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    T[0, 0, 3], T[1, 0, 3] = 1.0, 3.0
    norm = normalisation_from_poses(T, orientation="none", center="poses", auto_scale=True)
    assert norm.scale == pytest.approx(1.0)
    assert norm.t == pytest.approx((-2.0, 0.0, 0.0))
    norm2 = normalisation_from_poses(T, orientation="none", center="poses", auto_scale=True, scale_factor=0.5)
    torch.testing.assert_close(norm2.apply_points(T[:, :3, 3]), torch.tensor([[-0.5, 0, 0], [0.5, 0, 0]],
                                                                           dtype=torch.float64))


@pytest.mark.parametrize("seed", range(3))
def test_normalisation_up_orients_cameras_to_z_up(seed: int) -> None:
    """'up': the mean camera up (OpenCV -y) becomes world +z; cameras fill [-1, 1]^3."""
    tilt = _rotations(1, seed)[0]
    # Level cameras (up = world -y of OpenCV... built as camera -y = tilt @ e_z), then tilted as a whole.
    yaw = torch.linspace(0, 2.5, 5, dtype=torch.float64)
    T = torch.eye(4, dtype=torch.float64).repeat(5, 1, 1)
    for i, a in enumerate(yaw):
        c, s = torch.cos(a), torch.sin(a)
        forward = torch.stack([c, s, torch.zeros(())])
        down = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
        right = torch.linalg.cross(down, forward)
        T[i, :3, :3] = tilt @ torch.stack([right, down, forward], dim=1)
        T[i, :3, 3] = tilt @ torch.stack([2 * c, 2 * s, torch.tensor(1.5, dtype=torch.float64)])
    norm = normalisation_from_poses(T)
    T_ns = norm.apply_T_world_cam(T)
    up = -T_ns[:, :3, 1].mean(0)
    torch.testing.assert_close(up / up.norm(), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-6, rtol=0)
    assert float(T_ns[:, :3, 3].abs().max()) == pytest.approx(1.0)


def test_normalisation_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="rotation"):
        NormalisationTransform(R=((2.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)), t=(0.0, 0.0, 0.0), scale=1.0)
    with pytest.raises(ValueError, match="positive"):
        NormalisationTransform(R=NormalisationTransform.identity().R, t=(0.0, 0.0, 0.0), scale=0.0)
    with pytest.raises(ValueError, match="dataparser transform"):
        NormalisationTransform.from_json({"scale": 1.0})
