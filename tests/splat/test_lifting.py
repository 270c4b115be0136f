"""LUDVIG label lifting: the gradient route against the per-pixel twin, and lift-then-render on an opaque toy scene."""

from __future__ import annotations

import math

import pytest
import torch

from _typecheck import rejects
from panst3r_splat.splat.lifting import (
    NO_LABEL, LiftOptions, _lift_per_pixel, _PairSums, lift_segments, render_segments,
)

W, H = 32, 24


def _scene(n: int = 30, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    viewmats = torch.eye(4, dtype=dt)[None].repeat(3, 1, 1)
    viewmats[1, 0, 3], viewmats[2, 1, 3] = 0.3, -0.2
    K = torch.tensor([[30.0, 0, (W - 1) / 2], [0, 30.0, (H - 1) / 2], [0, 0, 1]], dtype=dt)
    return {
        "means": torch.randn(n, 3, generator=g, dtype=dt) * 0.5 + torch.tensor([0.0, 0.0, 3.0], dtype=dt),
        "quats": torch.randn(n, 4, generator=g, dtype=dt),
        "scales": torch.rand(n, 3, generator=g, dtype=dt) * 0.15 + 0.02,
        "opacities": torch.rand(n, generator=g, dtype=dt) * 0.9 + 0.05,
        "viewmats": viewmats,
        "Ks": K[None].repeat(3, 1, 1),
        # 4x4-pixel blocks of segment ids {0 (void), 7, 14, 21, 28}: sparse, non-contiguous ids on purpose
        "maps": torch.randint(0, 5, (3, H // 4, W // 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2) * 7,
    }


def _geometry(s: dict) -> tuple:
    return s["means"], s["quats"], s["scales"], s["opacities"], s["viewmats"], s["Ks"]


@pytest.mark.parametrize("include_void", [True, False])
def test_gradient_lifting_matches_per_pixel_twin(include_void: bool) -> None:
    s = _scene()
    slow = _lift_per_pixel(*_geometry(s), s["maps"], include_void=include_void)
    # All views in one render, and tiny chunks (one view, two segments per render).
    for options in (LiftOptions(include_void=include_void),
                    LiftOptions(include_void=include_void, channels_per_chunk=2, views_per_chunk=1)):
        _check_same(lift_segments(*_geometry(s), s["maps"], options), slow)
    if not include_void:
        assert bool((slow.segment_ids[slow.total_weight > 0] != 0).all())


@pytest.mark.parametrize("include_void", [True, False])
def test_uncovered_pixels_never_vote(include_void: bool) -> None:
    s = _scene(seed=2)
    maps = s["maps"].clone()
    maps[:, :, : W // 4] = NO_LABEL  # a quarter of every view lies outside the segment maps
    slow = _lift_per_pixel(*_geometry(s), maps, include_void=include_void)
    _check_same(lift_segments(*_geometry(s), maps, LiftOptions(include_void=include_void)), slow)
    assert NO_LABEL not in slow.segment_ids.tolist()
    # Their weight is gone from the sums: less than with those pixels labelled void.
    with_void = _lift_per_pixel(*_geometry(s), maps.clamp(min=0), include_void=True)
    assert float(slow.total_weight.sum()) < float(with_void.total_weight.sum())
    nowhere = lift_segments(*_geometry(s), torch.full_like(maps, NO_LABEL))
    assert not bool(nowhere.total_weight.any()) and not bool(nowhere.segment_ids.any())


def _check_same(fast, slow) -> None:
    assert float((slow.total_weight > 0).float().mean()) > 0.5
    assert torch.equal(fast.segment_ids, slow.segment_ids)
    # float64 sums in a different order: rounding only.
    torch.testing.assert_close(fast.confidence, slow.confidence, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast.total_weight, slow.total_weight, rtol=1e-12, atol=1e-12)


def test_chunk_sizes_do_not_change_the_result() -> None:
    s = _scene(seed=1)
    a = lift_segments(*_geometry(s), s["maps"], LiftOptions(channels_per_chunk=1, views_per_chunk=2))
    b = lift_segments(*_geometry(s), s["maps"])
    assert torch.equal(a.segment_ids, b.segment_ids)
    torch.testing.assert_close(a.total_weight, b.total_weight, rtol=1e-12, atol=1e-12)


def test_pair_sums_hand_computed() -> None:
    """Duplicates add up, ties go to the smaller segment id, unseen Gaussians are void with confidence 0."""
    labels = torch.tensor([0, 5, 9])
    for merge_every in (2, 100):  # merged on the second add, or only when selecting
        acc = _PairSums(n_labels=3, merge_every=merge_every)
        acc.add(torch.tensor([0, 0, 1, 1]), torch.tensor([1, 2, 2, 2]), torch.tensor([0.5, 2.0, 0.25, 0.25]))
        acc.add(torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 0, 1]), torch.tensor([1.0, 0.5, 0.25, 0.5]))
        out = acc.select(labels, n_gaussians=3)
        # Gaussian 0: segment 5 -> 0.5 + 1 + 0.5 = 2, segment 9 -> 2 (tie -> 5).
        # Gaussian 1: 9 -> 0.25 + 0.25 = 0.5 (duplicates within one add), 5 -> 0.5, 0 -> 0.25 (tie -> 5).
        assert out.segment_ids.tolist() == [5, 5, 0]
        torch.testing.assert_close(out.total_weight, torch.tensor([4.0, 1.25, 0.0]))
        torch.testing.assert_close(out.confidence, torch.tensor([0.5, 0.4, 0.0]))


def _opaque_grid(seed: int = 0) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """One camera-facing disc Gaussian per 8x8 pixel block of a 64x48 image, nearly opaque, at slightly different
    depths; each block's label map is the block's segment id (some blocks void). Returns scene, label map, the
    Gaussians' true ids."""
    g = torch.Generator().manual_seed(seed)
    w, h, block, f = 64, 48, 8, 64.0
    K = torch.tensor([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    ids = torch.tensor([0, 3, 4, 12, 40])[torch.randint(0, 5, (h // block, w // block), generator=g)]
    centres_v, centres_u = torch.meshgrid(torch.arange(h // block) * block + 3.5, torch.arange(w // block) * block + 3.5,
                                          indexing="ij")
    z = 2.0 + 0.1 * torch.rand(centres_u.numel(), generator=g)
    means = torch.stack([(centres_u.reshape(-1) - K[0, 2]) * z / f, (centres_v.reshape(-1) - K[1, 2]) * z / f, z], -1)
    sigma_px = 2.5
    scales = torch.stack([sigma_px * z / f, sigma_px * z / f, torch.full_like(z, 1e-4)], -1)
    scene = {
        "means": means,
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(len(z), 1),
        "scales": scales,
        "opacities": torch.full((len(z),), 0.99),
        "viewmats": torch.eye(4)[None],
        "Ks": K[None],
        "width": w,
        "height": h,
    }
    label_map = ids.repeat_interleave(block, 0).repeat_interleave(block, 1)[None]  # [1, H, W]
    return scene, label_map, ids.reshape(-1)


def test_lifting_then_rendering_reproduces_the_training_view_on_an_opaque_scene() -> None:
    scene, label_map, true_ids = _opaque_grid()
    geometry = (scene["means"], scene["quats"], scene["scales"], scene["opacities"])
    lifted = lift_segments(*geometry, scene["viewmats"], scene["Ks"], label_map)
    assert torch.equal(lifted.segment_ids, true_ids)
    assert float(lifted.confidence.min()) > 0.6

    rendered = render_segments(*geometry, lifted.segment_ids, scene["viewmats"], scene["Ks"], scene["width"],
                               scene["height"], min_alpha=0.5)
    from panst3r_splat.splat.rasterize import rasterize

    _, alphas, _ = rasterize(*geometry, torch.ones(len(true_ids), 1), scene["viewmats"], scene["Ks"], scene["width"],
                             scene["height"])
    covered = alphas[..., 0] >= 0.5
    assert float(covered.float().mean()) > 0.3
    assert torch.equal(rendered[covered], label_map[covered])  # every covered pixel: its block's segment
    assert bool((rendered[~covered] == 0).all())  # the gaps between the discs render as void
    # A second, shifted view whose map is a render of the true labels: lifting from both views reproduces both.
    viewmats = torch.eye(4)[None].repeat(2, 1, 1)
    viewmats[1, 0, 3] = 0.05
    Ks = scene["Ks"].repeat(2, 1, 1)
    second = render_segments(*geometry, true_ids, viewmats[1:], Ks[1:], scene["width"], scene["height"])
    maps = torch.cat([label_map, second])
    lifted2 = lift_segments(*geometry, viewmats, Ks, maps)
    assert torch.equal(lifted2.segment_ids, true_ids)
    again = render_segments(*geometry, lifted2.segment_ids, viewmats, Ks, scene["width"], scene["height"])
    assert torch.equal(again[1], second[0])


def test_render_segments_chunking_and_ties() -> None:
    """More segments than channels per chunk give the same map; an unseen Gaussian set renders void."""
    scene, label_map, true_ids = _opaque_grid(seed=3)
    geometry = (scene["means"], scene["quats"], scene["scales"], scene["opacities"])
    args = (scene["viewmats"], scene["Ks"], scene["width"], scene["height"])
    a = render_segments(*geometry, true_ids, *args, channels_per_chunk=1)
    b = render_segments(*geometry, true_ids, *args)
    assert torch.equal(a, b)
    behind = scene["means"] * torch.tensor([1.0, 1.0, -1.0])
    assert bool((render_segments(behind, *geometry[1:], true_ids, *args) == 0).all())


def test_lifting_rejects_bad_maps() -> None:
    s = _scene()
    with rejects(ValueError, match="integer segment ids"):
        lift_segments(*_geometry(s), s["maps"].double())
    with rejects(ValueError, match="integer segment ids"):
        lift_segments(*_geometry(s), -s["maps"] - 2)
    with rejects(ValueError, match="segment maps need"):
        lift_segments(*_geometry(s)[:4], s["viewmats"][:2], s["Ks"][:2], s["maps"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lifting_through_gsplat_matches_torch_backend() -> None:
    s = _scene(n=200, seed=2)
    s = {k: (v.float() if v.is_floating_point() else v) for k, v in s.items()}
    cpu = lift_segments(*_geometry(s), s["maps"], LiftOptions(backend="torch"))
    cuda = {k: v.cuda() for k, v in s.items()}
    gpu = lift_segments(*_geometry(cuda), cuda["maps"], LiftOptions(backend="gsplat"))
    seen = cpu.total_weight > 1e-3
    agree = float((gpu.segment_ids.cpu()[seen] == cpu.segment_ids[seen]).float().mean())
    assert agree > 0.99  # float32 near-ties may flip a rare Gaussian
    torch.testing.assert_close(gpu.total_weight.cpu(), cpu.total_weight, rtol=1e-3, atol=1e-3)
    assert math.isfinite(float(gpu.confidence.sum()))
