"""Laws of the multi-view merges: query-permutation invariance, clean partitions come back unchanged, one id per
pixel, one query per id in every view, stuff fusion, and the streamed merges against their reference twins."""

from __future__ import annotations

import pytest
from _typecheck import rejects
import torch
from _merging_helpers import MERGES, merge_panoptic, panoptic_from_selection, same_partition

from panst3r_splat.core import merging
from panst3r_splat.core.merging import STANDARD_V1, STANDARD_V2, QuboConfig, merge_standard
from panst3r_splat.core.merging.masks import _upsampled_mask_probs
from panst3r_splat.core.merging.qubo import _panoptic_from_selection
from panst3r_splat.core.merging.standard import _merge_standard
from panst3r_splat.core.merging.synthetic import synthetic_masks

MASK_HW = (12, 16)
IMAGE_HW = (24, 32)
SHARP = 12.0


def clean_partition(num_views: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rectangles that tile every view (split lines move from view to view, object 4 only in view 1) as sharp
    logits, plus two empty queries. Returns (class_logits, mask_logits, labels [V, h, w], classes [5])."""
    h, w = MASK_HW
    labels = torch.empty(num_views, h, w, dtype=torch.int64)
    for v in range(num_views):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        labels[v] = (ys >= 5 + v).long() * 2 + (xs >= 7 - v).long()
    labels[1, 1:4, 1:4] = 4
    classes = torch.tensor([0, 2, 1, 2, 3])
    onehot = torch.nn.functional.one_hot(labels, 5).permute(0, 3, 1, 2).float()  # [V, 5, h, w]
    empty = torch.zeros(num_views, 2, h, w)
    mask_logits = SHARP * (2 * torch.cat([onehot, empty], 1) - 1)
    class_logits = torch.full((7, 4), -8.0)
    class_logits[torch.arange(5), classes] = 8.0
    return class_logits, mask_logits, labels, classes


def nearest_up(labels: torch.Tensor) -> torch.Tensor:
    return labels.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def small_instance(seed: int, num_queries: int = 16, num_views: int = 3):
    s = synthetic_masks(num_views=num_views, num_queries=num_queries, mask_hw=MASK_HW, num_objects=5, num_classes=4,
                        seed=seed, sharpness=6.0, noise=2.0)
    return s.class_logits, s.mask_logits


@pytest.mark.parametrize("merge", list(MERGES))
def test_clean_partition_is_returned_unchanged(merge):
    class_logits, mask_logits, labels, classes = clean_partition()
    result = MERGES[merge](class_logits, mask_logits, IMAGE_HW)
    assert same_partition(result.panoptic, nearest_up(labels) + 1)
    assert sorted(s.query_id for s in result.segments) == [0, 1, 2, 3, 4]
    for s in result.segments:
        assert s.category_id == int(classes[s.query_id])
        assert s.area == int((nearest_up(labels) == s.query_id).sum())


@pytest.mark.parametrize("merge", list(MERGES))
@pytest.mark.parametrize("seed", [0, 1])
def test_query_permutation_invariance(merge, seed):
    class_logits, mask_logits = small_instance(seed)
    perm = torch.randperm(class_logits.shape[0], generator=torch.Generator().manual_seed(seed))
    a = MERGES[merge](class_logits, mask_logits, IMAGE_HW)
    b = MERGES[merge](class_logits[perm], mask_logits[:, perm], IMAGE_HW)
    assert len(a.segments) > 0
    assert same_partition(a.panoptic, b.panoptic)
    torch.testing.assert_close(a.confidence, b.confidence, atol=0, rtol=0)
    assert sorted((s.query_id, s.category_id, s.area) for s in a.segments) == sorted(
        (int(perm[s.query_id]), s.category_id, s.area) for s in b.segments
    )


@pytest.mark.parametrize("merge", list(MERGES))
@pytest.mark.parametrize("num_queries", [16, 40])  # 40: the QUBO takes the annealing path
def test_one_id_per_pixel_and_one_query_per_id_in_every_view(merge, num_queries):
    class_logits, mask_logits = small_instance(3, num_queries=num_queries, num_views=4)
    result = MERGES[merge](class_logits, mask_logits, IMAGE_HW)
    ids = [s.id for s in result.segments]
    assert ids == list(range(1, len(ids) + 1))
    present = set(torch.unique(result.panoptic).tolist()) - {0}
    assert present == set(ids)
    assert sum(s.area for s in result.segments) == int((result.panoptic > 0).sum())
    assert len({s.query_id for s in result.segments}) == len(ids)
    # Every pixel of segment s, in every view, carries the probability of s's query: one query, one object.
    masks = _upsampled_mask_probs(mask_logits, IMAGE_HW)  # [Q, V, H, W]
    for s in result.segments:
        region = result.panoptic == s.id
        torch.testing.assert_close(result.confidence[region], masks[s.query_id][region], atol=0, rtol=0)
        assert s.mask_conf == pytest.approx(float(masks[s.query_id][region].double().mean()), rel=1e-9)


@pytest.mark.parametrize("merge", list(MERGES))
def test_isthing_fuses_stuff_segments_of_one_class(merge):
    class_logits, mask_logits, labels, classes = clean_partition()
    isthing = torch.tensor([False, True, True, False])  # class 0 stuff, 1 and 2 things, 3 stuff
    # queries 1 and 3 share class 2 (a thing): kept apart; make queries 0 and 2 share stuff class 0
    class_logits[2] = class_logits[0]
    result = MERGES[merge](class_logits, mask_logits, IMAGE_HW, isthing=isthing)
    up = nearest_up(labels)
    fused = result.panoptic[up == 0]
    assert torch.all(fused == fused[0]) and torch.all(result.panoptic[up == 2] == fused[0])
    assert int(result.panoptic[up == 1][0]) != int(result.panoptic[up == 3][0])
    stuff = [s for s in result.segments if s.category_id == 0]
    assert len(stuff) == 1 and not stuff[0].isthing and stuff[0].area == int(((up == 0) | (up == 2)).sum())
    assert all(s.isthing for s in result.segments if s.category_id in (1, 2))


@pytest.mark.parametrize("config", [STANDARD_V1, STANDARD_V2], ids=["v1", "v2"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_standard_merge_matches_its_twin(config, seed):
    class_logits, mask_logits = small_instance(seed, num_queries=30, num_views=4)
    result = merge_standard(class_logits, mask_logits, IMAGE_HW, config=config)
    panoptic, conf, info = _merge_standard(class_logits, mask_logits, IMAGE_HW, config)
    assert torch.equal(result.panoptic, panoptic)
    torch.testing.assert_close(result.confidence, conf, atol=0, rtol=0)
    assert [(s.id, s.query_id, s.category_id) for s in result.segments] == info


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_qubo_assignment_matches_its_twin(seed):
    class_logits, mask_logits = small_instance(seed, num_queries=30, num_views=4)
    selected = torch.rand(30, generator=torch.Generator().manual_seed(seed)) < 0.4
    class_logits[0] = -10.0  # a selected query whose class is too unsure: void by the class_prob * conf rule
    selected[0] = True
    result = panoptic_from_selection(class_logits, mask_logits, IMAGE_HW, selected)
    panoptic, conf, info = _panoptic_from_selection(class_logits, mask_logits, IMAGE_HW, selected)
    assert torch.equal(result.panoptic, panoptic)
    torch.testing.assert_close(result.confidence, conf, atol=0, rtol=0)
    assert [(s.id, s.query_id, s.category_id) for s in result.segments] == info
    assert 0 not in [s.query_id for s in result.segments]


@pytest.mark.parametrize("merge", list(MERGES))
def test_nothing_confident_gives_all_void(merge):
    class_logits = torch.full((6, 3), -9.0)
    mask_logits = torch.full((2, 6, *MASK_HW), -30.0)
    result = MERGES[merge](class_logits, mask_logits, IMAGE_HW)
    assert result.segments == () and not result.panoptic.any()


def test_merge_panoptic_dispatches_and_rejects_bad_input():
    class_logits, mask_logits = small_instance(0)
    for name, fn in MERGES.items():
        a = merge_panoptic(name, class_logits, mask_logits, IMAGE_HW, qubo_config=QuboConfig())
        assert torch.equal(a.panoptic, fn(class_logits, mask_logits, IMAGE_HW).panoptic)
    # Without the tests' checker the ValueError names the problem; with it, the shape annotations catch it first.
    with pytest.raises(ValueError, match="unknown merge"):
        merging.merge_panoptic("nope", class_logits, mask_logits, IMAGE_HW)
    with rejects(ValueError, match="queries"):
        merging.merge_panoptic("qubo", class_logits[:5], mask_logits, IMAGE_HW)
    with rejects(ValueError, match=r"\[V, Q, h, w\]"):
        merging.merge_panoptic("standard_v2", class_logits, mask_logits[0], IMAGE_HW)
