"""Pixel-level descriptor InfoNCE and the per-view local pointmap loss (the second built-in model's geometry)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panst3r_splat.core.training.descriptors import (
    NO_MATCH,
    _descriptor_nce,
    _neighbours,
    descriptor_loss,
    pixel_correspondences,
    sample_query_pixels,
)
from panst3r_splat.core.training.losses import PanopticCriterion, ScenePrediction, local_pointmap_loss_per_view
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene
from panst3r_splat.pipeline.training.targets import scene_targets


@pytest.fixture(scope="module")
def scene():
    s = generate_scene(SynthConfig(train_views=3, test_views=0, width=64, height=48, arc_deg=(30.0, 40.0)), seed=9)
    return s, scene_targets(s.depth, np.broadcast_to(s.K, (3, 3, 3)), s.T_world_cam, s.semantics, s.instances)


def test_correspondences_are_projections_of_the_same_surface(scene) -> None:
    s, tgt = scene
    queries = sample_query_pixels(tgt.valid, 200, torch.Generator().manual_seed(0))
    matches = pixel_correspondences(tgt.gt_pts3d_world, tgt.gt_pts3d_local, tgt.valid, queries)
    assert bool((matches[range(3), range(3)] == NO_MATCH).all())
    H, W = 48, 64
    found = 0
    for a, b in ((0, 1), (1, 0), (0, 2)):
        keep = matches[a, b] != NO_MATCH
        found += int(keep.sum())
        # Project the query's world point into view b with the true camera: it lands within a pixel of the match.
        q = queries[a][keep]
        X = tgt.gt_pts3d_world[a].reshape(-1, 3)[q].double().numpy()
        T_b0 = np.linalg.inv(s.T_world_cam[b]) @ s.T_world_cam[0]
        p = X @ T_b0[:3, :3].T + T_b0[:3, 3]
        uv = p @ s.K.T
        u, v = uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2]
        m = matches[a, b][keep].numpy()
        assert np.abs(u - m % W).max() <= 1.0 and np.abs(v - m // W).max() <= 1.0
    assert found > 100  # the views overlap: most queries have a counterpart


def _perfect_pair(tgt, num: int, seed: int):
    """Queries of view 0 matched into view 1 only, and descriptors that make every match exact: random codes for
    the pixels of view 1, each query of view 0 given the code of its counterpart."""
    queries = sample_query_pixels(tgt.valid, num, torch.Generator().manual_seed(seed))
    matches = pixel_correspondences(tgt.gt_pts3d_world, tgt.gt_pts3d_local, tgt.valid, queries)
    only = torch.full_like(matches, NO_MATCH)
    only[0, 1] = matches[0, 1]
    desc = F.normalize(torch.randn(3, 48 * 64, 64, generator=torch.Generator().manual_seed(seed)), dim=-1)
    keep = only[0, 1] != NO_MATCH
    desc[0, queries[0][keep]] = desc[1, only[0, 1][keep]]
    return desc.reshape(3, 48, 64, 64), queries, only


def test_loss_matches_its_reference_twin(scene) -> None:
    _, tgt = scene
    torch.manual_seed(0)
    desc = F.normalize(torch.randn(3, 48, 64, 8), dim=-1)
    conf = torch.ones(3, 48, 64)
    queries = sample_query_pixels(tgt.valid, 12, torch.Generator().manual_seed(1))
    matches = pixel_correspondences(tgt.gt_pts3d_world, tgt.gt_pts3d_local, tgt.valid, queries)
    loss, nce = descriptor_loss(desc, conf, queries, matches, temperature=0.1, conf_alpha=0.0, num_negatives=5,
                                generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    terms = []
    for a in range(3):
        for b in range(3):
            keep = matches[a, b] != NO_MATCH
            if a == b or not bool(keep.any()):
                continue
            q, pos = queries[a][keep], matches[a, b][keep]
            rand = torch.randint(0, 48 * 64, (5,), generator=g)
            cand = torch.cat([pos, _neighbours(pos, 48, 64, 2), rand]).tolist()
            terms += [_descriptor_nce(desc, a, int(qi), b, int(pi), cand, 0.1) for qi, pi in zip(q, pos)]
    torch.testing.assert_close(nce, torch.stack(terms).mean())
    torch.testing.assert_close(loss, nce)  # conf 1 and alpha 0: the weighted loss is the plain one


def test_perfect_descriptors_have_near_zero_loss_and_random_ones_do_not(scene) -> None:
    _, tgt = scene
    perfect, queries, matches = _perfect_pair(tgt, 64, 3)
    assert int((matches != NO_MATCH).sum()) > 20
    conf = torch.ones(3, 48, 64)
    _, good = descriptor_loss(perfect, conf, queries, matches, temperature=0.02)
    shuffled = perfect[:, torch.randperm(48)]  # same codes, wrong pixels
    _, bad = descriptor_loss(shuffled, conf, queries, matches, temperature=0.02)
    assert float(good) < 0.01 and float(bad) > 1.0


def test_confidence_is_rewarded_where_matching_is_easy(scene) -> None:
    _, tgt = scene
    perfect, queries, matches = _perfect_pair(tgt, 64, 4)
    raw_conf = torch.zeros(3, 48, 64, requires_grad=True)
    loss, _ = descriptor_loss(perfect, 1 + raw_conf.exp(), queries, matches, temperature=0.02)
    loss.backward()
    assert float(raw_conf.grad.sum()) < 0  # descending the loss raises the confidence of well-matched pixels


def test_no_match_gives_a_zero_loss_with_gradients() -> None:
    desc = F.normalize(torch.randn(2, 8, 8, 4), dim=-1).requires_grad_()
    queries = torch.zeros(2, 3, dtype=torch.long)
    matches = torch.full((2, 2, 3), NO_MATCH)
    loss, nce = descriptor_loss(desc, torch.ones(2, 8, 8), queries, matches)
    assert float(loss) == 0.0 and float(nce) == 0.0
    loss.backward()


def test_local_loss_per_view_ignores_each_views_scale(scene) -> None:
    _, tgt = scene
    gt = tgt.gt_pts3d_local
    conf = torch.ones(3, 48, 64)
    noisy = gt + 0.01 * torch.randn_like(gt)
    scaled = noisy * torch.tensor([1.0, 3.0, 0.2])[:, None, None, None]
    a = local_pointmap_loss_per_view(noisy, gt, conf, tgt.valid, alpha=0.0)
    b = local_pointmap_loss_per_view(scaled, gt, conf, tgt.valid, alpha=0.0)
    torch.testing.assert_close(a, b)
    assert float(local_pointmap_loss_per_view(gt, gt, conf, tgt.valid, alpha=0.0)) < 1e-5


def test_criterion_descriptor_terms(scene) -> None:
    _, tgt = scene
    crit = PanopticCriterion(pts_global_weight=0.0, pose_rotation_weight=0.0, pose_translation_weight=0.0,
                             local_per_view=True, descriptor_weight=2.0, descriptor_queries=16)
    raw = torch.zeros(3, 48, 64, 7, requires_grad=True)
    desc_raw = torch.randn(3, 48, 64, 9, requires_grad=True)
    out = crit([ScenePrediction(None, (), raw, None, (), desc_raw)], [tgt], generator=torch.Generator().manual_seed(0))
    assert set(out.terms) == {"loss_pts_local", "loss_descriptor", "descriptor_nce", "loss_total"}
    expected = 1.0 * out.terms["loss_pts_local"] + 2.0 * out.terms["loss_descriptor"]
    torch.testing.assert_close(out.total, expected)
    out.total.backward()
    assert desc_raw.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="descriptor head"):
        crit([ScenePrediction(None, (), raw, None, (), None)], [tgt])
