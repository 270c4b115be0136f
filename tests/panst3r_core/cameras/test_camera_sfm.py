"""`--cameras sfm`: COLMAP (pycolmap) on the photos, the local depth placed by its cameras.

A synthetic room at 512x384 with enough texture for SIFT (seed 4; most of our rooms have too little and COLMAP
registers none of them, which is the other test) stands for the photos; the "model" saw them at 128x96 and its local
pointmaps are the ground-truth depth at a random scale per view. COLMAP's cameras must agree with the ground truth,
its focal must come back at model resolution, and the placed dense points must form the room up to one similarity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panst3r_splat.core.cameras.metrics import pair_errors
from panst3r_splat.core.cameras.sfm import solve_cameras_sfm
from panst3r_splat.core.geometry import backproject_depth
from panst3r_splat.core.procrustes import weighted_procrustes
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene

VIEWS, WIDTH, HEIGHT, DOWN = 8, 512, 384, 4


@pytest.fixture(scope="module")
def room():
    scene = generate_scene(SynthConfig(train_views=VIEWS, test_views=0, width=WIDTH, height=HEIGHT), seed=4)
    h, w = HEIGHT // DOWN, WIDTH // DOWN
    to_orig = np.array([[DOWN, 0.0, DOWN / 2 - 0.5], [0.0, DOWN, DOWN / 2 - 0.5], [0.0, 0.0, 1.0]])
    K_model = np.linalg.inv(to_orig) @ scene.K
    depth = scene.depth.reshape(VIEWS, h, DOWN, w, DOWN).mean(axis=(2, 4))
    Ks = np.repeat(K_model[None], VIEWS, 0)
    local, _ = backproject_depth(depth, Ks, np.repeat(np.eye(4)[None], VIEWS, 0))
    scales = np.random.default_rng(0).uniform(0.5, 2.0, VIEWS)
    local = local.reshape(VIEWS, h, w, 3) * scales[:, None, None, None]
    world, _ = backproject_depth(depth, Ks, scene.T_world_cam)
    return scene, local, np.repeat(to_orig[None], VIEWS, 0), K_model, world.reshape(VIEWS, h, w, 3)


def test_colmap_cameras_and_placed_points_match_the_room(room) -> None:
    scene, local, to_orig, K_model, world = room
    result = solve_cameras_sfm(list(scene.images), local, to_orig)
    solution = result.solution
    ok = solution.camera_ok
    assert result.registered >= 7 and ok.sum() >= 6, (result.registered, ok)  # measured: 8 registered, 7 scaled
    errors = pair_errors(solution.T_world_cam, scene.T_world_cam)
    assert errors.median_rotation_deg < 3.0, errors  # measured 1.9 (an unscaled view counts as 180)
    np.testing.assert_allclose(solution.K[ok, 0, 0], K_model[0, 0], rtol=0.03)  # measured 1.4 % short
    assert np.isnan(solution.T_world_cam[~ok]).all() and np.isnan(result.pts3d[~ok]).all()
    assert np.isnan(solution.rotation_residual_deg).all() and (solution.reprojection_px[ok] < 1.0).all()
    # The dense points: the model's depth, scaled per view, form the room up to one similarity.
    placed, truth = result.pts3d[ok].reshape(-1, 3), world[ok].reshape(-1, 3)
    finite = np.isfinite(placed).all(1) & np.isfinite(truth).all(1)
    src, dst = torch.from_numpy(placed[finite]), torch.from_numpy(truth[finite])
    fit = weighted_procrustes(src, dst, torch.ones(len(src), dtype=src.dtype), with_scale=True)
    residual = np.linalg.norm((fit.apply(src) - dst).numpy(), axis=1)
    extent = np.linalg.norm(truth[finite] - truth[finite].mean(0), axis=1).mean()
    assert np.median(residual) < 0.03 * extent, (np.median(residual), extent)  # measured 1.4 %


def test_photos_without_features_are_refused(room) -> None:
    scene, local, to_orig, _, _ = room
    flat = [np.full_like(image, 128) for image in scene.images]
    with pytest.raises(ValueError, match="COLMAP registered none of the 8 photos"):
        solve_cameras_sfm(flat, local, to_orig)
    with pytest.raises(ValueError, match="8 pointmaps"):
        solve_cameras_sfm(flat[:3], local, to_orig)
