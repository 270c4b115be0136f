"""Ground-truth patch correspondences and the correspondence InfoNCE (training/correspondence.py)."""

from __future__ import annotations

import pytest
import torch

from panst3r_splat.core.training import correspondence
from panst3r_splat.core.training.correspondence import NO_MATCH, _correspondence_loss
from panst3r_splat.core.training.losses import (
    LOSS_CORRESPONDENCE,
    LOSS_TOTAL,
    PanopticCriterion,
    ScenePrediction,
    SceneTargets,
)

patch_correspondences = correspondence.patch_correspondences
correspondence_loss = correspondence.correspondence_loss

P, GH, GW, F_PX = 4, 3, 5, 20.0
H, W = GH * P, GW * P


def plane_view(shift_px: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fronto-parallel plane at depth 1 seen by a camera moved right by ``shift_px`` pixels' worth (same frame)."""
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5 + shift_px, indexing="ij")
    world = torch.stack([(u - W / 2) / F_PX, (v - H / 2) / F_PX, torch.ones_like(u)], dim=-1)
    local = world - torch.tensor([shift_px / F_PX, 0.0, 0.0])
    return world, local


def two_views(shift_px: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    (w0, l0), (w1, l1) = plane_view(0), plane_view(shift_px)
    return torch.stack([w0, w1]), torch.stack([l0, l1]), torch.ones(2, H, W, dtype=torch.bool)


def test_identical_views_match_every_patch_to_itself_and_never_to_their_own_view():
    world, local, valid = two_views(0)
    m = patch_correspondences(world, local, valid, P)
    assert torch.equal(m[0, 1], torch.arange(GH * GW)) and torch.equal(m[1, 0], torch.arange(GH * GW))
    assert (m[0, 0] == NO_MATCH).all() and (m[1, 1] == NO_MATCH).all()


def test_a_view_shifted_by_one_patch_matches_the_neighbouring_column_and_nothing_outside():
    world, local, valid = two_views(P)
    m = patch_correspondences(world, local, valid, P)
    grid = torch.arange(GH * GW).reshape(GH, GW)
    # View 1 sees the scene one patch to the right: its column c shows view 0's column c + 1.
    expected_01 = torch.full((GH, GW), NO_MATCH)
    expected_01[:, 1:] = grid[:, :-1]
    expected_10 = torch.full((GH, GW), NO_MATCH)
    expected_10[:, :-1] = grid[:, 1:]
    assert torch.equal(m[0, 1].reshape(GH, GW), expected_01)
    assert torch.equal(m[1, 0].reshape(GH, GW), expected_10)


def test_invalid_pixels_neither_query_nor_answer():
    world, local, valid = two_views(0)
    valid[1, :, :P] = False  # view 1's first patch column has no GT (hidden surface, sky)
    valid[0, P // 2, P // 2] = False  # the centre pixel of view 0's first patch
    m = patch_correspondences(world, local, valid, P)
    assert m[0, 1, 0] == NO_MATCH
    first_column = torch.arange(GH) * GW
    assert (m[0, 1, first_column] == NO_MATCH).all() and (m[1, 0, first_column] == NO_MATCH).all()
    assert torch.equal(m[0, 1, 1:GW], torch.arange(1, GW))


def test_loss_matches_its_reference_twin_forward_and_backward():
    torch.manual_seed(0)
    world, local, valid = two_views(P)
    matches = patch_correspondences(torch.cat([world, world[:1]]), torch.cat([local, local[:1]]),
                                    torch.cat([valid, valid[:1]]), P)
    tokens = torch.randn(3, GH * GW, 8, requires_grad=True)
    fast = correspondence_loss(tokens, matches, temperature=0.2)
    (g_fast,) = torch.autograd.grad(fast, tokens)
    slow = _correspondence_loss(tokens, matches, temperature=0.2)
    (g_slow,) = torch.autograd.grad(slow, tokens)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-4, atol=1e-6)


def test_tokens_that_identify_their_surface_cost_less_than_random_ones():
    world, local, valid = two_views(P)
    matches = patch_correspondences(world, local, valid, P)
    # One-hot code of the scene column each patch shows (view 1's column c shows view 0's column c + 1).
    grid_col = torch.arange(GH * GW) % GW
    rows = torch.arange(GH * GW) // GW
    code = lambda col: torch.nn.functional.one_hot(rows * (GW + 1) + col, GH * (GW + 1)).float()  # noqa: E731
    perfect = torch.stack([code(grid_col), code(grid_col + 1)])
    low = correspondence_loss(perfect, matches, temperature=0.05)
    random = correspondence_loss(torch.randn_like(perfect), matches, temperature=0.05)
    assert float(low) < 1e-3 < float(random)


def test_no_match_gives_a_zero_loss_with_a_gradient():
    tokens = torch.randn(2, 6, 4, requires_grad=True)
    loss = correspondence_loss(tokens, torch.full((2, 2, 6), NO_MATCH))
    loss.backward()
    assert float(loss) == 0.0 and tokens.grad is not None


def test_criterion_adds_the_weighted_term_and_requires_tokens():
    world, local, valid = two_views(P)
    tgt = SceneTargets(torch.zeros(0, 2, H, W, dtype=torch.bool), torch.zeros(0, dtype=torch.long), world, local,
                       valid)
    tokens = torch.randn(2, GH * GW, 8, requires_grad=True)
    pred = ScenePrediction(None, (), None, None, (tokens, tokens * 2))
    out = PanopticCriterion(correspondence_weight=0.5)([pred], [tgt])
    expected = correspondence_loss(tokens, patch_correspondences(world, local, valid, P))
    torch.testing.assert_close(out.terms[LOSS_CORRESPONDENCE], expected)  # cosine: scaling changes nothing
    torch.testing.assert_close(out.terms[LOSS_TOTAL], 0.5 * expected)
    out.total.backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="patch_tokens"):
        PanopticCriterion(correspondence_weight=0.5)([ScenePrediction(None)], [tgt])
    assert LOSS_CORRESPONDENCE not in PanopticCriterion()([pred], [tgt]).terms
