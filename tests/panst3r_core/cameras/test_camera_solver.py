"""The camera solver against exact answers: synthetic rooms with ground-truth matches and stand-in descriptors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _camera_scenes import HEIGHT, WIDTH, room, rotating_camera

from panst3r_splat.core.cameras import SolverOptions, solve_cameras, solve_cameras_from_descriptors
from panst3r_splat.core.cameras.metrics import pair_errors
from panst3r_splat.core.cameras.refine import RefineOptions
from panst3r_splat.core.cameras.intrinsics import intrinsics_from_local_pointmaps
from panst3r_splat.core.cameras.two_view import TwoViewOptions, estimate_two_view, similarity_consensus
from panst3r_splat.core.transforms import rotation_angle_deg
from panst3r_splat.core.cameras.oracle import (
    corrupt_matches,
    distort_pointmaps,
    ground_truth_matches,
    synthetic_descriptors,
    world_points,
)

EXACT_RAD = 1e-6
"""Noiseless matches: rotations and translation directions exact to this (radians)."""


def _errors(solution, scene):
    return pair_errors(solution.T_world_cam, scene.T_world_cam)


def test_noiseless_matches_give_exact_cameras_scales_and_points() -> None:
    scene = room()
    matches = ground_truth_matches(scene.depth, scene.K, scene.T_world_cam)
    solution = solve_cameras(scene.pts3d_local, matches)
    errors = _errors(solution, scene)
    assert solution.camera_ok.all()
    assert np.radians(errors.rotation_deg.max()) < EXACT_RAD
    assert np.radians(np.nanmax(errors.translation_deg)) < EXACT_RAD
    # Scales: the world is view 0's pointmap, so solved * given scale is the same for every view.
    np.testing.assert_allclose(solution.scale * scene.scales / scene.scales[0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(solution.K, scene.K, rtol=1e-9)
    # Global points = the true world points expressed in view 0's camera frame at view 0's pointmap scale.
    T0_inv = np.linalg.inv(scene.T_world_cam[0])
    true_world = world_points(scene.depth, scene.K, scene.T_world_cam)
    expected = scene.scales[0] * (np.einsum("ij,vhwj->vhwi", T0_inv[:3, :3], true_world) + T0_inv[:3, 3])
    got = solution.global_pointmaps(scene.pts3d_local)
    valid = np.isfinite(expected)
    assert np.abs(got[valid] - expected[valid]).max() < 1e-6 * np.abs(expected[valid]).max()
    assert np.nanmax(solution.reprojection_px) < 1e-6
    np.testing.assert_allclose(solution.T_world_cam[0], np.eye(4), atol=1e-12)


@pytest.mark.parametrize("offset, path", [(3, "orbit"), (4, "sweep")])
def test_outliers_and_pixel_noise_stay_within_one_degree(offset: int, path: str) -> None:
    scene = room(offset, path=path)
    exact = ground_truth_matches(scene.depth, scene.K, scene.T_world_cam, seed=offset)
    matches = corrupt_matches(exact, outlier_share=0.3, noise_px=0.5, image_hw=(HEIGHT, WIDTH), seed=offset)
    solution = solve_cameras(scene.pts3d_local, matches)
    errors = _errors(solution, scene)
    assert solution.camera_ok.all()
    assert errors.median_rotation_deg < 1.0 and errors.rotation_deg.max() < 2.5, errors.rotation_deg
    assert errors.median_translation_deg < 2.0
    assert np.nanmax(solution.reprojection_px) < 2.0  # the 0.5 px noise, not the outliers, sets the median
    # Trusting the depth (points fixed on the exact pointmaps, as a model's are not) brings every pair within 1 deg.
    trusted = solve_cameras(scene.pts3d_local, matches, SolverOptions(refine=RefineOptions(free_depths=False)))
    assert _errors(trusted, scene).rotation_deg.max() < 1.0


def test_view_without_matches_gets_nan_camera() -> None:
    scene = room()
    lonely = 5
    matches = [m for m in ground_truth_matches(scene.depth, scene.K, scene.T_world_cam)
               if lonely not in (m.view_a, m.view_b)]
    solution = solve_cameras(scene.pts3d_local, matches)
    assert solution.camera_ok.tolist() == [v != lonely for v in range(len(scene.depth))]
    assert np.isnan(solution.T_world_cam[lonely]).all() and np.isnan(solution.scale[lonely])
    assert solution.num_pairs[lonely] == 0 and np.isnan(solution.reprojection_px[lonely])
    assert np.isnan(solution.global_pointmaps(scene.pts3d_local)[lonely]).all()
    others = [v for v in range(len(scene.depth)) if v != lonely]
    sub = pair_errors(solution.T_world_cam[others], scene.T_world_cam[others])
    assert np.radians(sub.rotation_deg.max()) < EXACT_RAD
    assert _errors(solution, scene).connected_share == pytest.approx(7 / 8)


def test_pure_rotation_keeps_one_centre() -> None:
    scene = rotating_camera()
    matches = ground_truth_matches(scene.depth, scene.K, scene.T_world_cam)
    solution = solve_cameras(scene.pts3d_local, matches)
    assert solution.camera_ok.all()
    assert np.radians(_errors(solution, scene).rotation_deg.max()) < EXACT_RAD
    room_size = np.nanmax(np.abs(scene.pts3d_local))
    assert np.abs(solution.T_world_cam[:, :3, 3]).max() < 1e-6 * room_size  # every centre at view 0's


def test_identical_images_are_placed_at_one_pose() -> None:
    scene = room()
    order = [0, 0, 1, 2]  # view 0 twice: identical images, identical descriptors
    world = world_points(scene.depth, scene.K, scene.T_world_cam)[order]
    descriptors, conf = synthetic_descriptors(world)
    pts = scene.pts3d_local[order]
    solution = solve_cameras_from_descriptors(pts, descriptors, conf)
    assert solution.camera_ok.all()
    T = solution.T_world_cam
    relative = T[0, :3, :3].T @ T[1, :3, :3]
    assert np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1))) < 0.1
    assert np.linalg.norm(T[1, :3, 3] - T[0, :3, 3]) < 1e-3 * np.nanmax(np.abs(pts[0]))
    # No baseline between the two: their relative scale comes from the other views' (approximate) matches.
    assert solution.scale[1] == pytest.approx(1.0, rel=1e-2)
    assert pair_errors(T[1:], scene.T_world_cam[[0, 1, 2]]).median_rotation_deg < 3.0


def test_stand_in_descriptors_exercise_matching_end_to_end() -> None:
    scene = room()
    descriptors, conf = synthetic_descriptors(world_points(scene.depth, scene.K, scene.T_world_cam))
    solution = solve_cameras_from_descriptors(scene.pts3d_local, descriptors, conf)
    errors = _errors(solution, scene)
    assert solution.camera_ok.all()
    assert errors.median_rotation_deg < 3.0 and errors.median_translation_deg < 5.0
    assert (solution.num_inliers > 0).all() and np.isfinite(solution.reprojection_px).all()


@pytest.mark.parametrize("conf_value", [1.0, 5.0])
def test_untextured_image_is_left_unconnected(conf_value: float) -> None:
    scene = room()
    descriptors, conf = synthetic_descriptors(world_points(scene.depth, scene.K, scene.T_world_cam))
    blank = 2
    flat = torch.zeros_like(descriptors[blank])
    flat[..., 0] = 1.0  # one descriptor everywhere: nothing in it to match
    descriptors[blank] = flat
    conf[blank] = torch.full_like(conf[blank], conf_value)
    solution = solve_cameras_from_descriptors(scene.pts3d_local, descriptors, conf)
    assert solution.camera_ok.tolist() == [v != blank for v in range(len(scene.depth))]
    assert np.isnan(solution.T_world_cam[blank]).all()


def test_fewer_than_two_views_is_a_one_line_error() -> None:
    scene = room()
    with pytest.raises(ValueError, match="at least 2 views") as info:
        solve_cameras(scene.pts3d_local[:1], [])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="too few reliable matches") as info:
        solve_cameras(scene.pts3d_local[:3], [])
    assert "\n" not in str(info.value)


def test_refinement_is_optional_and_solution_is_deterministic() -> None:
    scene = room()
    matches = corrupt_matches(ground_truth_matches(scene.depth, scene.K, scene.T_world_cam), outlier_share=0.1,
                              noise_px=0.3, image_hw=(HEIGHT, WIDTH))
    rough = solve_cameras(scene.pts3d_local, matches, SolverOptions(refine=None))
    again = solve_cameras(scene.pts3d_local, matches, SolverOptions(refine=None))
    np.testing.assert_array_equal(rough.T_world_cam, again.T_world_cam)
    refined = solve_cameras(scene.pts3d_local, matches)
    rough_errors, refined_errors = _errors(rough, scene), _errors(refined, scene)
    assert rough_errors.rotation_deg.max() < 3.0  # pairwise essential matrices, averaged
    assert refined_errors.median_rotation_deg < rough_errors.median_rotation_deg  # the reprojection refinement


def test_intrinsics_come_from_the_pointmaps_not_from_ground_truth() -> None:
    scene = room()
    short = distort_pointmaps(scene.pts3d_local, focal_factor=0.8, depth_noise=0.0)
    np.testing.assert_allclose(intrinsics_from_local_pointmaps(short)[:, 0, 0], 0.8 * scene.K[:, 0, 0], rtol=1e-9)
    np.testing.assert_allclose(intrinsics_from_local_pointmaps(scene.pts3d_local), scene.K, rtol=1e-9)


def test_weak_model_geometry_still_gives_usable_cameras() -> None:
    scene = room()
    local = distort_pointmaps(scene.pts3d_local, focal_factor=0.8, depth_noise=0.1, seed=1)
    matches = corrupt_matches(ground_truth_matches(scene.depth, scene.K, scene.T_world_cam), outlier_share=0.3,
                              noise_px=0.5, image_hw=(HEIGHT, WIDTH))
    solution = solve_cameras(local, matches)
    errors = _errors(solution, scene)
    assert solution.camera_ok.all()
    assert errors.median_rotation_deg < 5.0  # a 20 % focal error bends the epipolar geometry: degrees, not 0.1


def test_refit_after_a_focal_correction_is_as_accurate_as_a_fresh_estimate() -> None:
    """The focal self-calibration's later passes refit each pair from its first rotation and inliers instead of
    running the robust estimators again: estimated under a 5 % short focal, then refitted under the right one, the
    pairs' rotations are as close to the truth as fresh estimates under the right focal (single pairs with 30 %
    outliers vary by a degree or more either way, so the medians are compared)."""
    scene = room()
    exact = ground_truth_matches(scene.depth, scene.K, scene.T_world_cam)
    short = scene.K.copy()
    short[:, :2, :2] *= 0.95
    refit_deg, fresh_deg = [], []
    for m in corrupt_matches(exact, outlier_share=0.3, noise_px=0.5, image_hw=(HEIGHT, WIDTH))[:6]:
        a, b = m.view_a, m.view_b
        true_R = (np.linalg.inv(scene.T_world_cam[b]) @ scene.T_world_cam[a])[:3, :3]
        uv_a, points_a = m.pixels_a.astype(float), scene.pts3d_local[a][m.pixels_a[:, 1], m.pixels_a[:, 0]]
        first = estimate_two_view(uv_a, m.uv_b, short[a], short[b], points_a)
        assert first is not None
        refit = estimate_two_view(uv_a, m.uv_b, scene.K[a], scene.K[b], points_a, previous=first)
        fresh = estimate_two_view(uv_a, m.uv_b, scene.K[a], scene.K[b], points_a)
        assert refit is not None and fresh is not None
        assert refit.num_inliers >= 0.9 * fresh.num_inliers
        refit_deg.append(rotation_angle_deg(refit.R_b_a.T @ true_R))
        fresh_deg.append(rotation_angle_deg(fresh.R_b_a.T @ true_R))
    assert np.median(refit_deg) <= 1.25 * np.median(fresh_deg) + 0.2, (refit_deg, fresh_deg)
    # The refit starts from the given rotation: a wrong one is refused (the depth contradicts it), not rescued.
    assert estimate_two_view(uv_a, m.uv_b, scene.K[a], scene.K[b], points_a,
                             previous=dataclasses.replace(first, R_b_a=first.R_b_a.T)) is None


@pytest.mark.parametrize("focal_factor", [0.95, 0.8])
def test_self_calibration_refits_after_a_small_focal_change(monkeypatch: pytest.MonkeyPatch,
                                                            focal_factor: float) -> None:
    """Pass one estimates every pair once. After a focal correction within `refit_focal_change` (5 % here, allowed
    up to 10 %) the later passes refit its usable pairs, with no RANSAC; after a larger one (20 %) they estimate
    every pair again."""
    import panst3r_splat.core.cameras.solver as solver_module

    calls = {"estimate": 0, "refit": 0}
    estimate = solver_module.estimate_two_view

    def counted(*args, previous=None, **kwargs):
        calls["estimate" if previous is None else "refit"] += 1
        return estimate(*args, previous=previous, **kwargs)

    monkeypatch.setattr(solver_module, "estimate_two_view", counted)
    scene = room()
    local = distort_pointmaps(scene.pts3d_local, focal_factor=focal_factor, depth_noise=0.0)
    matches = corrupt_matches(ground_truth_matches(scene.depth, scene.K, scene.T_world_cam), outlier_share=0.3,
                              noise_px=0.5, image_hw=(HEIGHT, WIDTH))
    solution = solve_cameras(local, matches, SolverOptions(refit_focal_change=0.1))
    num_pairs = len({(min(m.view_a, m.view_b), max(m.view_a, m.view_b)) for m in matches if len(m)})
    assert abs(solution.focal_factor - 1.0 / focal_factor) < 0.02  # the focal was corrected: later passes ran
    if focal_factor > 0.9:
        assert calls["estimate"] == num_pairs and 0 < calls["refit"] <= 3 * num_pairs
    else:
        assert calls["estimate"] > num_pairs and calls["refit"] == 0
    assert solution.camera_ok.all() and _errors(solution, scene).median_rotation_deg < 1.0


def test_pairs_of_wrong_matches_are_refused_before_ransac(monkeypatch: pytest.MonkeyPatch) -> None:
    """The similarity pre-check: matches shuffled between views (wrong) score low and the pair is refused without
    running the robust estimators; the right matches of the same pair, with 30 % outliers, a 20 % short focal and
    10 % depth noise, pass it."""
    import panst3r_splat.core.cameras.two_view as two_view_module

    ransac_calls = []
    essential = two_view_module._essential_candidates
    monkeypatch.setattr(two_view_module, "_essential_candidates",
                        lambda *args: ransac_calls.append(1) or essential(*args))
    scene = room()
    local = distort_pointmaps(scene.pts3d_local, focal_factor=0.8, depth_noise=0.1, seed=1)
    exact = ground_truth_matches(scene.depth, scene.K, scene.T_world_cam)
    m = next(m for m in corrupt_matches(exact, outlier_share=0.3, noise_px=0.5, image_hw=(HEIGHT, WIDTH))
             if (m.view_a, m.view_b) == (0, 1))
    K = intrinsics_from_local_pointmaps(local)
    uv_a = m.pixels_a.astype(float)
    points_a = local[0][m.pixels_a[:, 1], m.pixels_a[:, 0]]
    pixels_b = np.rint(m.uv_b).astype(int).clip(0, [WIDTH - 1, HEIGHT - 1])
    points_b = local[1][pixels_b[:, 1], pixels_b[:, 0]]
    options = TwoViewOptions()
    assert similarity_consensus(points_a, points_b, options) > 1.5 * options.min_similarity_consensus
    assert estimate_two_view(uv_a, m.uv_b, K[0], K[1], points_a, points_b=points_b) is not None
    assert len(ransac_calls) == 1
    shuffled = np.random.default_rng(0).permutation(len(uv_a))
    assert similarity_consensus(points_a, points_b[shuffled], options) < options.min_similarity_consensus
    assert estimate_two_view(uv_a, m.uv_b[shuffled], K[0], K[1], points_a, points_b=points_b[shuffled]) is None
    assert len(ransac_calls) == 1  # refused before the RANSAC
    few = np.full((5, 3), np.nan)
    assert similarity_consensus(few, few, options) is None  # too few points: no verdict, the pair is not refused
