"""Matches between views: the container, pair selection and mutual-nearest-neighbour matching of dense descriptors.

A match is *directed*: a grid pixel of view ``a`` (where its local point is read) and the sub-pixel position where the
same surface point appears in view ``b``. Descriptor matches land on grid pixels in both views; ground-truth matches
(:mod:`.oracle`) land anywhere in ``b``, which keeps them exact. Pixel convention: integer coordinates are pixel
centres, ``(x, y)`` order.

Matching follows MASt3R's fast reciprocal matching: a subset of the pixels of view ``a`` (the most confident of a
coarse grid, so matches spread over the image) is matched with the whole of view ``b``, and each nearest neighbour
found in ``b`` is matched back with the whole of view ``a``; a match is kept when the round trip returns to the pixel
it started from. Matching both sides' subsets with each other instead would lose most true matches, because a
pixel's counterpart is rarely in the other view's subset. "The whole view" is searched coarse to fine: every
``search_stride``-th pixel, then the best pixel of the full-resolution window around the one found (4x fewer dot
products at stride 2, the same pixel wherever the descriptors are smooth over two pixels).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass
from typing import no_type_check

import numpy as np
import torch
from jaxtyping import Float, Int

log = logging.getLogger(__name__)


@no_type_check  # construction coerces and validates its inputs itself (__post_init__, one-line errors)
@dataclass(frozen=True)
class PairMatches:
    """Matches from view ``view_a`` to view ``view_b``."""

    view_a: int
    """Index of the view whose grid pixels are matched."""
    view_b: int
    """Index of the view the matches land in."""
    pixels_a: Int[np.ndarray, "M 2"]
    """Integer pixel ``(x, y)`` of each match in view ``a``."""
    uv_b: Float[np.ndarray, "M 2"]
    """Sub-pixel ``(x, y)`` of each match in view ``b``."""

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels_a)
        uv = np.asarray(self.uv_b, dtype=np.float64)
        if pixels.ndim != 2 or pixels.shape[1] != 2 or uv.shape != pixels.shape:
            raise ValueError(f"pixels_a and uv_b must both be (M, 2), got {pixels.shape} and {uv.shape}")
        if pixels.dtype.kind not in "iu":
            raise ValueError(f"pixels_a must be integer pixel coordinates, got dtype {pixels.dtype}")
        if self.view_a == self.view_b:
            raise ValueError(f"a view cannot be matched with itself (view {self.view_a})")
        object.__setattr__(self, "pixels_a", pixels.astype(np.int64))
        object.__setattr__(self, "uv_b", uv)

    def __len__(self) -> int:
        return int(self.pixels_a.shape[0])

    def reversed(self) -> PairMatches:
        """The same matches from ``b`` to ``a`` (only when ``uv_b`` lies on grid pixels, as descriptor matches do)."""
        pixels_b = np.rint(self.uv_b).astype(np.int64)
        if not np.allclose(pixels_b, self.uv_b, atol=1e-6):
            raise ValueError("only matches that land on grid pixels can be reversed")
        return PairMatches(self.view_b, self.view_a, pixels_b, self.pixels_a.astype(np.float64))


@dataclass(frozen=True)
class MatchingOptions:
    """How dense descriptors are turned into matches."""

    max_pixels: int = 1024
    """Pixels per view that take part (the most confident of a coarse grid)."""
    grid_cell: int = 2
    """The candidates are the most confident pixel of each ``grid_cell x grid_cell`` block (spreads the matches)."""
    min_conf: float = 1.0
    """Pixels of view ``a`` whose descriptor confidence is below this never start a match (``conf = 1 + exp(c) >= 1``;
    the default 1.0 keeps every pixel and lets the confidence only rank them)."""
    min_similarity: float = 0.5
    """Reciprocal matches whose descriptor dot product is not above this are dropped: a pixel without a counterpart
    in the other view (hidden, or outside it) still has a nearest neighbour there, and with descriptors whose
    similarity falls with distance this floor drops it. A zero descriptor (no surface there) never matches."""
    cycle_px: int = 1
    """The round trip may end this many pixels (in x and in y) from where it started: smooth descriptors have
    near-equal neighbours, and a match is then still within a pixel."""
    search_stride: int = 2
    """A view is searched on every ``search_stride``-th pixel in x and y, then refined at full resolution in the
    window around the best one (1: every pixel)."""
    chunk_elements: int = 1 << 21
    """Similarity entries computed at once (8 MB of float32: reused memory instead of page faults at every pair)."""
    all_pairs_up_to: int = 16
    """Every view pair is matched up to this many views; beyond, each view with its ``neighbours`` most similar."""
    neighbours: int = 10
    """Views each view is matched with when there are more than ``all_pairs_up_to`` (by global descriptor)."""
    max_pixels_many_views: int = 512
    """``max_pixels`` when there are more than ``all_pairs_up_to`` views. The similarity products dominate the
    matching and grow with the start pixels times the pairs; many views give each view about ``2 * neighbours``
    pairs and the rotation averaging many redundant ones, so fewer matches per pair cost no accuracy (at 192x144:
    432 instead of 768 start pixels per view, the matching of 64 views ~45 % faster)."""


def select_pixels(
    descriptor_conf: Float[np.ndarray, "H W"], options: MatchingOptions
) -> Int[np.ndarray, "P 2"]:
    """Integer ``(x, y)`` of the pixels of one view that take part in matching (see :class:`MatchingOptions`)."""
    conf = np.asarray(descriptor_conf, dtype=np.float64)
    height, width = conf.shape
    # The cell grows with the image so that about max_pixels candidates remain: they then cover the whole image.
    cell = max(int(options.grid_cell), int(np.ceil(np.sqrt(height * width / max(options.max_pixels, 1)))), 1)
    hc, wc = height // cell, width // cell
    if hc == 0 or wc == 0:
        cell, hc, wc = 1, height, width
    blocks = conf[: hc * cell, : wc * cell].reshape(hc, cell, wc, cell).transpose(0, 2, 1, 3).reshape(hc, wc, -1)
    best = blocks.argmax(axis=-1)  # [hc, wc] index inside each block
    ys = np.arange(hc)[:, None] * cell + best // cell
    xs = np.arange(wc)[None, :] * cell + best % cell
    best_conf = blocks.max(axis=-1)
    keep = best_conf >= options.min_conf
    xs, ys, scores = xs[keep], ys[keep], best_conf[keep]
    tie_break = np.random.default_rng(0).permutation(len(scores))  # equal confidences: an even spread, not the top
    order = np.lexsort((tie_break, -scores))[: options.max_pixels]
    return np.stack([xs[order], ys[order]], axis=-1).astype(np.int64)


def _nearest(
    queries: Float[torch.Tensor, "P D"], targets_t: Float[torch.Tensor, "D T"], chunk_elements: int
) -> tuple[Float[torch.Tensor, "P"], Int[torch.Tensor, "P"]]:
    """Best dot product of each query over the targets (given transposed, contiguous) and the target's index
    (queries in chunks to bound memory)."""
    rows = max(1, chunk_elements // max(targets_t.shape[1], 1))
    sims, idx = [], []
    for start in range(0, queries.shape[0], rows):
        s, i = _row_max(queries[start : start + rows] @ targets_t)
        sims.append(s)
        idx.append(i)
    return torch.cat(sims), torch.cat(idx)


_ROW_BLOCK = 64
"""Columns per block of :func:`_row_max`."""


def _row_max(sims: Float[torch.Tensor, "P T"]) -> tuple[Float[torch.Tensor, "P"], Int[torch.Tensor, "P"]]:
    """``sims.max(dim=1)`` (the first index of each row's maximum), in two passes: the maxima of 64-column blocks,
    then the index inside the best block. torch's ``max`` with indices is not vectorised and cost ~5x ``amax`` on a
    similarity matrix; this costs about 1.3x."""
    P, T = sims.shape
    blocks = T // _ROW_BLOCK
    if blocks < 2:
        return sims.max(dim=1)
    head = sims[:, : blocks * _ROW_BLOCK].unflatten(1, (blocks, _ROW_BLOCK))  # [P, blocks, 64] view
    block_max = head.amax(dim=2)  # [P, blocks]
    best_value, best_block = block_max.max(dim=1)  # the first block holding the maximum
    inside = head[torch.arange(P), best_block].argmax(dim=1)  # [P]: first index of the maximum in that block
    index = best_block * _ROW_BLOCK + inside
    if blocks * _ROW_BLOCK < T:  # the last partial block wins only where it is strictly larger
        tail_value, tail_index = sims[:, blocks * _ROW_BLOCK :].max(dim=1)
        later = tail_value > best_value
        best_value = torch.where(later, tail_value, best_value)
        index = torch.where(later, tail_index + blocks * _ROW_BLOCK, index)
    return best_value, index


@dataclass(frozen=True)
class _SearchView:
    """One view's descriptors laid out for :func:`_search`, built once per view (not once per pair)."""

    flat: Float[torch.Tensor, "HW D"]
    """Every pixel's descriptor, row-major."""
    grid: Int[torch.Tensor, "G"]
    """Flat indices of the ``search_stride`` grid."""
    grid_t: Float[torch.Tensor, "D G"]
    """The grid's descriptors, transposed and contiguous (the right operand of the similarity product)."""
    height: int
    width: int


def _search_view(dense: Float[torch.Tensor, "H W D"], options: MatchingOptions) -> _SearchView:
    H, W, D = dense.shape
    step = max(int(options.search_stride), 1)
    ys, xs = torch.meshgrid(torch.arange(0, H, step), torch.arange(0, W, step), indexing="ij")
    grid = (ys * W + xs).reshape(-1)
    flat = dense.reshape(-1, D)
    return _SearchView(flat=flat, grid=grid, grid_t=flat[grid].T.contiguous(), height=H, width=W)


def _search(
    queries: Float[torch.Tensor, "P D"], view: _SearchView, options: MatchingOptions
) -> tuple[Float[torch.Tensor, "P"], Int[torch.Tensor, "P"]]:
    """Best dot product of each query over a whole view and its flat pixel index: the nearest of the view's
    ``search_stride`` grid, refined to the best pixel of the full-resolution window around it."""
    H, W = view.height, view.width
    step = max(int(options.search_stride), 1)
    sim, best = _nearest(queries, view.grid_t, options.chunk_elements)
    best = view.grid[best]
    if step == 1:
        return sim, best
    r = step // 2 + step % 2  # the window reaches every pixel between grid points
    offsets = torch.arange(-r, r + 1)
    wy = (best // W)[:, None, None] + offsets[None, :, None]  # [P, k, 1]
    wx = (best % W)[:, None, None] + offsets[None, None, :]  # [P, 1, k]
    window = (wy.clamp(0, H - 1) * W + wx.clamp(0, W - 1)).reshape(len(best), -1)  # [P, k*k]
    sims = torch.einsum("pkd,pd->pk", view.flat[window], queries)
    sim, pick = sims.max(dim=1)
    return sim, window.gather(1, pick[:, None])[:, 0]


def reciprocal_matches(
    dense_a: Float[torch.Tensor, "Ha Wa D"],
    dense_b: Float[torch.Tensor, "Hb Wb D"],
    start_a: Int[np.ndarray, "P"],
    options: MatchingOptions,
) -> tuple[Int[np.ndarray, "M"], Int[np.ndarray, "M"]]:
    """Flat pixel indices ``(i, j)``: pixel ``i`` of ``a`` (one of ``start_a``) whose nearest neighbour over view
    ``b`` is ``j``, and whose own nearest neighbour over view ``a`` is ``i`` again (within ``options.cycle_px``)."""
    return _reciprocal(_search_view(dense_a, options), _search_view(dense_b, options), start_a, options)


def _reciprocal(
    view_a: _SearchView, view_b: _SearchView, start_a: Int[np.ndarray, "P"], options: MatchingOptions
) -> tuple[Int[np.ndarray, "M"], Int[np.ndarray, "M"]]:
    """:func:`reciprocal_matches` on views laid out once by :func:`_search_view`."""
    if len(start_a) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    width_a = view_a.width
    start = torch.from_numpy(np.asarray(start_a, dtype=np.int64))
    sim, j = _search(view_a.flat[start], view_b, options)
    unique_j, inverse = torch.unique(j, return_inverse=True)
    back = _search(view_b.flat[unique_j], view_a, options)[1][inverse]  # [P]
    near = ((back % width_a - start % width_a).abs() <= options.cycle_px) & (
        (back // width_a - start // width_a).abs() <= options.cycle_px)
    keep = near & (sim > options.min_similarity)
    return start[keep].numpy(), j[keep].numpy()


def _global_descriptor(desc: torch.Tensor) -> torch.Tensor:
    """Mean of a view's selected descriptors, L2-normalised (a crude but cheap retrieval descriptor)."""
    if desc.shape[0] == 0:
        return torch.zeros(desc.shape[1], dtype=desc.dtype)
    return torch.nn.functional.normalize(desc.mean(dim=0), dim=0)


def select_pairs(global_desc: Float[torch.Tensor, "V D"], options: MatchingOptions) -> list[tuple[int, int]]:
    """View pairs ``(a, b)``, ``a < b``, to match: all of them up to ``all_pairs_up_to`` views, else each view with
    its ``neighbours`` most similar views by global descriptor (the union, so a pair appears once)."""
    num_views = global_desc.shape[0]
    if num_views <= options.all_pairs_up_to:
        return list(itertools.combinations(range(num_views), 2))
    sim = global_desc @ global_desc.T
    sim.fill_diagonal_(-float("inf"))
    k = min(options.neighbours, num_views - 1)
    nearest = sim.topk(k, dim=1).indices.numpy()  # [V, k]
    pairs = {(min(a, int(b)), max(a, int(b))) for a in range(num_views) for b in nearest[a]}
    return sorted(pairs)


def match_descriptors(
    descriptors: list[Float[torch.Tensor, "H W D"]] | tuple[torch.Tensor, ...],
    descriptor_conf: list[Float[torch.Tensor, "H W"]] | tuple[torch.Tensor, ...],
    options: MatchingOptions = MatchingOptions(),
) -> list[PairMatches]:
    """Reciprocal matches of every selected view pair, one directed :class:`PairMatches` per pair (from the lower to
    the higher view index; matches land on grid pixels, so :meth:`PairMatches.reversed` works)."""
    if len(descriptors) != len(descriptor_conf):
        raise ValueError(f"{len(descriptors)} descriptor maps but {len(descriptor_conf)} confidence maps")
    views, starts = [], []
    if len(descriptors) > options.all_pairs_up_to:
        options = dataclasses.replace(options, max_pixels=options.max_pixels_many_views)
    for v, (desc, conf) in enumerate(zip(descriptors, descriptor_conf)):
        desc = torch.as_tensor(desc, dtype=torch.float32)
        if desc.ndim != 3 or tuple(conf.shape) != tuple(desc.shape[:2]):
            raise ValueError(f"view {v}: descriptors must be (H, W, D) with (H, W) confidence, got "
                             f"{tuple(desc.shape)} and {tuple(conf.shape)}")
        px = select_pixels(np.asarray(torch.as_tensor(conf, dtype=torch.float32)), options)
        views.append(_search_view(desc, options))
        starts.append(px[:, 1] * desc.shape[1] + px[:, 0])
    global_desc = torch.stack([_global_descriptor(view.flat[torch.from_numpy(s)]) for view, s in zip(views, starts)])
    out: list[PairMatches] = []
    for a, b in select_pairs(global_desc, options):
        ia, jb = _reciprocal(views[a], views[b], starts[a], options)
        pixels_a = np.stack([ia % views[a].width, ia // views[a].width], axis=-1)
        uv_b = np.stack([jb % views[b].width, jb // views[b].width], axis=-1).astype(np.float64)
        out.append(PairMatches(a, b, pixels_a, uv_b))
    log.debug("matched %d view pairs, %d matches in all", len(out), sum(len(m) for m in out))
    return out
