"""Cameras from pointmaps: Weiszfeld focal, weighted Procrustes, Umeyama Sim(3), fused cloud."""

from __future__ import annotations

import numpy as np
import pytest
from _typecheck import rejects
import torch

from panst3r_splat.core import geometry as geo
from panst3r_splat.core.geometry import PrincipalPoint


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _pinhole_pointmap(K: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Camera-frame points of every pixel centre (integer coordinates) at the given z-depth."""
    h, w = depth.shape
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    rays = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ np.linalg.inv(K).T
    return rays * depth[..., None]


def _scene(rng, h=12, w=16, focal=18.0, mode=PrincipalPoint.CENTER):
    cx, cy = geo.principal_point(h, w, mode)
    K = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1.0]])
    local = _pinhole_pointmap(K, rng.uniform(1.0, 4.0, size=(h, w)))
    T = np.eye(4)
    T[:3, :3] = _rotation(rng)
    T[:3, 3] = rng.normal(size=3)
    world = local @ T[:3, :3].T + T[:3, 3]
    return K, T, local, world


# -------------------------------------------------------------------------------------------------------- focal


def test_principal_point_conventions():
    assert geo.principal_point(48, 64) == (31.5, 23.5)
    assert geo.principal_point(48, 64, PrincipalPoint.OFFICIAL) == (32.0, 24.0)


@pytest.mark.parametrize("mode", list(PrincipalPoint))
def test_focal_recovered_exactly_from_pinhole_pointmap(mode):
    rng = np.random.default_rng(0)
    K, _, local, _ = _scene(rng, mode=mode)
    pp = geo.principal_point(*local.shape[:2], mode)
    focal = geo.estimate_focal_weiszfeld(torch.from_numpy(local), pp)
    assert float(focal) == pytest.approx(K[0, 0], rel=1e-6)


def test_focal_wrong_principal_point_is_biased():
    """The convention matters: a pointmap made with cx = W/2 read with the centre convention is not exact."""
    rng = np.random.default_rng(1)
    K, _, local, _ = _scene(rng, mode=PrincipalPoint.OFFICIAL)
    focal = float(geo.estimate_focal_weiszfeld(torch.from_numpy(local)))
    assert abs(focal - K[0, 0]) > 1e-3


def test_focal_matches_reference_twin_on_noisy_pointmaps():
    rng = np.random.default_rng(2)
    pts = np.stack([rng.normal(size=(3, 10, 14)) * 0.3 + 0.1, rng.normal(size=(3, 10, 14)) * 0.3,
                    rng.uniform(0.5, 3.0, size=(3, 10, 14))], axis=-1)
    pts[0, 0, 0, 2] = 0.0  # a point at z = 0: x/z = inf -> 0 upstream
    pp = geo.principal_point(10, 14, PrincipalPoint.OFFICIAL)
    fast = geo.estimate_focal_weiszfeld(torch.from_numpy(pts), pp)
    assert fast.shape == (3,)
    for v in range(3):
        assert float(fast[v]) == pytest.approx(geo._estimate_focal_weiszfeld(pts[v], pp), rel=1e-9)


def test_focal_float32_close_to_float64_twin():
    rng = np.random.default_rng(3)
    _, _, local, _ = _scene(rng)
    local = local + rng.normal(scale=0.02, size=local.shape)
    pp = geo.principal_point(12, 16)
    fast = float(geo.estimate_focal_weiszfeld(torch.from_numpy(local).float(), pp))
    assert fast == pytest.approx(geo._estimate_focal_weiszfeld(local, pp), rel=1e-4)


def test_focal_is_clamped_like_dust3r():
    rng = np.random.default_rng(4)
    h, w = 12, 16
    base = max(h, w) / (2 * np.tan(np.deg2rad(30)))
    _, _, local, _ = _scene(rng, h, w, focal=10 * base)
    assert float(geo.estimate_focal_weiszfeld(torch.from_numpy(local))) == pytest.approx(3.5 * base)


def test_intrinsics_from_focal():
    K = geo.intrinsics_from_focal(torch.tensor([10.0, 20.0]), 48, 64)
    assert K.shape == (2, 3, 3)
    np.testing.assert_allclose(K[1].numpy(), [[20, 0, 31.5], [0, 20, 23.5], [0, 0, 1]])


# --------------------------------------------------------------------------------------------------- procrustes


def test_procrustes_recovers_a_rigid_transform_batched():
    rng = np.random.default_rng(5)
    Rs = np.stack([_rotation(rng) for _ in range(4)])
    ts = rng.normal(size=(4, 3))
    src = rng.normal(size=(4, 50, 3))
    dst = np.einsum("bij,bpj->bpi", Rs, src) + ts[:, None]
    R, t = geo.rigid_procrustes(torch.from_numpy(src), torch.from_numpy(dst))
    np.testing.assert_allclose(R.numpy(), Rs, atol=1e-10)
    np.testing.assert_allclose(t.numpy(), ts, atol=1e-10)


def test_procrustes_zero_weight_outliers_are_ignored():
    rng = np.random.default_rng(6)
    R0, t0 = _rotation(rng), rng.normal(size=3)
    src = rng.normal(size=(40, 3))
    dst = src @ R0.T + t0
    weights = rng.uniform(0.5, 2.0, size=40)
    dst[:10] += rng.normal(scale=5.0, size=(10, 3))  # outliers
    weights[:10] = 0.0
    R, t = geo.rigid_procrustes(torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(weights))
    np.testing.assert_allclose(R.numpy(), R0, atol=1e-10)
    np.testing.assert_allclose(t.numpy(), t0, atol=1e-10)
    # ... and with uniform weights the outliers do move the fit
    R_u, _ = geo.rigid_procrustes(torch.from_numpy(src), torch.from_numpy(dst))
    assert np.abs(R_u.numpy() - R0).max() > 1e-3


def test_procrustes_matches_quaternion_twin_on_noisy_data():
    rng = np.random.default_rng(7)
    src = rng.normal(size=(30, 3))
    dst = src @ _rotation(rng).T + rng.normal(size=3) + rng.normal(scale=0.3, size=(30, 3))
    w = rng.uniform(0, 1, size=30)
    R, t = geo.rigid_procrustes(torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(w))
    R_ref, t_ref = geo._rigid_procrustes(src, dst, w)
    np.testing.assert_allclose(R.numpy(), R_ref, atol=1e-9)
    np.testing.assert_allclose(t.numpy(), t_ref, atol=1e-9)


def test_procrustes_returns_a_proper_rotation_for_mirrored_points():
    rng = np.random.default_rng(8)
    src = rng.normal(size=(20, 3))
    dst = src * np.array([1.0, 1.0, -1.0])  # a reflection: the best *rotation* must still have det +1
    R, _ = geo.rigid_procrustes(torch.from_numpy(src), torch.from_numpy(dst))
    assert float(torch.linalg.det(R)) == pytest.approx(1.0)
    np.testing.assert_allclose((R @ R.T).numpy(), np.eye(3), atol=1e-12)


def test_procrustes_bad_weights_shape():
    with rejects(ValueError, match="weights"):
        geo.rigid_procrustes(torch.zeros(5, 3), torch.zeros(5, 3), torch.ones(4))


# ------------------------------------------------------------------------------------------------------ umeyama


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(9)
    s0, R0, t0 = 2.5, _rotation(rng), rng.normal(size=3)
    src = rng.normal(size=(25, 3))
    dst = s0 * src @ R0.T + t0
    fit = geo.umeyama_sim3(torch.from_numpy(src), torch.from_numpy(dst))
    assert float(fit.scale) == pytest.approx(s0, rel=1e-12)
    np.testing.assert_allclose(fit.R.numpy(), R0, atol=1e-10)
    np.testing.assert_allclose(fit.t.numpy(), t0, atol=1e-10)
    assert float(fit.residual) < 1e-10
    np.testing.assert_allclose(fit.apply(torch.from_numpy(src)).numpy(), dst, atol=1e-10)
    M = fit.matrix().numpy()
    np.testing.assert_allclose(np.c_[src, np.ones(25)] @ M.T, np.c_[dst, np.ones(25)], atol=1e-10)


def test_umeyama_weights_and_twin():
    rng = np.random.default_rng(10)
    src = rng.normal(size=(30, 3))
    dst = 0.7 * src @ _rotation(rng).T + rng.normal(size=3) + rng.normal(scale=0.05, size=(30, 3))
    w = rng.uniform(0, 1, size=30)
    fit = geo.umeyama_sim3(torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(w))
    s_ref, R_ref, t_ref = geo._umeyama_sim3(src, dst, w)
    assert float(fit.scale) == pytest.approx(s_ref, rel=1e-9)
    np.testing.assert_allclose(fit.R.numpy(), R_ref, atol=1e-9)
    np.testing.assert_allclose(fit.t.numpy(), t_ref, atol=1e-9)
    expected = np.sqrt((w / w.sum() * ((s_ref * src @ R_ref.T + t_ref - dst) ** 2).sum(1)).sum())
    assert float(fit.residual) == pytest.approx(expected, rel=1e-9)
    # zero-weight outliers do not move it
    dst_bad = dst.copy()
    dst_bad[:5] += 10.0
    w_bad = w.copy()
    w_bad[:5] = 0.0
    fit_bad = geo.umeyama_sim3(torch.from_numpy(src), torch.from_numpy(dst_bad), torch.from_numpy(w_bad))
    fit_ref = geo.umeyama_sim3(torch.from_numpy(src[5:]), torch.from_numpy(dst[5:]), torch.from_numpy(w[5:]))
    assert float(fit_bad.scale) == pytest.approx(float(fit_ref.scale), rel=1e-10)


def test_umeyama_transforms_camera_poses_consistently():
    rng = np.random.default_rng(11)
    s0, R0, t0 = 0.5, _rotation(rng), rng.normal(size=3)
    T = np.tile(np.eye(4), (4, 1, 1))
    for i in range(4):
        T[i, :3, :3] = _rotation(rng)
        T[i, :3, 3] = rng.normal(size=3)
    centres = torch.from_numpy(T[:, :3, 3])
    fit = geo.umeyama_sim3(centres, torch.from_numpy(s0 * T[:, :3, 3] @ R0.T + t0))
    T_new = fit.transform_T_world_cam(torch.from_numpy(T)).numpy()
    np.testing.assert_allclose(T_new[:, :3, 3], fit.apply(centres).numpy(), atol=1e-10)
    np.testing.assert_allclose(T_new[:, :3, :3], R0 @ T[:, :3, :3], atol=1e-10)
    np.testing.assert_allclose(T_new[:, 3], np.tile([0, 0, 0, 1.0], (4, 1)))


def test_umeyama_degenerate_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        geo.umeyama_sim3(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="coincide"):
        geo.umeyama_sim3(torch.ones(4, 3), torch.zeros(4, 3))


# -------------------------------------------------------------------------------------------- cameras and cloud


@pytest.mark.parametrize("mode", list(PrincipalPoint))
def test_camera_from_pointmaps_recovers_K_and_pose(mode):
    rng = np.random.default_rng(12)
    scenes = [_scene(rng, focal=f, mode=mode) for f in (14.0, 22.0)]
    local = torch.from_numpy(np.stack([s[2] for s in scenes])).float()
    world = torch.from_numpy(np.stack([s[3] for s in scenes])).float()
    conf = torch.from_numpy(rng.uniform(1.0, 5.0, size=local.shape[:-1])).float()
    K, T_world_cam = geo.camera_from_pointmaps(world, local, conf, principal_point_mode=mode)
    assert K.dtype == torch.float32 and T_world_cam.shape == (2, 4, 4)
    np.testing.assert_allclose(K.numpy(), np.stack([s[0] for s in scenes]), rtol=1e-5)
    np.testing.assert_allclose(T_world_cam.numpy(), np.stack([s[1] for s in scenes]), atol=1e-5)


def test_camera_from_pointmaps_keeps_float64():
    rng = np.random.default_rng(13)
    _, T, local, world = _scene(rng)
    conf = torch.full(local.shape[:-1], 2.0, dtype=torch.float64)
    K, T_est = geo.camera_from_pointmaps(torch.from_numpy(world)[None], torch.from_numpy(local)[None], conf[None])
    assert K.dtype == T_est.dtype == torch.float64
    np.testing.assert_allclose(T_est[0].numpy(), T, atol=1e-10)


def test_fused_point_cloud_threshold():
    pts = torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).reshape(2, 2, 3, 3)
    colors = torch.arange(2 * 2 * 3 * 3, dtype=torch.uint8).reshape(2, 2, 3, 3)
    conf = torch.tensor([[[1.0, 3.0, 5.0], [2.9, 3.1, 1.0]], [[4.0, 1.0, 1.0], [1.0, 1.0, 9.0]]])
    points, cols = geo.fused_point_cloud(pts, colors, conf, threshold=3.0)
    keep = conf >= 3.0
    assert points.shape == (int(keep.sum()), 3) == (5, 3)
    assert cols.dtype == torch.uint8
    np.testing.assert_array_equal(points.numpy(), pts[keep].numpy())
    assert geo.fused_point_cloud(pts, colors, conf, threshold=100.0)[0].shape == (0, 3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_geometry_on_cuda_matches_cpu():
    rng = np.random.default_rng(14)
    scenes = [_scene(rng, focal=f) for f in (14.0, 22.0)]
    local = torch.from_numpy(np.stack([s[2] for s in scenes])).float()
    world = torch.from_numpy(np.stack([s[3] for s in scenes])).float()
    conf = torch.from_numpy(rng.uniform(1.0, 5.0, size=local.shape[:-1])).float()
    K_cpu, T_cpu = geo.camera_from_pointmaps(world, local, conf)
    K_gpu, T_gpu = geo.camera_from_pointmaps(world.to("cuda"), local.to("cuda"), conf.to("cuda"))
    assert K_gpu.device.type == T_gpu.device.type == "cuda"
    torch.testing.assert_close(K_gpu.cpu(), K_cpu, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(T_gpu.cpu(), T_cpu, rtol=1e-5, atol=1e-5)
    fit = geo.umeyama_sim3(world.to("cuda").reshape(-1, 3)[:50], 2.0 * world.to("cuda").reshape(-1, 3)[:50] + 1.0)
    assert float(fit.scale) == pytest.approx(2.0, rel=1e-5) and fit.R.device.type == "cuda"
    points, colors = geo.fused_point_cloud(world.to("cuda"), local.to("cuda"), conf.to("cuda"))
    assert points.device.type == "cuda" and len(points) == int((conf >= 3.0).sum())
