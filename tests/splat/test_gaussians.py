"""Laws of the Gaussian container, the cameras and the point-cloud initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _typecheck import rejects
from panst3r_splat.core.transforms import rigid_inverse
from panst3r_splat.splat.gaussians import (
    KEY_SEGMENT_IDS, SH_C0, Cameras, GaussianScene, _voxel_downsample, init_from_points,
    sh_colors, voxel_downsample, voxel_size_for_budget,
)


def _random_scene(n: int = 7, degree: int = 1, seed: int = 0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    return GaussianScene(
        means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
        log_scales=torch.randn(n, 3, generator=g), opacity_logits=torch.randn(n, generator=g),
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g), reg_colors=torch.rand(n, 3, generator=g),
        segment_ids=torch.randint(0, 1 << 30, (n,), generator=g), label_conf=torch.rand(n, generator=g),
    )


def test_params_round_trip_is_identity_including_large_ids() -> None:
    scene = _random_scene(degree=2)
    params = scene.to_params()
    assert params[KEY_SEGMENT_IDS].dtype == torch.float64
    back = GaussianScene.from_params(params)
    for key, value in scene.tensors().items():
        assert torch.equal(value, getattr(back, key)), key
    assert back.sh_degree == 2


def test_select_keeps_every_tensor_aligned() -> None:
    scene = _random_scene(n=9)
    idx = torch.tensor([4, 0, 4, 8])
    sub = scene.select(idx)
    for key, value in scene.tensors().items():
        assert torch.equal(getattr(sub, key), value[idx]), key
    mask = torch.tensor([True, False] * 4 + [True])
    assert len(scene.select(mask)) == 5


def test_constructor_rejects_misaligned_tensors() -> None:
    scene = _random_scene(n=4)
    with rejects(ValueError, match="label_conf"):
        scene.replace(label_conf=torch.zeros(3))
    with rejects(ValueError, match="integer"):
        scene.replace(segment_ids=torch.zeros(4))
    with rejects(ValueError, match="sh"):
        scene.replace(sh=torch.zeros(4, 5, 3))


def test_activations() -> None:
    scene = _random_scene()
    assert torch.allclose(scene.scales, torch.exp(scene.log_scales))
    assert torch.allclose(scene.opacities, 1 / (1 + torch.exp(-scene.opacity_logits)))


def test_sh_colours_dc_only_and_view_dependence() -> None:
    scene = _random_scene(n=5, degree=1)
    T = torch.eye(4)[None].repeat(2, 1, 1)
    T[1, :3, 3] = torch.tensor([5.0, 0.0, 0.0])
    dc = torch.clamp_min(scene.sh[:, 0] * SH_C0 + 0.5, 0.0)
    assert torch.allclose(scene.colors(), dc)
    flat = scene.replace(sh=torch.cat([scene.sh[:, :1], torch.zeros(5, 3, 3)], 1))
    assert torch.allclose(flat.colors(T), dc[None].expand(2, -1, -1))  # no higher terms: same from everywhere
    assert not torch.allclose(scene.colors(T)[0], scene.colors(T)[1])


def test_sh_colours_hand_computed_degree_one() -> None:
    # One Gaussian straight ahead (+z) of the camera: basis Y_1^0 = 0.4886 z is the only non-zero first-order term.
    means = torch.tensor([[0.0, 0.0, 2.0]])
    sh = torch.zeros(1, 4, 3)
    sh[0, 2] = torch.tensor([1.0, 0.0, 0.0])  # gsplat orders the degree-1 bases as (y, z, x)
    colors = sh_colors(means, sh, torch.eye(4)[None])
    assert torch.allclose(colors[0, 0], torch.tensor([0.5 + 0.48860251190292, 0.5, 0.5]), atol=1e-6)


def test_rigid_inverse_law() -> None:
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(3, 3, 3, generator=g))
    T = torch.eye(4).repeat(3, 1, 1)
    T[:, :3, :3] = q
    T[:, :3, 3] = torch.randn(3, 3, generator=g)
    assert torch.allclose(T @ rigid_inverse(T), torch.eye(4).expand(3, 4, 4), atol=1e-5)


def test_cameras_validate_and_select() -> None:
    K = torch.eye(3).repeat(2, 1, 1)
    T = torch.eye(4).repeat(2, 1, 1)
    T[1, 0, 3] = 2.0
    cams = Cameras(K=K, T_world_cam=T, width=4, height=3, names=("a", "b"))
    assert cams.select([1]).names == ("b",)
    assert torch.equal(cams.select([1]).centers, torch.tensor([[2.0, 0.0, 0.0]]))
    assert torch.allclose(cams.T_cam_world[1, 0, 3], torch.tensor(-2.0))
    with pytest.raises(ValueError, match="names"):
        Cameras(K=K, T_world_cam=T, width=4, height=3, names=("a",))


def test_voxel_downsample_matches_reference_twin() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(300, 3))
    cols = rng.random((300, 3))
    fast = voxel_downsample(pts, cols, 0.7)
    slow = _voxel_downsample(pts, cols, 0.7)
    assert np.allclose(fast[0], slow[0]) and np.allclose(fast[1], slow[1])
    # Invariant to point order.
    perm = rng.permutation(300)
    again = voxel_downsample(pts[perm], cols[perm], 0.7)
    assert np.allclose(again[0], fast[0])


@pytest.mark.parametrize("budget", [1, 10, 57, 500])
def test_init_respects_budget_and_is_deterministic(budget: int) -> None:
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1, 1, size=(400, 3))
    cols = (rng.random((400, 3)) * 255).astype(np.uint8)
    a = init_from_points(pts, cols, budget)
    b = init_from_points(torch.from_numpy(pts), torch.from_numpy(cols), budget)
    assert 1 <= len(a) <= min(budget, 400)
    if budget >= 400:
        assert len(a) == 400
    for key, value in a.tensors().items():
        assert torch.equal(value, getattr(b, key)), key
    assert torch.equal(a.segment_ids, torch.zeros(len(a), dtype=torch.int64))


def test_voxel_size_for_budget_is_tight() -> None:
    rng = np.random.default_rng(5)
    pts = rng.uniform(0, 1, size=(2000, 3))
    size = voxel_size_for_budget(pts, 100)
    count = lambda s: len(np.unique(np.floor(pts / s).astype(np.int64), axis=0))  # noqa: E731
    assert count(size) <= 100 < count(size * 0.9)


def test_init_scales_from_neighbour_distances_and_colours() -> None:
    # A regular grid with spacing 0.25: the 3 nearest neighbours of an interior point are all 0.25 away.
    g = np.arange(5) * 0.25
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    cols = np.tile(np.array([[0.2, 0.4, 0.8]]), (len(pts), 1))
    scene = init_from_points(pts, cols, budget=len(pts), init_opacity=0.1)
    assert torch.allclose(scene.scales, torch.full_like(scene.scales, 0.25), atol=1e-6)
    assert torch.allclose(scene.base_colors, torch.tensor([0.2, 0.4, 0.8]).expand(len(pts), 3), atol=1e-6)
    assert torch.allclose(scene.opacities, torch.full((len(pts),), 0.1), atol=1e-6)
    assert torch.allclose(scene.quats, torch.tensor([1.0, 0, 0, 0]).expand(len(pts), 4))


def test_init_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        init_from_points(np.zeros((0, 3)), np.zeros((0, 3)), 10)
    with pytest.raises(ValueError, match=r"\(P, 3\)"):
        init_from_points(np.zeros((4, 2)), np.zeros((4, 2)), 10)
    assert math.isfinite(float(init_from_points(np.zeros((1, 3)), np.ones((1, 3)), 5).log_scales[0, 0]))


def test_packed_voxel_keys_count_and_order_as_the_coordinate_triples() -> None:
    """`_voxel_keys` (one int64 per point, or rows for huge extents) gives the voxels and the lexicographic order of
    `np.unique(floor(p / size), axis=0)`."""
    from panst3r_splat.splat.gaussians import _voxel_keys

    rng = np.random.default_rng(3)
    points = rng.normal(size=(5000, 3)) * [4.0, 2.0, 0.5] - [10.0, 0.0, 3.0]
    for size in (0.05, 0.7, 1e-8):  # the last one takes the row-key path
        triples, inverse = np.unique(np.floor(points / size).astype(np.int64), axis=0, return_inverse=True)
        keys, key_inverse = np.unique(_voxel_keys(points, size), return_inverse=True)
        assert len(keys) == len(triples)
        np.testing.assert_array_equal(key_inverse.reshape(-1), inverse.reshape(-1))
