"""Scales and centres given the rotations (`translation.py`)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from panst3r_splat.core.cameras.translation import (
    PlacedMatches,
    TranslationOptions,
    pair_log_scale,
    solve_translations,
)

NUM_VIEWS = 6


def _two_groups(rot_noise_deg: float, cross: int, cross_depth_noise: float, seed: int = 1):
    """Six cameras on a quarter circle around a cloud of points, each view's local points at its own scale; views
    0-2 and 3-5 share 150 matches per directed pair, the two groups only ``cross`` with ``cross_depth_noise``
    relative noise on view b's points. Rotations (except view 0's) perturbed by ``rot_noise_deg``. Returns
    ``(matches, noisy rotations, true scales, true centres)``."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0.0, np.pi / 2, NUM_VIEWS)
    centres = np.stack([3 * np.sin(angles), np.zeros(NUM_VIEWS), 3 - 3 * np.cos(angles)], axis=1)
    R = []
    for c in centres:  # camera-to-world, looking at (0, 0, 3)
        z = np.array([0.0, 0.0, 3.0]) - c
        z /= np.linalg.norm(z)
        x = np.cross([0.0, 1.0, 0.0], z)
        x /= np.linalg.norm(x)
        R.append(np.stack([x, np.cross(z, x), z], axis=1))
    R = np.array(R)
    scales = np.exp(rng.normal(0.0, 0.2, NUM_VIEWS))
    scales[0] = 1.0
    points = rng.uniform([-1, -1, 2], [1, 1, 4], (400, 3))
    noise = Rotation.from_rotvec(np.deg2rad(rot_noise_deg) * rng.normal(size=(NUM_VIEWS, 3)) / np.sqrt(3))
    noisy_R = noise.as_matrix() @ R
    noisy_R[0] = R[0]
    matches = []
    for a in range(NUM_VIEWS):
        for b in range(NUM_VIEWS):
            if a == b:
                continue
            same = (a < 3) == (b < 3)
            W = points[rng.choice(len(points), 150 if same else cross, replace=False)]
            x_a = (W - centres[a]) @ R[a] / scales[a]
            x_b = (W - centres[b]) @ R[b] / scales[b]
            if not same:
                x_b = x_b * (1.0 + cross_depth_noise * rng.normal(size=x_b.shape))
            matches.append(PlacedMatches(a, b, x_a, x_b / x_b[:, 2:3], x_b))
    return matches, noisy_R, scales, centres


def test_pair_scale_ratio_is_exact_and_ignores_a_third_of_wrong_matches() -> None:
    rng = np.random.default_rng(0)
    points_a = rng.uniform([-1, -1, 2], [1, 1, 4], (300, 3))
    R = Rotation.random(random_state=1).as_matrix()
    points_b = 0.6 * points_a @ R.T + [0.3, -0.2, 1.0]  # x_b = (s_a / s_b) R x_a + t with s_a / s_b = 0.6
    assert abs(pair_log_scale(points_a, points_b) - np.log(0.6)) < 1e-12
    wrong = rng.random(300) < 1 / 3
    points_b[wrong] = rng.uniform([-1, -1, 2], [1, 1, 4], (int(wrong.sum()), 3))
    assert abs(pair_log_scale(points_a, points_b) - np.log(0.6)) < 0.1
    assert pair_log_scale(points_a[:5], points_b[:5]) is None  # too few matches: no ratio


def test_exact_scales_and_centres_from_exact_matches() -> None:
    matches, R, scales, centres = _two_groups(rot_noise_deg=0.0, cross=150, cross_depth_noise=0.0)
    s, c = solve_translations(NUM_VIEWS, matches, R)
    np.testing.assert_allclose(s, scales, rtol=1e-9)
    np.testing.assert_allclose(c, centres, atol=1e-9)


def test_a_weakly_tied_group_keeps_its_scale_under_rotation_noise() -> None:
    """With 8 deg rotation errors and only 10 noisy matches between the two groups, scales from the pairs' ratios
    stay within 4 % of the truth. (Solved together with the centres from the rays alone, the second group's
    scales came out 0.66 of the truth here, and 0.03 with 3 matches: a group can lower its cost by shrinking.)"""
    matches, R, scales, centres = _two_groups(rot_noise_deg=8.0, cross=10, cross_depth_noise=0.2)
    s, c = solve_translations(NUM_VIEWS, matches, R)
    np.testing.assert_allclose(s, scales, rtol=0.04)
    joint, _ = solve_translations(NUM_VIEWS, matches, R, TranslationOptions(pair_scales=False))
    assert np.all(joint[3:] / scales[3:] < 0.8)  # the joint solve's shrinkage that the pairs' ratios avoid
