"""Reciprocal nearest-neighbour matching, pixel and pair selection, and the match container."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from panst3r_splat.core.cameras.matching import (
    MatchingOptions,
    PairMatches,
    _row_max,
    match_descriptors,
    reciprocal_matches,
    select_pairs,
    select_pixels,
)


def _codes(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)


def test_reciprocal_matches_recover_a_permutation() -> None:
    desc_a = _codes(50, 32, 0)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    exact = MatchingOptions(min_similarity=0.9, cycle_px=0, search_stride=1)
    ia, jb = reciprocal_matches(desc_a.reshape(5, 10, 32), desc_a[perm].reshape(5, 10, 32), np.arange(50), exact)
    assert len(ia) == 50
    np.testing.assert_array_equal(perm[torch.from_numpy(jb)].numpy(), ia)


def test_reciprocal_matches_search_the_whole_view_and_check_the_round_trip() -> None:
    a = torch.tensor([[[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]])  # one row of 3 pixels
    b = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    exact = MatchingOptions(cycle_px=0, search_stride=1)
    assert len(reciprocal_matches(a, b, np.array([1]), exact)[0]) == 0
    # Within one pixel, the round trip a[1] -> b[1] -> a[0] counts.
    within = MatchingOptions(cycle_px=1, search_stride=1)
    assert [x.tolist() for x in reciprocal_matches(a, b, np.array([1]), within)] == [[1], [1]]
    ia, jb = reciprocal_matches(a, b, np.array([0, 2]), exact)
    assert ia.tolist() == [0, 2] and jb.tolist() == [1, 0]
    tiny_chunks = MatchingOptions(chunk_elements=1, cycle_px=0, search_stride=1)  # one row at a time: the same
    assert [x.tolist() for x in reciprocal_matches(a, b, np.array([0, 2]), tiny_chunks)] == [[0, 2], [1, 0]]
    assert len(reciprocal_matches(a, -b, np.array([0, 2]), MatchingOptions(min_similarity=0.5))[0]) == 0
    assert len(reciprocal_matches(a, 0 * b, np.array([0, 2]), MatchingOptions())[0]) == 0  # zero: no match
    assert len(reciprocal_matches(a, b, np.zeros(0, dtype=np.int64), MatchingOptions())[0]) == 0


def test_coarse_search_finds_the_same_pixels_as_the_full_search() -> None:
    H, W, D = 24, 32, 16
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    # Smooth descriptors (a random Fourier field over the image): neighbours resemble each other, as real ones do.
    freqs = torch.randn(2, D, generator=torch.Generator().manual_seed(0)) * 0.4
    field = torch.nn.functional.normalize(torch.cos(torch.stack([xs, ys], -1) @ freqs + torch.arange(D)), dim=-1)
    start = np.arange(0, H * W, 7)
    coarse = reciprocal_matches(field, field, start, MatchingOptions(search_stride=2, cycle_px=0))
    full = reciprocal_matches(field, field, start, MatchingOptions(search_stride=1, cycle_px=0))
    np.testing.assert_array_equal(full[0], start)  # a view matched with itself: every pixel with itself
    np.testing.assert_array_equal(coarse[0], coarse[1])  # what the coarse search finds is right
    # It misses a few, where the best grid pixel lies by a far look-alike instead of next to the right pixel.
    assert len(coarse[0]) >= 0.95 * len(start)


def test_select_pixels_keeps_confident_block_maxima() -> None:
    conf = np.ones((8, 8))
    conf[1, 2] = 5.0
    conf[6, 7] = 3.0
    conf[6, 6] = 2.0  # same 2x2 block as (6, 7): only the block's best survives
    px = select_pixels(conf, MatchingOptions(grid_cell=2, min_conf=1.5, max_pixels=16))
    assert px.tolist() == [[2, 1], [7, 6]]  # (x, y), most confident first
    # Fewer pixels wanted: the cells grow (one 8x8 cell here), so the choice still covers the image.
    assert select_pixels(conf, MatchingOptions(grid_cell=2, min_conf=1.5, max_pixels=1)).tolist() == [[2, 1]]
    spread = select_pixels(np.full((64, 64), 2.0), MatchingOptions(grid_cell=2, max_pixels=64))
    assert len(spread) == 64 and spread[:, 1].max() >= 56  # equal confidences: the whole image, not its top rows


def test_select_pairs_all_then_nearest() -> None:
    desc = _codes(6, 8, 2)
    assert select_pairs(desc, MatchingOptions(all_pairs_up_to=16)) == list(itertools.combinations(range(6), 2))
    few = select_pairs(desc, MatchingOptions(all_pairs_up_to=3, neighbours=1))
    sim = desc @ desc.T
    sim.fill_diagonal_(-2.0)
    for v in range(6):  # each view is paired with its most similar one
        best = int(sim[v].argmax())
        assert (min(v, best), max(v, best)) in few
    assert len(few) < 15


def test_match_descriptors_matches_shifted_views() -> None:
    H, W, D = 12, 16, 64
    field = _codes(H * (W + 4), D, 3).reshape(H, W + 4, D)
    descs = [field[:, :W], field[:, 4:]]  # view 1 is view 0 shifted 4 pixels left
    conf = [torch.full((H, W), 3.0)] * 2
    every_pixel = MatchingOptions(grid_cell=1, max_pixels=H * W, min_similarity=0.9, search_stride=1, cycle_px=0)
    (pair,) = match_descriptors(descs, conf, every_pixel)  # random codes, not smooth: search every pixel
    assert (pair.view_a, pair.view_b) == (0, 1)
    np.testing.assert_array_equal(pair.uv_b, pair.pixels_a + [-4, 0])
    assert len(pair) == H * (W - 4)
    back = pair.reversed()
    assert (back.view_a, back.view_b) == (1, 0)
    np.testing.assert_array_equal(back.reversed().pixels_a, pair.pixels_a)


def test_pair_matches_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="itself"):
        PairMatches(1, 1, np.zeros((0, 2), dtype=int), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="integer"):
        PairMatches(0, 1, np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="grid pixels"):
        PairMatches(0, 1, np.zeros((1, 2), dtype=int), np.full((1, 2), 0.5)).reversed()


@pytest.mark.parametrize("columns", [1, 63, 64, 130, 6912, 6913])
def test_blocked_row_maximum_is_torch_max(columns: int) -> None:
    sims = torch.randn(37, columns, generator=torch.Generator().manual_seed(columns)).round(decimals=1)  # ties
    value, index = _row_max(sims)
    expected = sims.max(dim=1)
    torch.testing.assert_close(value, expected.values)
    first = (sims == expected.values[:, None]).int().argmax(dim=1)  # the first column holding the maximum
    torch.testing.assert_close(index, first)


def test_many_views_start_from_fewer_pixels() -> None:
    H, W, D = 12, 16, 64
    field = _codes(H * (W + 8), D, 4).reshape(H, W + 8, D)
    descs = [field[:, :W], field[:, 4 : W + 4], field[:, 8:]]  # each view the previous one shifted 4 pixels left
    conf = [torch.full((H, W), 3.0)] * 3
    every_pixel = MatchingOptions(grid_cell=1, max_pixels=H * W, min_similarity=0.9, search_stride=1, cycle_px=0,
                                  max_pixels_many_views=12)
    few_views = match_descriptors(descs, conf, every_pixel)
    assert [len(m) for m in few_views] == [H * (W - 4), H * (W - 8), H * (W - 4)]
    many_views = match_descriptors(descs, conf, dataclasses.replace(every_pixel, all_pairs_up_to=2, neighbours=2))
    assert [(m.view_a, m.view_b) for m in many_views] == [(0, 1), (0, 2), (1, 2)]
    assert all(0 < len(m) <= 12 for m in many_views)  # beyond all_pairs_up_to: max_pixels_many_views start pixels
    for m in many_views:  # and they are still right
        np.testing.assert_array_equal(m.uv_b, m.pixels_a - [4 * (m.view_b - m.view_a), 0])
