"""Local pointmaps placed under known cameras (`placement.py`): the per-view scales of ground-truth depth maps
divided by known random factors come back from image matches alone; laws of the helpers."""

from __future__ import annotations

import numpy as np
import pytest

from panst3r_splat.core.cameras.placement import (
    PlacementOptions, _mode, _triangulated_depths, pixel_rays, place_under_cameras,
)
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene


@pytest.fixture(scope="module")
def room():
    return generate_scene(SynthConfig(train_views=6, test_views=1), seed=1000001)


def _local(scene, factors):
    idx = np.flatnonzero(~scene.is_test)
    V, (H, W) = len(idx), scene.depth.shape[1:]
    K = np.repeat(scene.K[None], V, 0)
    depth = scene.depth[idx] / factors[:, None, None]
    return idx, K, (pixel_rays(K, H, W) * depth[..., None]).astype(np.float32)


def test_pixel_rays_reproject_to_their_pixels() -> None:
    K = np.array([[[50.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]]])
    rays = pixel_rays(K, 24, 32)
    projected = rays @ K[0].T
    v, u = np.mgrid[0:24, 0:32]
    assert np.allclose(projected[0, ..., 0], u) and np.allclose(projected[0, ..., 1], v)
    assert np.allclose(rays[..., 2], 1.0)


def test_scales_recovered_from_matches_without_depth(room) -> None:
    factors = np.random.default_rng(0).uniform(0.3, 3.0, int((~room.is_test).sum()))
    idx, K, local = _local(room, factors)
    placed = place_under_cameras(room.images[idx], local, K, room.T_world_cam[idx])
    assert placed.connected.all(), placed.matches
    assert np.allclose(placed.scale, factors, rtol=0.01), placed.scale / factors  # measured within 0.2 %
    # The placed points are the ground-truth world points (pixel rays of the known cameras at the true depth).
    H, W = local.shape[1:3]
    world_local = pixel_rays(K, H, W) * room.depth[idx][..., None]
    world = np.einsum("vij,vhwj->vhwi", room.T_world_cam[idx, :3, :3], world_local) + room.T_world_cam[idx, None, None, :3, 3]
    valid = room.depth[idx] > 0
    err = np.linalg.norm(placed.pts3d[valid] - world[valid], axis=-1) / room.depth[idx][valid]
    assert np.median(err) < 0.01


def test_scene_scale_follows_the_translations(room) -> None:
    """Scaling the cameras' translations by c scales the recovered scales by c (the gauge is the translations)."""
    factors = np.ones(int((~room.is_test).sum()))
    idx, K, local = _local(room, factors)
    T = room.T_world_cam[idx].copy()
    T[:, :3, 3] *= 3.0
    placed = place_under_cameras(room.images[idx], local, K, T)
    assert np.allclose(placed.scale[placed.connected], 3.0, rtol=0.01)


def test_unrelated_images_are_refused(room) -> None:
    idx, K, local = _local(room, np.ones(int((~room.is_test).sum())))
    flat = np.full_like(room.images[idx], 128)  # untextured: no feature, no match
    with pytest.raises(ValueError, match="matches consistent with the known cameras"):
        place_under_cameras(flat, local, K, room.T_world_cam[idx])


def test_mode_ignores_a_scattered_majority() -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate([np.full(30, 0.7) + rng.normal(0, 0.005, 30), rng.uniform(-3, 3, 70)])
    centre, support = _mode(values, 0.05)
    assert centre == pytest.approx(0.7, abs=0.01) and support >= 30


def test_triangulation_of_exact_matches_gives_their_depths() -> None:
    K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    T_a = np.eye(4)
    T_b = np.eye(4)
    T_b[:3, 3] = [0.5, 0.1, 0.0]
    points = np.array([[0.1, 0.2, 3.0], [-0.4, 0.0, 2.0], [0.3, -0.2, 5.0]])
    xy_a = (points @ K.T)[:, :2] / points[:, 2:]
    in_b = points - T_b[:3, 3]
    xy_b = (in_b @ K.T)[:, :2] / in_b[:, 2:]
    z_a, z_b, keep = _triangulated_depths(xy_a, xy_b, K, K, T_a, T_b, PlacementOptions())
    assert keep.all() and np.allclose(z_a, points[:, 2]) and np.allclose(z_b, in_b[:, 2])
