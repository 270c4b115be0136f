"""CPU (any-device) 3D Gaussian rasteriser in plain torch, numerically equal to gsplat 1.4.0's CUDA kernels.

gsplat's `rasterization` needs CUDA even on its "pure torch" path, so this module re-implements its three stages:

1. **Projection** with gsplat's own pure-torch helpers (`gsplat.cuda._torch_impl`): covariance from quaternion and
   scale, world -> camera, the clamped perspective Jacobian, the `eps2d` blur, conics, 3-sigma radii and culling.
2. **Tile binning** (`_plan_tiles`): every visible Gaussian is listed in each 16x16 tile its radius box touches
   (`isect_tiles.cu`), each tile's list sorted front to back by depth (ties by Gaussian index, as gsplat's stable
   radix sort of `(camera, tile, depth)` keys).
3. **Compositing** (`_CompositeTiles`): per tile, every pixel composites every Gaussian of the tile's list exactly
   as `rasterize_to_pixels_fwd.cu` does: `alpha = min(0.999, opacity * exp(-sigma))`, Gaussians with `sigma < 0` or
   `alpha < 1/255` skipped, and the pixel stops (exclusively) once the transmittance would drop to 1e-4 or below.

Each 16x16 tile is split into 4x4-pixel blocks, and a block keeps only the Gaussians of its tile's list whose
alpha could reach 1/255 somewhere in it (a conservative bound; it drops only pairs the kernel skips anyway), which
shrinks the work several-fold. Compositing is dense inside a block: a chunk of blocks is one `[blocks, 16, K]`
array (K = the longest list of the chunk, shorter lists padded with zero-opacity entries; blocks sorted by list
length so padding stays small), transmittance is a `cumprod` along K (the kernel's sequential float product) and
the colour sum is one batched matrix product. Chunks are bounded by `ELEMENT_BUDGET` elements, so memory stays
bounded whatever the scene (only a single block with over budget / 16 Gaussians, unheard of, exceeds it). The
backward pass is written by hand (a custom `autograd.Function`) from the formulas of gsplat's
`rasterize_to_pixels_bwd.cu`, several times cheaper than autograd through the arrays, and it fills
`means2d.absgrad` when asked, so `DefaultStrategy(absgrad=True)` works too.

Intrinsics here follow gsplat (pixel centres at +0.5); `panst3r_splat.splat.rasterize` converts from the
project's integer-centre convention before calling `rasterize_torch`.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Literal

import torch
from gsplat.cuda._torch_impl import (
    _fully_fused_projection,
    _persp_proj,
    _quat_scale_to_covar_preci,
    _world_to_cam,
)
from jaxtyping import Float, Int
from torch import Tensor

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]

TILE_SIZE = 16
"""Tile edge in pixels; gsplat's default, and it decides which Gaussians a pixel sees, so it is not a knob."""
ALPHA_MAX = 0.999
"""Upper clamp of a Gaussian's alpha (gsplat 1.4.0 `rasterize_to_pixels_fwd.cu`; the original 3DGS uses 0.99)."""
ALPHA_MIN = 1.0 / 255.0
"""Gaussians below this alpha at a pixel are skipped there."""
T_MIN = 1e-4
"""A pixel stops compositing before the Gaussian that would bring its transmittance to this or below."""
BLOCK = 4
"""Pixel blocks (BLOCK x BLOCK) inside a tile get their own culled Gaussian list; must divide TILE_SIZE."""
ELEMENT_BUDGET = 1 << 22
"""Largest `[blocks, pixels, K]` array composited at once (16 MiB per float32 temporary)."""
CACHE_BUDGET = 1 << 24
"""Forward blocks are kept for the backward pass while their total stays under this many elements; beyond it the
backward pass recomputes them, which bounds training memory at the price of one more forward."""


# ----------------------------------------------------------------------------------------------------------------
# Projection
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """Screen-space Gaussians of C cameras (gsplat's non-packed layout, pixel centres at +0.5)."""

    radii: Int[Tensor, "C N"]
    """3-sigma radius in pixels (int32); 0 = culled (behind the near plane, beyond the far plane, off screen)."""
    means2d: Float[Tensor, "C N 2"]
    """Projected centres; differentiable, the tensor whose gradient drives densification."""
    depths: Float[Tensor, "C N"]
    """Camera-space z of the centres."""
    conics: Float[Tensor, "C N 3"]
    """Upper triangle (a, b, c) of the inverse blurred 2D covariance."""


def project_gaussians(
    means: Float[Tensor, "N 3"],
    quats: Float[Tensor, "N 4"],
    scales: Float[Tensor, "N 3"],
    viewmats: Float[Tensor, "C 4 4"],
    Ks: Float[Tensor, "C 3 3"],
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> Projection:
    """gsplat's pinhole `fully_fused_projection` (non-packed), from its pure-torch helpers.

    `gsplat.cuda._torch_impl._fully_fused_projection` divides by z for every Gaussian, so one exactly in the camera
    plane gives inf/NaN values whose NaN gradients leak back through the unselected branch; the CUDA kernel returns
    before dividing. Here z is replaced by 1 outside the depth range before the perspective step, which keeps every
    value and gradient finite and changes nothing for the Gaussians that are kept.
    """
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    means_c, covars_c = _world_to_cam(means, covars, viewmats)  # [C, N, 3], [C, N, 3, 3]
    depths = means_c[..., 2]
    in_range = (depths > near_plane) & (depths < far_plane)
    safe_z = torch.where(in_range, depths, torch.ones_like(depths))
    means_c = torch.cat([means_c[..., :2], safe_z[..., None]], dim=-1)
    means2d, covars2d = _persp_proj(means_c, covars_c, Ks, width, height)

    eye = torch.eye(2, device=means.device, dtype=means.dtype)
    covars2d = covars2d + eye * eps2d
    det = covars2d[..., 0, 0] * covars2d[..., 1, 1] - covars2d[..., 0, 1] * covars2d[..., 1, 0]
    det_safe = det.clamp(min=1e-10)
    conics = torch.stack(
        [
            covars2d[..., 1, 1] / det_safe,
            -(covars2d[..., 0, 1] + covars2d[..., 1, 0]) / 2.0 / det_safe,
            covars2d[..., 0, 0] / det_safe,
        ],
        dim=-1,
    )  # [C, N, 3]

    with torch.no_grad():
        b = (covars2d[..., 0, 0] + covars2d[..., 1, 1]) / 2
        v1 = b + torch.sqrt(torch.clamp(b**2 - det, min=0.01))
        radius = torch.ceil(3.0 * torch.sqrt(v1))
        inside = (
            (means2d[..., 0] + radius > 0)
            & (means2d[..., 0] - radius < width)
            & (means2d[..., 1] + radius > 0)
            & (means2d[..., 1] - radius < height)
        )
        keep = (det > 0) & in_range & inside & torch.isfinite(radius)
        radii = torch.where(keep, radius, torch.zeros_like(radius)).int()
    return Projection(radii=radii, means2d=means2d, depths=depths, conics=conics)


# ----------------------------------------------------------------------------------------------------------------
# Tile binning
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    """One dense compositing block: `B` pixel blocks of `P` pixels, each against (up to) `K` Gaussians."""

    gids: Tensor  # [B, K] int64 flat (camera * N + gaussian) ids, front to back; padding entries point at 0
    valid: Tensor  # [B, K] bool, False on padding
    cams: Tensor  # [B] int64 camera of each block
    px: Tensor  # [B, P] pixel-centre x in gsplat coordinates (x + 0.5)
    py: Tensor  # [B, P]
    pix: Tensor  # [B, P] int64 flat pixel index (camera * H * W + y * W + x), clamped where outside the image
    pix_ok: Tensor  # [B, P] bool, False for the part of a border block outside the image


@dataclass(frozen=True)
class _TilePlan:
    chunks: list[_Chunk]
    tiles_per_gauss: Tensor  # [C, N] int32
    n_pixels: int  # C * H * W


def _tile_ranges(means2d: Tensor, radii: Tensor, tile_width: int, tile_height: int) -> tuple[Tensor, ...]:
    """Inclusive-exclusive tile box of each Gaussian, with gsplat's float32 arithmetic (`isect_tiles.cu`)."""
    m = means2d.float() / TILE_SIZE
    r = radii.float() / TILE_SIZE
    xmin = torch.floor(m[..., 0] - r).clamp(0, tile_width).long()
    xmax = torch.ceil(m[..., 0] + r).clamp(0, tile_width).long()
    ymin = torch.floor(m[..., 1] - r).clamp(0, tile_height).long()
    ymax = torch.ceil(m[..., 1] + r).clamp(0, tile_height).long()
    return xmin, xmax, ymin, ymax


@torch.no_grad()
def _plan_tiles(proj: Projection, opacities: Tensor, width: int, height: int,
                element_budget: int = ELEMENT_BUDGET) -> _TilePlan:
    """Bin Gaussians into tiles front to back, cull them per pixel block, and cut the blocks into dense chunks.

    `opacities` is [C * N]. The tile lists are gsplat's; each 16x16 tile is then split into `BLOCK`x`BLOCK` pixel
    blocks that keep only the Gaussians whose alpha could reach 1/255 somewhere in the block (`_cull_blocks`).
    That drops only pairs the kernel would skip anyway, and shrinks the composited pairs several-fold.
    """
    C, N = proj.radii.shape
    device = proj.means2d.device
    tw, th = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    xmin, xmax, ymin, ymax = _tile_ranges(proj.means2d, proj.radii, tw, th)
    nx, ny = xmax - xmin, ymax - ymin
    tiles_per_gauss = torch.where(proj.radii > 0, nx * ny, torch.zeros_like(nx))  # [C, N]

    counts = tiles_per_gauss.reshape(-1)
    ids = torch.nonzero(counts > 0).squeeze(1)  # flat camera * N + gaussian
    cnt = counts[ids]
    rep = torch.repeat_interleave(torch.arange(len(ids), device=device), cnt)  # one entry per (gaussian, tile)
    local = torch.arange(len(rep), device=device) - (torch.cumsum(cnt, 0) - cnt)[rep]
    nx_r = nx.reshape(-1)[ids][rep]
    tile_x = xmin.reshape(-1)[ids][rep] + local % nx_r
    tile_y = ymin.reshape(-1)[ids][rep] + local // nx_r
    isect_g = ids[rep]
    tile_id = ((isect_g // N) * th + tile_y) * tw + tile_x
    # Two stable sorts = one sort by (tile, depth) with ties in index order, as gsplat's radix sort of its keys.
    order = torch.sort(proj.depths.detach().float().reshape(-1)[isect_g], stable=True).indices
    order = order[torch.sort(tile_id[order], stable=True).indices]
    flatten_ids, tile_id = isect_g[order], tile_id[order]

    tile_counts = torch.bincount(tile_id, minlength=C * th * tw)
    tile_offsets = torch.cumsum(tile_counts, 0) - tile_counts
    busy = torch.nonzero(tile_counts > 0).squeeze(1)
    busy = busy[torch.sort(tile_counts[busy], stable=True).indices]
    lists = [
        _cull_blocks(busy[a:b], tile_counts, tile_offsets, flatten_ids, proj, opacities, tw, th)
        for a, b in _group_sorted(tile_counts[busy].tolist(), TILE_SIZE * TILE_SIZE // (BLOCK * BLOCK),
                                  element_budget)
    ]
    chunks = _block_chunks(lists, tw, th, width, height, element_budget) if lists else []
    return _TilePlan(chunks=chunks, tiles_per_gauss=tiles_per_gauss.int(), n_pixels=C * height * width)


def _group_sorted(sorted_counts: list[int], rows: int, element_budget: int) -> list[tuple[int, int]]:
    """Cut items sorted by list length into `(start, stop)` groups of at most `element_budget` padded elements.

    A group is padded to its longest list (`rows` elements per list entry), so a new group also starts when lists
    get twice as long as the group's first (less padding), unless the group is still small (fewer launches).
    A single item over budget is a group of its own.
    """
    groups: list[tuple[int, int]] = []
    start = 0
    for i, k in enumerate(sorted_counts):
        if start == i:
            continue
        size = (i + 1 - start) * rows * k
        if size > element_budget or (k > 2 * sorted_counts[start] and size > element_budget // 16):
            groups.append((start, i))
            start = i
    if start < len(sorted_counts):
        groups.append((start, len(sorted_counts)))
    return groups


def _cull_blocks(
    tiles: Tensor,
    tile_counts: Tensor,
    tile_offsets: Tensor,
    flatten_ids: Tensor,
    proj: Projection,
    opacities: Tensor,
    tw: int,
    th: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-block Gaussian lists of some tiles: (block ids [S], list lengths [S], concatenated flat ids).

    A block id is `tile * BLOCKS_PER_TILE + block`. A Gaussian is kept in a block unless even its largest possible
    alpha there, `opacity * exp(-0.5 * lambda_min * d^2)` with d the distance from its centre to the block's
    pixel-centre rectangle and lambda_min the smallest eigenvalue of its conic, is below 1/255 (with a 1% margin
    for rounding), so no pixel of the block could use it.
    """
    device = tiles.device
    K = int(tile_counts[tiles].max())
    k = torch.arange(K, device=device)
    valid = k[None, :] < tile_counts[tiles][:, None]  # [T, K]
    idx = (tile_offsets[tiles][:, None] + k[None, :]).clamp(max=len(flatten_ids) - 1)
    gids = torch.where(valid, flatten_ids[idx], torch.zeros_like(idx))

    m = proj.means2d.detach().reshape(-1, 2)[gids].float()  # [T, K, 2]
    a, b, c = proj.conics.detach().reshape(-1, 3)[gids].float().unbind(-1)
    lam_min = ((a + c) / 2 - torch.sqrt(((a - c) / 2) ** 2 + b * b)).clamp(min=0)
    opac = torch.where(valid, opacities.detach().float()[gids], torch.zeros_like(a))

    per_row = TILE_SIZE // BLOCK
    s = torch.arange(per_row * per_row, device=device)
    tx, ty = tiles % tw, (tiles // tw) % th
    x_lo = (tx[:, None] * TILE_SIZE + (s % per_row)[None] * BLOCK).float() + 0.5  # [T, S]
    y_lo = (ty[:, None] * TILE_SIZE + (s // per_row)[None] * BLOCK).float() + 0.5
    ddx = (x_lo[:, :, None] - m[:, None, :, 0]).clamp(min=0) + (m[:, None, :, 0] - x_lo[:, :, None] - (BLOCK - 1)).clamp(min=0)
    ddy = (y_lo[:, :, None] - m[:, None, :, 1]).clamp(min=0) + (m[:, None, :, 1] - y_lo[:, :, None] - (BLOCK - 1)).clamp(min=0)
    bound = opac[:, None, :] * torch.exp(-0.5 * lam_min[:, None, :] * (ddx * ddx + ddy * ddy))  # [T, S, K]
    keep = bound >= ALPHA_MIN * 0.99

    block_ids = (tiles[:, None] * (per_row * per_row) + s[None]).reshape(-1)
    lengths = keep.sum(-1).reshape(-1)
    kept = gids[:, None, :].expand_as(keep)[keep]  # row-major: block by block, front to back within a block
    nonempty = lengths > 0
    if not bool(nonempty.all()):
        block_ids, lengths = block_ids[nonempty], lengths[nonempty]
    return block_ids, lengths, kept


def _block_chunks(
    lists: list[tuple[Tensor, Tensor, Tensor]], tw: int, th: int, width: int, height: int, element_budget: int
) -> list[_Chunk]:
    """Sort all blocks by list length and pad them, chunk by chunk, into dense `_Chunk`s."""
    block_ids = torch.cat([bl[0] for bl in lists])
    lengths = torch.cat([bl[1] for bl in lists])
    flat = torch.cat([bl[2] for bl in lists])
    offsets = torch.cumsum(lengths, 0) - lengths
    order = torch.sort(lengths, stable=True).indices
    block_ids, lengths, offsets = block_ids[order], lengths[order], offsets[order]
    chunks = []
    for a, b in _group_sorted(lengths.tolist(), BLOCK * BLOCK, element_budget):
        chunks.append(_make_chunk(block_ids[a:b], lengths[a:b], offsets[a:b], flat, tw, th, width, height))
    return chunks


def _make_chunk(
    block_ids: Tensor, lengths: Tensor, offsets: Tensor, flat: Tensor, tw: int, th: int, width: int, height: int
) -> _Chunk:
    """Pad the lists of some blocks to one length and lay out their pixel coordinates."""
    device = block_ids.device
    K = int(lengths.max())
    k = torch.arange(K, device=device)
    valid = k[None, :] < lengths[:, None]  # [B, K]
    idx = (offsets[:, None] + k[None, :]).clamp(max=len(flat) - 1)
    gids = torch.where(valid, flat[idx], torch.zeros_like(idx))

    per_row = TILE_SIZE // BLOCK
    blocks_per_tile = per_row * per_row
    tiles, sub = block_ids // blocks_per_tile, block_ids % blocks_per_tile
    cams = tiles // (tw * th)
    x0 = (tiles % tw) * TILE_SIZE + (sub % per_row) * BLOCK
    y0 = ((tiles // tw) % th) * TILE_SIZE + (sub // per_row) * BLOCK
    p = torch.arange(BLOCK * BLOCK, device=device)
    x = x0[:, None] + p[None, :] % BLOCK  # [B, P]
    y = y0[:, None] + p[None, :] // BLOCK
    pix_ok = (x < width) & (y < height)
    pix = cams[:, None] * (height * width) + torch.where(pix_ok, y * width + x, torch.zeros_like(x))
    return _Chunk(gids=gids, valid=valid, cams=cams, px=x + 0.5, py=y + 0.5, pix=pix, pix_ok=pix_ok)



# ----------------------------------------------------------------------------------------------------------------
# Compositing
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Block:
    """Forward quantities of one chunk that the backward pass needs."""

    alpha: Tensor  # [B, P, K] alpha of the Gaussians that contribute, 0 for skipped / stopped / padding
    trans: Tensor  # [B, P, K] transmittance in front of each Gaussian
    t_final: Tensor  # [B, P] transmittance left behind the last contributing Gaussian


def _deltas(chunk: _Chunk, means2d: Tensor) -> tuple[Tensor, Tensor]:
    """Centre minus pixel, [B, P, K] each (gsplat's `delta = mean - pixel`)."""
    m = means2d[chunk.gids]  # [B, K, 2]
    dx = m[:, None, :, 0] - chunk.px.to(m.dtype)[:, :, None]
    dy = m[:, None, :, 1] - chunk.py.to(m.dtype)[:, :, None]
    return dx, dy


def _block_forward(chunk: _Chunk, means2d: Tensor, conics: Tensor, opacities: Tensor) -> _Block:
    """Alpha, transmittance and what is left, for every (pixel, Gaussian) pair of a chunk."""
    dx, dy = _deltas(chunk, means2d)
    con = conics[chunk.gids][:, None]  # [B, 1, K, 3]
    # sigma = 0.5 (a dx^2 + c dy^2) + b dx dy, in as few passes over [B, P, K] as possible
    sigma = dx * torch.addcmul(0.5 * con[..., 0] * dx, con[..., 1], dy)
    sigma.addcmul_(0.5 * con[..., 2] * dy, dy)
    opac = torch.where(chunk.valid, opacities[chunk.gids], torch.zeros_like(opacities[chunk.gids]))  # [B, K]
    alpha = (opac[:, None, :] * torch.exp(-sigma)).clamp_max_(ALPHA_MAX)
    alpha.mul_((sigma >= 0) & (alpha >= ALPHA_MIN))
    t_incl = torch.cumprod(1.0 - alpha, dim=-1)  # skipped Gaussians multiply by exactly 1
    alive = t_incl > T_MIN  # a prefix along K: everything from the stopping Gaussian on is dropped
    trans = torch.cat([torch.ones_like(t_incl[..., :1]), t_incl[..., :-1]], dim=-1)
    alpha = alpha * alive
    t_final = torch.where(alive, t_incl, torch.ones_like(t_incl)).amin(dim=-1)
    return _Block(alpha=alpha, trans=trans, t_final=t_final)


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back alpha compositing of projected Gaussians over a tile plan, with a hand-written backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        means2d: Tensor,  # [C*N, 2]
        conics: Tensor,  # [C*N, 3]
        opacities: Tensor,  # [C*N]
        colors: Tensor,  # [C*N, D]
        backgrounds: Tensor | None,  # [C, D]
        plan: _TilePlan,
        absgrad_target: weakref.ref | None,
    ) -> tuple[Tensor, Tensor]:
        D = colors.shape[-1]
        if backgrounds is None:
            out = colors.new_zeros(plan.n_pixels, D)
        else:  # pixels no tile covers keep the background; covered ones are overwritten below
            out = backgrounds.repeat_interleave(plan.n_pixels // backgrounds.shape[0], 0)
        t_img = colors.new_ones(plan.n_pixels)
        cache_ok = sum(c.gids.shape[0] * c.px.shape[1] * c.gids.shape[1] for c in plan.chunks) <= CACHE_BUDGET
        blocks = []
        for chunk in plan.chunks:
            blk = _block_forward(chunk, means2d, conics, opacities)
            render = torch.bmm(blk.alpha * blk.trans, colors[chunk.gids])  # [B, P, D]
            if backgrounds is not None:
                render = render + blk.t_final[..., None] * backgrounds[chunk.cams][:, None, :]
            ok = chunk.pix_ok
            out.index_copy_(0, chunk.pix[ok], render[ok])
            t_img.index_copy_(0, chunk.pix[ok], blk.t_final[ok])
            blocks.append(blk if cache_ok else None)
        ctx.plan, ctx.blocks, ctx.absgrad_target = plan, blocks, absgrad_target
        ctx.save_for_backward(means2d, conics, opacities, colors, backgrounds, t_img)
        return out, 1.0 - t_img

    @staticmethod
    def backward(ctx, v_out: Tensor, v_alpha_img: Tensor):  # type: ignore[override]
        means2d, conics, opacities, colors, backgrounds, t_img = ctx.saved_tensors
        plan: _TilePlan = ctx.plan
        need_geom = any(ctx.needs_input_grad[:3])
        v_colors = torch.zeros_like(colors) if ctx.needs_input_grad[3] else None
        v_geom = means2d.new_zeros(means2d.shape[0], 8) if need_geom else None  # mean 2, conic 3, opacity 1, |mean| 2
        v_out = v_out.contiguous()
        v_t = -v_alpha_img  # alpha_img = 1 - T
        for chunk, blk in zip(plan.chunks, ctx.blocks):
            if blk is None:
                blk = _block_forward(chunk, means2d, conics, opacities)
            g_out = v_out[chunk.pix] * chunk.pix_ok[..., None]  # [B, P, D]
            weights = blk.alpha * blk.trans  # [B, P, K]
            if v_colors is not None:
                v_colors.index_add_(0, chunk.gids.reshape(-1), torch.bmm(weights.transpose(1, 2), g_out).flatten(0, 1))
            if need_geom:
                g_t = v_t[chunk.pix] * chunk.pix_ok  # [B, P]
                if backgrounds is not None:
                    g_t = g_t + (g_out * backgrounds[chunk.cams][:, None, :]).sum(-1)
                grads = _block_geom_grads(chunk, blk, weights, g_out, g_t, means2d, conics, opacities, colors,
                                          with_abs=ctx.absgrad_target is not None)
                v_geom[:, : grads.shape[1]].index_add_(0, chunk.gids.reshape(-1), grads)
        v_means2d = v_conics = v_opac = None
        if need_geom:
            v_means2d, v_conics, v_opac = v_geom[:, :2], v_geom[:, 2:5], v_geom[:, 5]
            target = ctx.absgrad_target() if ctx.absgrad_target is not None else None
            if target is not None:
                target.absgrad = v_geom[:, 6:8].reshape(target.shape).clone()
        v_bg = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            n_cams = backgrounds.shape[0]
            v_bg = (t_img[:, None] * v_out).reshape(n_cams, -1, v_out.shape[-1]).sum(1)
        return v_means2d, v_conics, v_opac, v_colors, v_bg, None, None


def _block_geom_grads(
    chunk: _Chunk,
    blk: _Block,
    weights: Tensor,
    g_out: Tensor,
    g_t: Tensor,
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    colors: Tensor,
    with_abs: bool,
) -> Tensor:
    """Per (block, Gaussian) gradients [B*K, 6 or 8]: d/d(mean x, y, conic a, b, c, opacity), |d/d mean| sums.

    With w_k = a_k T_k, C = sum_k w_k c_k + T_final bg and T_final = prod_k (1 - a_k) over contributing k:
    dL/da_k = T_k (c_k . g) - (sum_{j>k} w_j (c_j . g) + T_final g_T) / (1 - a_k), where g_T gathers the
    background and alpha-image gradients (as `rasterize_to_pixels_bwd.cu`, which walks the same sums back to
    front).
    """
    c_dot_g = torch.bmm(g_out, colors[chunk.gids].transpose(1, 2))  # [B, P, K]
    wc = weights * c_dot_g
    behind = wc.sum(-1, keepdim=True) - torch.cumsum(wc, dim=-1)  # sum over j > k
    alpha = blk.alpha
    contributes = alpha > 0
    v_alpha = blk.trans * c_dot_g - (behind + blk.t_final[..., None] * g_t[..., None]) / (1.0 - alpha)
    # Clamped alphas (0.999) carry no gradient to opacity or shape, as in the kernel.
    v_alpha = torch.where(contributes & (alpha < ALPHA_MAX), v_alpha, torch.zeros_like(v_alpha))
    v_sigma = -v_alpha * alpha
    opac = opacities[chunk.gids]  # [B, K]
    safe_opac = torch.where(opac > 0, opac, torch.ones_like(opac))
    v_opac = (v_alpha * alpha).sum(1) / safe_opac  # alpha / opacity = exp(-sigma)

    # sum_p v_sigma * (dx, dy, dx^2, dx dy, dy^2) for every (block, Gaussian) from one batched product with the
    # pixels' moments (1, x, y, x^2, xy, y^2), in coordinates local to the block so nothing large cancels.
    x = chunk.px.to(alpha.dtype) - chunk.px[:, :1].to(alpha.dtype)  # [B, P], 0 .. BLOCK - 1
    y = chunk.py.to(alpha.dtype) - chunk.py[:, :1].to(alpha.dtype)
    moments = torch.bmm(v_sigma.transpose(1, 2), torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y], -1))
    s0, sx, sy, sxx, sxy, syy = moments.unbind(-1)  # [B, K] each
    m = means2d[chunk.gids]  # [B, K, 2]
    mx = m[..., 0] - chunk.px[:, :1].to(m.dtype)
    my = m[..., 1] - chunk.py[:, :1].to(m.dtype)
    s_dx, s_dy = mx * s0 - sx, my * s0 - sy  # sum_p v_sigma dx, with dx = mean - pixel
    s_dxx = mx * mx * s0 - 2 * mx * sx + sxx
    s_dxy = mx * my * s0 - mx * sy - my * sx + sxy
    s_dyy = my * my * s0 - 2 * my * sy + syy
    a, b, c = conics[chunk.gids].unbind(-1)  # [B, K]
    parts = [a * s_dx + b * s_dy, b * s_dx + c * s_dy, 0.5 * s_dxx, s_dxy, 0.5 * s_dyy, v_opac]
    if with_abs:  # per-pixel absolute values, summed (gsplat's `absgrad`, AbsGS)
        dx, dy = _deltas(chunk, means2d)
        parts.append((v_sigma * (a[:, None] * dx + b[:, None] * dy)).abs().sum(1))
        parts.append((v_sigma * (b[:, None] * dx + c[:, None] * dy)).abs().sum(1))
    return torch.stack(parts, dim=-1).flatten(0, 1)  # [B * K, 6 or 8]


# ----------------------------------------------------------------------------------------------------------------
# Public entry point of the backend
# ----------------------------------------------------------------------------------------------------------------


def _mode_colors(
    colors: Tensor, depths: Tensor, backgrounds: Tensor | None, render_mode: RenderMode
) -> tuple[Tensor, Tensor | None]:
    """The channels to composite for a render mode ([C, N, D']) and matching backgrounds, as gsplat's wrapper."""
    C, N = depths.shape
    if colors.dim() == 2:
        colors = colors[None].expand(C, N, colors.shape[-1])
    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None].to(colors.dtype)], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        colors = depths[..., None].to(colors.dtype)
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)
    elif render_mode != "RGB":
        raise ValueError(f"render_mode must be one of RGB, D, ED, RGB+D, RGB+ED; got {render_mode!r}")
    return colors, backgrounds


def _expected_depth(render: Tensor, alphas: Tensor, render_mode: RenderMode) -> Tensor:
    """'ED' modes: divide the accumulated depth by the accumulated alpha (gsplat's normalisation)."""
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)
    return render


def rasterize_torch(
    means: Float[Tensor, "N 3"],
    quats: Float[Tensor, "N 4"],
    scales: Float[Tensor, "N 3"],
    opacities: Float[Tensor, "N"],
    colors: Float[Tensor, "N D"] | Float[Tensor, "C N D"],
    viewmats: Float[Tensor, "C 4 4"],
    Ks: Float[Tensor, "C 3 3"],
    width: int,
    height: int,
    *,
    render_mode: RenderMode = "RGB",
    backgrounds: Float[Tensor, "C D"] | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    absgrad: bool = False,
    element_budget: int = ELEMENT_BUDGET,
) -> tuple[Float[Tensor, "C H W E"], Float[Tensor, "C H W 1"], dict]:
    """Render like `gsplat.rasterization(..., packed=False, sh_degree=None)`, in plain torch on any device.

    `Ks` use gsplat's pixel convention (pixel (x, y) has its centre at (x + 0.5, y + 0.5)). Returns colours (plus a
    depth channel in the depth modes), accumulated alpha, and gsplat's `meta` keys that `DefaultStrategy` reads:
    `means2d` [C, N, 2] (non-leaf, `retain_grad()`-able, `.absgrad` filled when `absgrad`), `radii` [C, N],
    `width`, `height`, `n_cameras`, `gaussian_ids`/`camera_ids` (None: non-packed), `depths`, `conics`,
    `opacities` [C, N], `tiles_per_gauss`, `tile_width`, `tile_height`, `tile_size`.
    """
    C, N = viewmats.shape[0], means.shape[0]
    proj = project_gaussians(
        means, quats, scales, viewmats, Ks, width, height, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d
    )
    mode_colors, mode_bgs = _mode_colors(colors, proj.depths, backgrounds, render_mode)
    opac_cn = opacities[None].expand(C, N)
    plan = _plan_tiles(proj, opac_cn.reshape(C * N), width, height, element_budget)
    target = weakref.ref(proj.means2d) if absgrad else None
    render, alphas = _CompositeTiles.apply(
        proj.means2d.reshape(C * N, 2),
        proj.conics.reshape(C * N, 3),
        opac_cn.reshape(C * N),
        mode_colors.reshape(C * N, -1),
        mode_bgs,
        plan,
        target,
    )
    render = render.reshape(C, height, width, -1)
    alphas = alphas.reshape(C, height, width, 1)
    render = _expected_depth(render, alphas, render_mode)
    return render, alphas, _strategy_info(proj, opac_cn, plan.tiles_per_gauss, width, height)


def _strategy_info(proj: Projection, opacities: Tensor, tiles_per_gauss: Tensor, width: int, height: int) -> dict:
    """The `info` of a non-packed render: gsplat's `meta` keys that `DefaultStrategy` reads (shared by the torch
    and numba backends); `opacities` [C, N]."""
    return {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": proj.radii,
        "means2d": proj.means2d,
        "depths": proj.depths,
        "conics": proj.conics,
        "opacities": opacities,
        "tiles_per_gauss": tiles_per_gauss,
        "tile_width": math.ceil(width / TILE_SIZE),
        "tile_height": math.ceil(height / TILE_SIZE),
        "tile_size": TILE_SIZE,
        "width": width,
        "height": height,
        "n_cameras": proj.radii.shape[0],
    }


# ----------------------------------------------------------------------------------------------------------------
# Slow reference twin
# ----------------------------------------------------------------------------------------------------------------


def _pixel_grid(width: int, height: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every pixel's centre x, y (gsplat's convention: + 0.5) and its tile column, row; each [H, W]."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return xs.to(dtype) + 0.5, ys.to(dtype) + 0.5, xs // TILE_SIZE, ys // TILE_SIZE


def _rasterize_dense(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    render_mode: RenderMode = "RGB",
    backgrounds: Tensor | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> tuple[Tensor, Tensor, dict]:
    """Reference for `rasterize_torch`: gsplat's reference projection, then every Gaussian at every pixel.

    A literal transcription of the CUDA kernel's per-pixel loop, run for all pixels at once, one Gaussian at a time
    in depth order, with plain autograd: a Gaussian is evaluated at a pixel only when the pixel's tile is in its
    tile box; skip below 1/255; stop before T would reach 1e-4. Slow (a Python loop over Gaussians); tests only.
    """
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane
    )
    mode_colors, mode_bgs = _mode_colors(colors, depths, backgrounds, render_mode)
    C, N = radii.shape
    tw, th = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    xmin, xmax, ymin, ymax = _tile_ranges(means2d.detach(), radii, tw, th)
    px, py, tile_x, tile_y = _pixel_grid(width, height, means.dtype)
    renders, alphas = [], []
    for c in range(C):
        T = torch.ones(height, width, dtype=means.dtype)
        done = torch.zeros(height, width, dtype=torch.bool)
        out = torch.zeros(height, width, mode_colors.shape[-1], dtype=means.dtype)
        for g in torch.sort(depths[c].detach().float(), stable=True).indices.tolist():
            if radii[c, g] <= 0:
                continue
            in_box = (tile_x >= xmin[c, g]) & (tile_x < xmax[c, g]) & (tile_y >= ymin[c, g]) & (tile_y < ymax[c, g])
            dx, dy = means2d[c, g, 0] - px, means2d[c, g, 1] - py
            a, b, cc = conics[c, g]
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            alpha = torch.clamp_max(opacities[g] * torch.exp(-sigma), ALPHA_MAX)
            active = in_box & ~done & (sigma >= 0) & (alpha >= ALPHA_MIN)
            next_T = T * (1.0 - alpha)
            stop = active & (next_T <= T_MIN)
            done = done | stop
            use = active & ~stop
            out = out + torch.where(use, alpha * T, torch.zeros_like(T))[..., None] * mode_colors[c, g]
            T = torch.where(use, next_T, T)
        if mode_bgs is not None:
            out = out + T[..., None] * mode_bgs[c]
        renders.append(out)
        alphas.append(1.0 - T[..., None])
    render, alpha_img = torch.stack(renders), torch.stack(alphas)
    render = _expected_depth(render, alpha_img, render_mode)
    return render, alpha_img, {"means2d": means2d, "radii": radii, "depths": depths, "conics": conics}
