"""Synthetic rooms with exact geometry for the camera-solver tests (held-out seeds, 128x96, no test views)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from panst3r_splat.core.cameras.oracle import local_pointmaps
from panst3r_splat.pipeline.datasets.synth import HELD_OUT_SEED_START, SynthConfig, generate_scene, with_views
from panst3r_splat.pipeline.datasets.synth.render import render_views

WIDTH, HEIGHT = 128, 96


@dataclass(frozen=True)
class CameraScene:
    depth: np.ndarray  # [V, H, W]
    K: np.ndarray  # [V, 3, 3]
    T_world_cam: np.ndarray  # [V, 4, 4]
    pts3d_local: np.ndarray  # [V, H, W, 3], each view at its own random scale
    scales: np.ndarray  # [V]: pts3d_local[v] = scales[v] * true local points


def _scaled(depth: np.ndarray, K: np.ndarray, T: np.ndarray, seed: int) -> CameraScene:
    scales = np.exp(np.random.default_rng(seed).uniform(-0.5, 0.5, len(depth)))
    pts = local_pointmaps(depth, K) * scales[:, None, None, None]
    return CameraScene(depth, K, T, pts, scales)


@functools.lru_cache(maxsize=None)
def room(offset: int = 3, views: int = 8, path: str = "orbit") -> CameraScene:
    """A held-out room, its training views, each local pointmap at a random scale (the model's scale ambiguity)."""
    config = with_views(SynthConfig(width=WIDTH, height=HEIGHT, path=path), train_views=views, test_views=0)
    scene = generate_scene(config, seed=HELD_OUT_SEED_START + offset)
    K = np.repeat(scene.K[None], views, axis=0)
    return _scaled(scene.depth.astype(np.float64), K, scene.T_world_cam, offset)


@functools.lru_cache(maxsize=None)
def rotating_camera(offset: int = 3, angles_deg: tuple[float, ...] = (0.0, 12.0, -15.0, 25.0)) -> CameraScene:
    """Views from one camera centre, turned about the vertical and a tilted axis (pure rotation)."""
    config = with_views(SynthConfig(width=WIDTH, height=HEIGHT), train_views=1, test_views=0)
    scene = generate_scene(config, seed=HELD_OUT_SEED_START + offset)
    from scipy.spatial.transform import Rotation

    T0 = scene.T_world_cam[0]
    poses = []
    for i, angle in enumerate(angles_deg):
        axis = np.array([0.0, 1.0, 0.2 * (i % 2)])
        T = T0.copy()
        T[:3, :3] = T0[:3, :3] @ Rotation.from_rotvec(np.radians(angle) * axis / np.linalg.norm(axis)).as_matrix()
        poses.append(T)
    T = np.stack(poses)
    views = render_views(scene.world, scene.K, T, HEIGHT, WIDTH, shadows=False)
    K = np.repeat(scene.K[None], len(T), axis=0)
    return _scaled(views.depth.astype(np.float64), K, T, offset)
