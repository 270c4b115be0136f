"""Laws of the training losses, the Hungarian matching and the geometry metrics (method.md 6.2)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from panst3r_splat.core import procrustes
from panst3r_splat.core.training import losses, matching, metrics
from panst3r_splat.core.training.losses import (
    LOSS_CLASS,
    LOSS_MASK_BCE,
    LOSS_MASK_DICE,
    LOSS_POSE_ROTATION,
    LOSS_POSE_TRANSLATION,
    LOSS_PTS_GLOBAL,
    LOSS_PTS_LOCAL,
    LOSS_TOTAL,
    MaskOutputs,
    PanopticCriterion,
    Pointmaps,
    ScenePrediction,
    SceneTargets,
    aux_key,
)


hungarian_match = matching.hungarian_match
matching_cost = matching.matching_cost
mask_losses_at = losses.mask_losses_at
sigmoid_focal_loss_sum = losses.sigmoid_focal_loss_sum
pointmap_losses = losses.pointmap_losses
relative_pose_loss = losses.relative_pose_loss
activate_pointmaps = losses.activate_pointmaps
weighted_procrustes = procrustes.weighted_procrustes
geometry_metrics = metrics.geometry_metrics

LOGIT = 30.0  # "large-magnitude" logits: sigmoid(-30) ~ 1e-13
NUM_POINTS = 256


# ----------------------------------------------------------------------------------------------- scene builders


def rotation(axis, angle: float) -> torch.Tensor:
    """Rodrigues rotation matrix (float64)."""
    a = torch.tensor(axis, dtype=torch.float64)
    a = a / a.norm()
    K = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def block_masks(gen: torch.Generator, n_segments: int, n_views: int, height: int, width: int) -> torch.Tensor:
    """Random segment masks constant on 2x2 blocks (exactly representable at H/2), one segment absent in view 1."""
    coarse = torch.rand(n_segments, n_views, height // 2, width // 2, generator=gen) < 0.3
    coarse[0, 1] = False
    return coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def perfect_mask_outputs(gt_masks, gt_classes, n_queries: int, n_classes: int, gen) -> tuple[MaskOutputs, torch.Tensor]:
    """Queries holding the GT segments in a scrambled order (segment s in query ``slots[s]``), the others empty."""
    n_segments, n_views, height, width = gt_masks.shape
    slots = torch.randperm(n_queries, generator=gen)[:n_segments]
    class_logits = torch.full((n_queries, n_classes), -LOGIT, dtype=torch.float64)
    class_logits[slots, gt_classes] = LOGIT
    coarse = gt_masks[:, :, ::2, ::2].double() * 2 * LOGIT - LOGIT  # [S, V, h, w]
    mask_logits = torch.full((n_views, n_queries, height // 2, width // 2), -LOGIT, dtype=torch.float64)
    mask_logits[:, slots] = coarse.transpose(0, 1)
    return MaskOutputs(class_logits=class_logits, mask_logits=mask_logits), slots


def rigid_scene(gen: torch.Generator, n_views: int = 3, height: int = 8, width: int = 10):
    """GT local / global pointmaps related by known camera-to-view-0 poses, and a validity mask."""
    local = torch.randn(n_views, height, width, 3, generator=gen, dtype=torch.float64)
    local[..., 2] = local[..., 2].abs() + 2.0
    others = [rotation([0.3, 1, 0.1 * v], 0.2 + 0.3 * v) for v in range(1, n_views)]
    Rs = torch.stack([torch.eye(3, dtype=torch.float64), *others])
    ts = torch.randn(n_views, 3, generator=gen, dtype=torch.float64)
    ts[0] = 0.0
    world = torch.einsum("vij,vhwj->vhwi", Rs, local) + ts[:, None, None, :]
    valid = torch.rand(n_views, height, width, generator=gen) > 0.2
    return world, local, valid, Rs, ts


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(shape, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def geometry_only(raw, world, local, valid) -> tuple[list[ScenePrediction], list[SceneTargets]]:
    """A batch of one scene with pointmaps and no GT segment (one empty query), for the geometry terms."""
    n_views, height, width = valid.shape
    masks = MaskOutputs(torch.zeros(1, 2), torch.zeros(n_views, 1, height // 2, width // 2))
    no_segments = torch.zeros(0, n_views, height, width, dtype=torch.bool)
    targets = SceneTargets(no_segments, torch.zeros(0, dtype=torch.long), world, local, valid)
    return [ScenePrediction(masks, pointmaps_raw=raw)], [targets]


def inverse_norm_exp(points: torch.Tensor) -> torch.Tensor:
    """Raw head output whose NORM_EXP activation gives ``points``."""
    d = points.norm(dim=-1, keepdim=True)
    return points / d * torch.log1p(d)


# ----------------------------------------------------------------------------------------------- matching


def test_matching_picks_the_obvious_assignment_and_follows_query_permutations():
    gen = torch.Generator().manual_seed(0)
    n_views, height, width, n_queries, n_classes = 2, 8, 12, 7, 5
    gt_masks = block_masks(gen, 4, n_views, height, width)
    gt_classes = torch.tensor([3, 0, 3, 1])  # segments 0 and 2 share a class: only their masks tell them apart
    outputs, slots = perfect_mask_outputs(gt_masks, gt_classes, n_queries, n_classes, gen)
    # Only moderately confident and noisy, so that the cost has to do real work.
    mask_logits = outputs.mask_logits.clamp(-3, 3) + randn(outputs.mask_logits.shape, gen)
    class_logits = outputs.class_logits.clamp(-2, 2)

    q_idx, s_idx = hungarian_match(
        class_logits, mask_logits, gt_masks, gt_classes, num_points=NUM_POINTS, generator=seeded(1)
    )
    assert {int(s): int(q) for q, s in zip(q_idx, s_idx)} == {s: int(q) for s, q in enumerate(slots)}
    assert q_idx.tolist() == sorted(q_idx.tolist())

    perm = torch.randperm(n_queries, generator=gen)  # new query i is old query perm[i]
    q_perm, s_perm = hungarian_match(
        class_logits[perm], mask_logits[:, perm], gt_masks, gt_classes, num_points=NUM_POINTS, generator=seeded(1)
    )
    assert {int(s): int(perm[q]) for q, s in zip(q_perm, s_perm)} == {s: int(q) for s, q in enumerate(slots)}


def test_matching_cost_matches_its_loop_twin_and_hand_values():
    gen = torch.Generator().manual_seed(2)
    class_logits = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    mask_logits = torch.randn(3, 5, 6, 8, generator=gen, dtype=torch.float64)
    gt_masks = torch.rand(2, 3, 12, 16, generator=gen) > 0.5
    gt_classes = torch.tensor([2, 0])
    coords = torch.rand(64, 2, generator=gen, dtype=torch.float64)
    fast = matching_cost(class_logits, mask_logits, gt_masks, gt_classes, coords)
    slow = matching._matching_cost(class_logits, mask_logits, gt_masks, gt_classes, coords)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)

    # Hand case: one view, constant logit 0 (p = 1/2, BCE = log 2), a segment filling the view (t = 1 at every
    # point): dice = 1 - (2 * P/2 + 1) / (P/2 + P + 1); uniform class logits: prob 1/K.
    P, K = 10, 4
    cost = matching_cost(
        torch.zeros(1, K, dtype=torch.float64), torch.zeros(1, 1, 2, 2, dtype=torch.float64),
        torch.ones(1, 1, 4, 4, dtype=torch.bool), torch.tensor([1]), torch.rand(P, 2, dtype=torch.float64),
    )
    expected = 20 * math.log(2) + (1 - (P + 1) / (1.5 * P + 1)) - 1 / K
    assert cost.item() == pytest.approx(expected, rel=1e-12)


def test_matching_with_more_segments_than_queries_and_with_none():
    gen = torch.Generator().manual_seed(3)
    gt_masks = block_masks(gen, 5, 2, 8, 8)
    no_class = torch.zeros(5, dtype=torch.long)
    q_idx, s_idx = hungarian_match(randn((3, 4), gen), randn((2, 3, 4, 4), gen), gt_masks, no_class, num_points=32)
    assert len(q_idx) == len(s_idx) == 3 and len(set(s_idx.tolist())) == 3
    q_idx, s_idx = hungarian_match(torch.randn(3, 4), torch.randn(2, 3, 4, 4), gt_masks[:0], no_class[:0])
    assert q_idx.numel() == s_idx.numel() == 0
    with pytest.raises(ValueError, match="gt_classes must index"):
        hungarian_match(torch.randn(3, 4), torch.randn(2, 3, 4, 4), gt_masks, torch.full((5,), 4), num_points=8)


# ----------------------------------------------------------------------------------------------- panoptic losses


def test_mask_losses_match_their_loop_twin():
    gen = torch.Generator().manual_seed(4)
    pred = torch.randn(3, 2, 5, 6, generator=gen, dtype=torch.float64)
    gt = torch.rand(3, 2, 10, 12, generator=gen) > 0.6
    coords = torch.rand(3, 2, 40, 2, generator=gen, dtype=torch.float64)
    fast = mask_losses_at(pred, gt, coords)
    slow = losses._mask_losses_at(pred, gt, coords)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_focal_loss_hand_value():
    # One query, two classes, logits 0 (p = 1/2): target 1 -> 0.25 * log 2 * 0.25; target 0 -> 0.75 * log 2 * 0.25.
    loss = sigmoid_focal_loss_sum(torch.zeros(1, 2), torch.tensor([1]), torch.tensor([0]), torch.tensor([0]))
    assert loss.item() == pytest.approx((0.25 + 0.75) * math.log(2) * 0.25, rel=1e-6)
    none = torch.tensor([], dtype=torch.long)
    unmatched = sigmoid_focal_loss_sum(torch.zeros(1, 2), torch.tensor([1]), none, none)
    assert unmatched.item() == pytest.approx(2 * 0.75 * math.log(2) * 0.25, rel=1e-6)


def panoptic_case(seed: int = 5):
    gen = torch.Generator().manual_seed(seed)
    n_views, height, width, n_queries, n_classes = 3, 8, 12, 6, 5
    gt_masks = block_masks(gen, 3, n_views, height, width)
    gt_classes = torch.tensor([4, 1, 1])
    outputs, slots = perfect_mask_outputs(gt_masks, gt_classes, n_queries, n_classes, gen)
    return gen, gt_masks, gt_classes, outputs, slots


def test_perfect_panoptic_prediction_reaches_zero_when_masks_fill_views():
    # Segments that fill or miss whole views have no soft boundary samples: every term is exactly computable, ~0.
    gen = torch.Generator().manual_seed(6)
    gt_masks = torch.zeros(2, 3, 4, 6, dtype=torch.bool)
    gt_masks[0, 0] = True
    gt_masks[1, 1:] = True
    gt_classes = torch.tensor([2, 0])
    outputs, _ = perfect_mask_outputs(gt_masks, gt_classes, 4, 3, gen)
    out = PanopticCriterion(num_points=64)([ScenePrediction(outputs)], [SceneTargets(gt_masks, gt_classes)])
    for name in (LOSS_CLASS, LOSS_MASK_BCE, LOSS_MASK_DICE):
        assert out.terms[name].item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("kind", ["flip_block", "swap_class", "soften", "noise", "absent_view", "drop_query"])
def test_perfect_panoptic_prediction_beats_perturbed_ones(kind):
    gen, gt_masks, gt_classes, outputs, slots = panoptic_case()
    criterion = PanopticCriterion(num_points=2048)
    cls, msk = outputs.class_logits.clone(), outputs.mask_logits.clone()
    q0 = int(slots[0])  # the query holding segment 0
    if kind == "flip_block":
        msk[0, q0, 0:2, 0:2] *= -1
    elif kind == "swap_class":
        cls[q0] = cls[q0].roll(1)
    elif kind == "soften":
        msk = msk / LOGIT
        cls = cls / LOGIT
    elif kind == "noise":
        msk = msk + LOGIT * torch.randn(msk.shape, generator=gen, dtype=torch.float64)
    elif kind == "absent_view":  # segment 0 is absent in view 1: predicting it there must cost
        msk[1, q0] = LOGIT
    elif kind == "drop_query":
        cls[q0] = -LOGIT
        msk[:, q0] = -LOGIT
    targets = [SceneTargets(gt_masks, gt_classes)]
    perfect = criterion([ScenePrediction(outputs)], targets, generator=seeded(0))
    perturbed = criterion([ScenePrediction(MaskOutputs(cls, msk))], targets, generator=seeded(0))
    assert perfect.total < perturbed.total - 1e-3


def test_deep_supervision_adds_each_aux_layer_with_its_own_matching():
    gen, gt_masks, gt_classes, outputs, _ = panoptic_case(7)
    targets = [SceneTargets(gt_masks, gt_classes)]
    noisy = MaskOutputs(
        torch.randn(outputs.class_logits.shape, generator=gen, dtype=torch.float64),
        torch.randn(outputs.mask_logits.shape, generator=gen, dtype=torch.float64),
    )
    # An aux layer whose queries are a permutation of the final ones: its own matching makes it cost the same.
    perm = torch.randperm(outputs.class_logits.shape[0], generator=gen)
    permuted = MaskOutputs(noisy.class_logits[perm], noisy.mask_logits[:, perm])
    criterion = PanopticCriterion(num_points=2048)
    alone = criterion([ScenePrediction(noisy)], targets, generator=seeded(0))
    with_aux = criterion([ScenePrediction(noisy, aux_masks=(permuted, outputs))], targets, generator=seeded(0))
    for name in (LOSS_CLASS, LOSS_MASK_BCE, LOSS_MASK_DICE):
        assert aux_key(0, name) in with_aux.terms and aux_key(1, name) in with_aux.terms
        assert with_aux.terms[aux_key(0, name)].item() == pytest.approx(alone.terms[name].item(), rel=0.1)
    weights = {LOSS_CLASS: 1.0, LOSS_MASK_BCE: 20.0, LOSS_MASK_DICE: 1.0}
    aux_sum = sum(w * with_aux.terms[aux_key(i, n)] for i in (0, 1) for n, w in weights.items())
    final = sum(w * with_aux.terms[n] for n, w in weights.items())
    torch.testing.assert_close(with_aux.total, final + aux_sum)
    half = dataclasses.replace(criterion, aux_weight=0.5)
    out_half = half([ScenePrediction(noisy, aux_masks=(permuted, outputs))], targets, generator=seeded(0))
    torch.testing.assert_close(out_half.total, final + 0.5 * aux_sum, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------- geometry losses


def perfect_pointmaps(world, local, conf_value: float = 50.0) -> torch.Tensor:
    conf_raw = torch.full(world.shape[:-1] + (1,), math.log(conf_value - 1.0), dtype=world.dtype)
    return torch.cat([inverse_norm_exp(world), inverse_norm_exp(local), conf_raw], dim=-1)


def test_perfect_pointmaps_reach_the_computable_minimum_and_beat_perturbed_ones():
    gen = torch.Generator().manual_seed(8)
    world, local, valid, _, _ = rigid_scene(gen)
    world[~valid] = float("nan")  # values at invalid pixels must be ignored
    raw = perfect_pointmaps(world.nan_to_num(), local)
    pred = activate_pointmaps(raw)
    terms = pointmap_losses(pred, world, local, valid, conf_alpha=0.2)
    # Zero error: each pixel costs -alpha * log(conf), for the global and for the local pointmap.
    assert terms.pts_global.item() == pytest.approx(-0.2 * math.log(50.0), abs=1e-6)
    assert terms.pts_local.item() == pytest.approx(-0.2 * math.log(50.0), abs=1e-6)
    assert terms.pose_rotation.item() == pytest.approx(0.0, abs=1e-6)
    assert terms.pose_translation.item() == pytest.approx(0.0, abs=1e-6)
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        noisy = Pointmaps(
            pred.pts_global + 0.05 * torch.randn(pred.pts_global.shape, generator=g, dtype=torch.float64),
            pred.pts_local + 0.05 * torch.randn(pred.pts_local.shape, generator=g, dtype=torch.float64),
            pred.conf,
        )
        worse = pointmap_losses(noisy, world, local, valid)
        assert worse.pts_global > terms.pts_global and worse.pts_local > terms.pts_local
        assert worse.pose_rotation > 1e-4 and worse.pose_translation > 1e-4


def test_pointmap_losses_are_invariant_to_a_global_scale_of_the_prediction():
    gen = torch.Generator().manual_seed(9)
    world, local, valid, _, _ = rigid_scene(gen)
    pred = activate_pointmaps(torch.randn(*world.shape[:-1], 7, generator=gen, dtype=torch.float64))
    base = pointmap_losses(pred, world, local, valid)
    for scale in (0.01, 3.0, 1000.0):
        scaled_pred = Pointmaps(scale * pred.pts_global, scale * pred.pts_local, pred.conf)
        scaled = pointmap_losses(scaled_pred, world, local, valid)
        for a, b in zip(dataclasses.astuple(base), dataclasses.astuple(scaled)):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # ... and to a scale of the ground truth.
    gt_scaled = pointmap_losses(pred, 7.0 * world, 7.0 * local, valid)
    for a, b in zip(dataclasses.astuple(base), dataclasses.astuple(gt_scaled)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_pose_loss_sees_a_wrong_rotation_that_copying_local_points_gives():
    # The degenerate "global = local" prediction: its pose rotation error is the GT rotation's chordal size.
    gen = torch.Generator().manual_seed(10)
    world, local, valid, Rs, _ = rigid_scene(gen)
    rotation_loss, _ = relative_pose_loss(local, local, world, local, valid)
    expected = torch.stack([(torch.eye(3, dtype=torch.float64) - R).norm() for R in Rs]).mean()
    assert rotation_loss.item() == pytest.approx(expected.item(), abs=1e-5)  # smooth norm: |x| - 1e-6


def test_gradients_flow_to_every_input():
    gen = torch.Generator().manual_seed(11)
    world, local, valid, _, _ = rigid_scene(gen, n_views=2, height=8, width=8)
    gt_masks = block_masks(gen, 2, 2, 8, 8)
    gt_classes = torch.tensor([0, 2])
    leaves = {
        "class_logits": torch.randn(4, 3, generator=gen, dtype=torch.float64),
        "mask_logits": torch.randn(2, 4, 4, 4, generator=gen, dtype=torch.float64),
        "aux_class_logits": torch.randn(4, 3, generator=gen, dtype=torch.float64),
        "aux_mask_logits": torch.randn(2, 4, 4, 4, generator=gen, dtype=torch.float64),
        "pointmaps_raw": perfect_pointmaps(world, local, 2.0) + 0.1 * randn((*world.shape[:-1], 7), gen),
    }
    for t in leaves.values():
        t.requires_grad_(True)
    pred = ScenePrediction(
        MaskOutputs(leaves["class_logits"], leaves["mask_logits"]),
        aux_masks=(MaskOutputs(leaves["aux_class_logits"], leaves["aux_mask_logits"]),),
        pointmaps_raw=leaves["pointmaps_raw"],
    )
    targets = SceneTargets(gt_masks, gt_classes, world, local, valid)
    out = PanopticCriterion(num_points=64)([pred], [targets])
    geometry = (LOSS_PTS_GLOBAL, LOSS_PTS_LOCAL, LOSS_POSE_ROTATION, LOSS_POSE_TRANSLATION)
    assert set(out.terms) >= {LOSS_CLASS, LOSS_MASK_BCE, LOSS_MASK_DICE, *geometry, LOSS_TOTAL}
    out.total.backward()
    for name, t in leaves.items():
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
        assert t.grad.abs().sum() > 0, name
    grad = leaves["pointmaps_raw"].grad
    assert (grad[..., 6][valid] != 0).all() and (grad[..., :6][~valid] == 0).all()
    # Every term separately reaches the pointmaps, the pose terms included.
    for name in (LOSS_PTS_GLOBAL, LOSS_PTS_LOCAL, LOSS_POSE_ROTATION, LOSS_POSE_TRANSLATION):
        (g,) = torch.autograd.grad(
            PanopticCriterion(num_points=16)([pred], [targets]).terms[name],
            leaves["pointmaps_raw"],
        )
        assert g[..., :6].abs().sum() > 0, name


def test_invalid_pixels_with_nan_ground_truth_do_not_poison_the_gradient():
    gen = torch.Generator().manual_seed(12)
    world, local, valid, _, _ = rigid_scene(gen, n_views=2)
    world[~valid] = float("inf")
    local[~valid] = float("nan")
    raw = torch.randn(*world.shape[:-1], 7, generator=gen, dtype=torch.float64, requires_grad=True)
    out = PanopticCriterion()(*geometry_only(raw, world, local, valid))
    out.total.backward()
    assert torch.isfinite(out.total) and torch.isfinite(raw.grad).all()


def test_pose_loss_weights_switch_the_term():
    gen = torch.Generator().manual_seed(13)
    world, local, valid, _, _ = rigid_scene(gen, n_views=2)
    raw = torch.randn(*world.shape[:-1], 7, generator=gen, dtype=torch.float64)
    pred, tgt = geometry_only(raw, world, local, valid)
    on = PanopticCriterion()(pred, tgt)
    off = PanopticCriterion(pose_rotation_weight=0.0, pose_translation_weight=0.0)(pred, tgt)
    torch.testing.assert_close(on.total - off.total, on.terms[LOSS_POSE_ROTATION] + on.terms[LOSS_POSE_TRANSLATION])


def test_memory_pass_terms_are_the_geometry_terms_of_the_memory_pointmaps_times_their_weight():
    gen = torch.Generator().manual_seed(17)
    world, local, valid, _, _ = rigid_scene(gen, n_views=2)
    raw = torch.randn(*world.shape[:-1], 7, generator=gen, dtype=torch.float64)
    raw_memory = torch.randn(*world.shape[:-1], 7, generator=gen, dtype=torch.float64)
    (pred,), tgt = geometry_only(raw, world, local, valid)
    with_memory = [dataclasses.replace(pred, pointmaps_memory_raw=raw_memory)]
    base = PanopticCriterion()([pred], tgt)
    on = PanopticCriterion(memory_pass_weight=0.5)(with_memory, tgt)
    alone = PanopticCriterion()(geometry_only(raw_memory, world, local, valid)[0], tgt)
    memory_terms = {k: v for k, v in on.terms.items() if k.startswith(losses.MEMORY_PASS + "/")}
    assert sorted(memory_terms) == sorted(f"memory/{k}" for k in (LOSS_POSE_ROTATION, LOSS_POSE_TRANSLATION,
                                                                  "loss_pts_global", "loss_pts_local"))
    for name, value in memory_terms.items():
        torch.testing.assert_close(value, alone.terms[name.split("/", 1)[1]])
    torch.testing.assert_close(on.total, base.total + 0.5 * sum(memory_terms.values()))  # default weights are 1
    geometry_alone = PanopticCriterion(memory_pass_weight=0.5)([dataclasses.replace(with_memory[0], masks=None)], tgt)
    assert all("mask" not in k and "class" not in k for k in geometry_alone.terms)
    torch.testing.assert_close(geometry_alone.total, on.total - (base.total - sum(
        v for k, v in base.terms.items() if k in (LOSS_POSE_ROTATION, LOSS_POSE_TRANSLATION, "loss_pts_global",
                                                  "loss_pts_local"))))
    with pytest.raises(ValueError, match="memory_pass_pointmaps=True"):
        PanopticCriterion(memory_pass_weight=1.0)([pred], tgt)


# ----------------------------------------------------------------------------------------------- procrustes


def test_procrustes_backward_matches_autograd_svd_and_finite_differences():
    gen = torch.Generator().manual_seed(14)
    for _ in range(4):
        M = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(procrustes._SpecialProcrustes.apply, (M,))
        G = torch.randn(3, 3, generator=gen, dtype=torch.float64)
        (fast,) = torch.autograd.grad((procrustes.special_procrustes(M) * G).sum(), M)
        (slow,) = torch.autograd.grad((procrustes._special_procrustes(M) * G).sum(), M)
        torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)
    # Equal singular values (a perfect prediction's covariance can be isotropic): autograd SVD gives NaN, ours not.
    M = torch.eye(3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad((procrustes.special_procrustes(M) * G).sum(), M)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("with_scale", [False, True])
def test_weighted_procrustes_matches_the_quaternion_twin(with_scale):
    gen = torch.Generator().manual_seed(15)
    src = torch.randn(2, 50, 3, generator=gen, dtype=torch.float64)
    R = torch.stack([rotation([1, 2, 3], 2.5), rotation([0, 1, 0], -0.4)])
    t = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    dst = 1.7 * src @ R.transpose(-1, -2) + t + 0.05 * randn(src.shape, gen)
    w = torch.rand(2, 50, generator=gen, dtype=torch.float64)
    fit = weighted_procrustes(src, dst, w, with_scale=with_scale)
    for b in range(2):
        R_ref, t_ref, s_ref = procrustes._weighted_procrustes(
            src[b].numpy(), dst[b].numpy(), w[b].numpy(), with_scale=with_scale
        )
        np.testing.assert_allclose(fit.R[b].numpy(), R_ref, atol=1e-9)
        np.testing.assert_allclose(fit.t[b].numpy(), t_ref, atol=1e-9)
        assert fit.scale[b].item() == pytest.approx(s_ref, rel=1e-9)
        assert torch.linalg.det(fit.R[b]).item() == pytest.approx(1.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------- metrics


def test_geometry_metrics_laws():
    gen = torch.Generator().manual_seed(16)
    world, local, valid, Rs, _ = rigid_scene(gen, n_views=4)
    perfect = geometry_metrics(world, local, world, local, valid)
    assert perfect.local_depth_rel_error == pytest.approx(0.0, abs=1e-9)
    for value in (perfect.rotation_error_deg, perfect.translation_angle_error_deg, perfect.camera_rotation_error_deg):
        assert value == pytest.approx(0.0, abs=1e-5)
    for value in (perfect.camera_center_error, perfect.global_point_error, perfect.global_depth_rel_error):
        assert value == pytest.approx(0.0, abs=1e-9)
    # Identity-rotation baseline: the mean GT relative rotation angle over pairs, by hand.
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    cosines = [((Rs[i].T @ Rs[j]).trace().item() - 1) / 2 for i, j in pairs]
    angles = [math.degrees(math.acos(max(-1.0, min(1.0, c)))) for c in cosines]
    assert perfect.rotation_error_identity_deg == pytest.approx(sum(angles) / len(angles), rel=1e-6)

    # A Sim(3) of the whole prediction and a per-view scale of the local points change nothing.
    R, t, s = rotation([1, 1, 0], 0.7), torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64), 4.0
    view_scales = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)[:, None, None, None]
    moved = geometry_metrics(s * world @ R.T + t, local * view_scales, world, local, valid)
    assert moved.global_point_error == pytest.approx(0.0, abs=1e-9)
    assert moved.local_depth_rel_error == pytest.approx(0.0, abs=1e-9)

    # Copying the local points as global ones: exactly the no-cross-view baselines.
    copy = geometry_metrics(local, local, world, local, valid, conf=torch.full(valid.shape, 3.0))
    assert copy.rotation_error_deg == pytest.approx(perfect.rotation_error_identity_deg, rel=1e-6)
    assert copy.global_point_error == pytest.approx(perfect.global_point_error_copy_local, rel=1e-9)
    assert copy.global_point_error > 0.05


def test_local_depth_error_hand_case():
    gt = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    gt[..., 2] = torch.tensor([1.0, 2.0, 4.0])
    pred = gt.clone()
    pred[0, 0, 2, 2] = 8.0  # scaled by the median ratio 1: errors 0, 0, 1 -> median 0
    assert metrics.local_depth_rel_error(pred, gt, torch.ones(1, 1, 3, dtype=torch.bool)) == 0.0
    pred[..., 2] = -pred[..., 2]  # behind the camera: counts as error 1
    assert metrics.local_depth_rel_error(pred, gt, torch.ones(1, 1, 3, dtype=torch.bool)) == 1.0


def test_shape_annotations_are_checked_at_run_time():
    world = torch.zeros(2, 4, 5, 3)
    with pytest.raises(TypeError, match="valid"):
        relative_pose_loss(world, world, world, world, torch.ones(2, 4, 6, dtype=torch.bool))


def test_pose_term_alone_rotates_a_copied_local_prediction_into_place():
    # From the degenerate solution of training_probe.md (global points = each view's local points), gradient descent
    # on the pose term alone must reach the GT cameras (30 degrees -> about 0.3 in 100 steps here).
    gen = torch.Generator().manual_seed(17)
    world, local, valid, _, _ = rigid_scene(gen, n_views=3)
    pred_global = (local + 0.01 * randn(local.shape, gen)).requires_grad_(True)
    optimiser = torch.optim.Adam([pred_global], lr=0.05)
    before = geometry_metrics(pred_global.detach(), local, world, local, valid)
    for _ in range(100):
        optimiser.zero_grad()
        rot, trans = relative_pose_loss(pred_global, local, world, local, valid)
        (rot + trans).backward()
        optimiser.step()
    after = geometry_metrics(pred_global.detach(), local, world, local, valid)
    assert before.rotation_error_deg > 20.0
    assert after.rotation_error_deg < 0.1 * before.rotation_error_deg
