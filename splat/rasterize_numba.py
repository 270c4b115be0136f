"""Compiled CPU rasteriser: the torch twin's projection, then Numba kernels for tile binning and compositing.

Same signature, outputs and `info` as `rasterize_torch.rasterize_torch` (and so as gsplat 1.4.0's `rasterization`
with `packed=False, sh_degree=None`):

1. **Projection** stays in torch (`rasterize_torch.project_gaussians`, gsplat's pure-torch helpers): it is O(N) per
   camera and cheap next to compositing, and autograd carries the 2D gradients back to means, quaternions and scales.
2. **Tile binning** (`_numba_kernels.bin_tiles`): every visible Gaussian listed in each 16x16 tile its radius box
   touches, each list front to back by float32 depth, ties by index, as gsplat (one stable sort by depth first).
3. **Compositing** (`_composite_kernels.composite_forward` / `composite_backward`): gsplat's per-pixel loop, forward and
   analytic backward, one tile at a time, tiles dealt to parallel units; each Gaussian is evaluated only on the
   pixels of its tile where its alpha can reach 1/255 (`pixel_extents`), which drops only pairs the kernel skips.

Threads: the kernels use as many Numba threads as torch is allowed (`torch.get_num_threads()`), never both at once
(torch is idle while a kernel runs), so a process limited to one torch thread stays on one core.
The background is added in torch (`colour = sum + T_final * background`), so the kernels know nothing of it and
its gradient, and its contribution to dL/dT_final, come from autograd.

Intrinsics follow gsplat (pixel centres at +0.5), as for `rasterize_torch`.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from panst3r_splat.splat import _composite_kernels as composite
from panst3r_splat.splat import _numba_kernels as kernels
from panst3r_splat.splat.rasterize_torch import (
    ALPHA_MAX,
    ALPHA_MIN,
    T_MIN,
    TILE_SIZE,
    RenderMode,
    _expected_depth,
    _mode_colors,
    _strategy_info,
    Projection,
    project_gaussians,
)

if TILE_SIZE != 16:  # the kernels hold one 16x16 tile in fixed 256-pixel buffers
    raise ImportError(f"the Numba kernels need TILE_SIZE == 16, got {TILE_SIZE}")


@dataclass(frozen=True)
class _Plan:
    """Tile lists of C cameras (NumPy, for the kernels)."""

    offsets: np.ndarray  # [C*th*tw + 1] int64: tile t's list is ids[offsets[t]:offsets[t + 1]]
    ids: np.ndarray  # [I] int64 slots (positions in `order`), front to back within a tile
    order: np.ndarray  # [S] int64 flat camera * N + gaussian id of each slot: the visible Gaussians by depth
    tile_order: np.ndarray  # [busy tiles] int64, heaviest first (load balance between parallel units)
    extents: np.ndarray  # [S, 3] float64 pixel half-widths and sigma cut-off where alpha can reach 1/255; -1: nowhere
    tile_w: int
    tile_h: int
    width: int
    height: int
    tiles_per_gauss: Tensor  # [C, N] int32 tiles each Gaussian touches (0 when culled), as gsplat's isect_tiles


class _ProjectNumba(torch.autograd.Function):
    """`project_gaussians` in one compiled pass per direction (viewmats and Ks take no gradient here)."""

    @staticmethod
    def forward(ctx, means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor,  # type: ignore[override]
                width: int, height: int, near_plane: float, far_plane: float, eps2d: float):
        C, N = viewmats.shape[0], means.shape[0]
        dtype = means.dtype
        means2d, depths = torch.empty(C, N, 2, dtype=dtype), torch.empty(C, N, dtype=dtype)
        conics, radii = torch.empty(C, N, 3, dtype=dtype), torch.empty(C, N, dtype=torch.int32)
        inputs = tuple(_np(t) for t in (means, quats, scales, viewmats, Ks))
        outputs = (means2d.numpy(), depths.numpy(), conics.numpy(), radii.numpy())
        n_units = _threads()
        _run_units(lambda u: kernels.project_forward(*inputs, width, height, near_plane, far_plane, eps2d, *outputs,
                                                     u, n_units), n_units)
        ctx.inputs, ctx.radii, ctx.size, ctx.eps2d = inputs, radii, (width, height), eps2d
        ctx.mark_non_differentiable(radii)
        return means2d, depths, conics, radii

    @staticmethod
    def backward(ctx, v_means2d: Tensor | None, v_depths: Tensor | None, v_conics: Tensor | None,  # type: ignore[override]
                 _v_radii: Tensor | None):
        means, quats, scales, viewmats, Ks = ctx.inputs
        C, N = ctx.radii.shape
        dtype = torch.from_numpy(means[:0]).dtype
        v_means2d = torch.zeros(C, N, 2, dtype=dtype) if v_means2d is None else v_means2d.to(dtype)
        v_conics = torch.zeros(C, N, 3, dtype=dtype) if v_conics is None else v_conics.to(dtype)
        v_depths = torch.zeros(C, N, dtype=dtype) if v_depths is None else v_depths.to(dtype)
        v_means, v_quats, v_scales = (torch.empty(N, k, dtype=dtype) for k in (3, 4, 3))
        upstream = (_np(v_means2d), _np(v_conics), _np(v_depths), v_means.numpy(), v_quats.numpy(), v_scales.numpy())
        n_units = _threads()
        _run_units(lambda u: kernels.project_backward(means, quats, scales, viewmats, Ks, *ctx.size, ctx.eps2d,
                                                      ctx.radii.numpy(), *upstream, u, n_units), n_units)
        grads = (v_means, v_quats, v_scales)
        return *(g if need else None for g, need in zip(grads, ctx.needs_input_grad[:3])), None, None, None, None, \
            None, None, None


def _project(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
             near_plane: float, far_plane: float, eps2d: float) -> Projection:
    """Compiled projection, or the torch one when the cameras themselves need gradients (camera refinement)."""
    if viewmats.requires_grad or Ks.requires_grad:
        return project_gaussians(means, quats, scales, viewmats, Ks, width, height, near_plane=near_plane,
                                 far_plane=far_plane, eps2d=eps2d)
    dtype = means.dtype
    means2d, depths, conics, radii = _ProjectNumba.apply(
        means, quats.to(dtype), scales.to(dtype), viewmats.to(dtype), Ks.to(dtype), width, height,
        float(near_plane), float(far_plane), float(eps2d))
    return Projection(radii=radii, means2d=means2d, depths=depths, conics=conics)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


_CORES = os.cpu_count() or 1


def _threads() -> int:
    """Parallel units for the next kernel: torch's thread budget (`torch.set_num_threads`), at most the cores."""
    return max(1, min(torch.get_num_threads(), _CORES))


def _run_units(work: Callable[[int], None], n_units: int) -> None:
    """Run `work(unit)` for unit 0 .. n_units - 1 at once: unit 0 in this thread, the others in a thread pool.

    The kernels release the GIL (`nogil=True`), so the units run on separate cores. Plain Python threads rather
    than Numba's `parallel=True`: Numba's OpenMP layer keeps its threads spinning after a kernel, and torch's own
    OpenMP threads then fight them for the cores (a 20k-element torch op measured 40 ms instead of 0.7 ms on 2
    cores); idle pool threads sleep. Also thread-safe when several threads render at once (viewer, nerfstudio).
    """
    global _POOL
    if n_units == 1:
        work(0)
        return
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, _CORES - 1),
                                       thread_name_prefix="rasterize-numba")
        pool = _POOL
    futures = [pool.submit(work, u) for u in range(1, n_units)]
    work(0)
    for f in futures:
        f.result()


def _np(t: Tensor) -> np.ndarray:
    """A contiguous NumPy view (no copy when the tensor is already contiguous and detached)."""
    return t.detach().contiguous().numpy()


@torch.no_grad()
def _plan_tiles(radii: Tensor, means2d: Tensor, depths: Tensor, conics: Tensor, opacities: Tensor,
                width: int, height: int) -> _Plan:
    """Bin the projected Gaussians ([C, N] layout; `opacities` [C*N]) into depth-sorted tile lists."""
    C, N = radii.shape
    tw, th = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    depths32, conics_np, opac_np = _np(depths.float().reshape(-1)), _np(conics.reshape(-1, 3)), _np(opacities)
    radii_np = _np(radii.reshape(-1))
    visible = np.flatnonzero(radii_np > 0)  # culled Gaussians touch no tile: left out of the sort
    order = visible[kernels.depth_order(depths32[visible])]  # one stable sort, not one per tile (see `bin_tiles`)
    offsets, ids, tiles_per_gauss = kernels.bin_tiles(_np(means2d.reshape(-1, 2)), radii_np, N, tw, th, C, order)
    extents = np.empty((order.shape[0], 3), dtype=np.float64)
    n_units = _threads()
    _run_units(lambda u: kernels.pixel_extents(conics_np, opac_np, order, ALPHA_MIN, extents, u, n_units), n_units)
    counts = np.diff(offsets)
    busy = np.nonzero(counts)[0]
    tile_order = busy[np.argsort(-counts[busy], kind="stable")].astype(np.int64)
    return _Plan(offsets=offsets, ids=ids, order=order, tile_order=tile_order, extents=extents, tile_w=tw, tile_h=th,
                 width=width, height=height, tiles_per_gauss=torch.from_numpy(tiles_per_gauss).reshape(C, N))


def _pixel_centres(plan: _Plan, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    return (np.arange(plan.width) + 0.5).astype(dtype), (np.arange(plan.height) + 0.5).astype(dtype)


class _CompositeNumba(torch.autograd.Function):
    """Alpha compositing over a tile plan: returns (sum_k alpha_k T_k c_k [C*H*W, D], T_final [C*H*W]).

    The kernels work on one record per tile-list entry (`composite.pack_entries`), so both passes read the
    Gaussians' geometry in list order; colours and gradients are indexed by flat id (camera * N + Gaussian).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        means2d: Tensor,  # [C*N, 2]
        conics: Tensor,  # [C*N, 3]
        opacities: Tensor,  # [C*N]
        colors: Tensor,  # [C*N, D]
        plan: _Plan,
        n_cams: int,
        absgrad_target: weakref.ref | None,
    ) -> tuple[Tensor, Tensor]:
        dtype = colors.dtype
        flat_arrays = tuple(_np(t) for t in (means2d, conics, opacities))
        colors_np = _np(colors)
        np_dtype = colors_np.dtype
        rec = np.empty((plan.ids.shape[0], 8), dtype=np_dtype)
        span = np.empty((plan.ids.shape[0], 4), dtype=np.int32)
        n_units = _threads()
        tiles = (plan.width, plan.height, plan.tile_w, plan.tile_h)
        _run_units(lambda u: composite.pack_entries(plan.offsets, plan.ids, plan.tile_order, plan.order, *flat_arrays,
                                                    plan.extents, *tiles, u, n_units, rec, span), n_units)
        n_pixels = n_cams * plan.height * plan.width
        out = np.zeros((n_pixels, colors_np.shape[1]), dtype=np_dtype)
        t_final = np.ones(n_pixels, dtype=np_dtype)
        last = np.full(n_pixels, -1, dtype=np.int64)
        cst = composite.constants(np_dtype, ALPHA_MIN, ALPHA_MAX, T_MIN)
        pxs, pys = _pixel_centres(plan, np_dtype)
        _run_units(lambda u: composite.composite_forward(
            plan.offsets, plan.ids, plan.order, plan.tile_order, rec, span, colors_np, pxs, pys, *tiles, u, n_units,
            cst, out, t_final, last), n_units)
        ctx.plan, ctx.n_cams, ctx.absgrad_target, ctx.entries, ctx.colors_np = plan, n_cams, absgrad_target, \
            (rec, span), colors_np
        ctx.t_final, ctx.last = t_final, last
        ctx.geom_dtype, ctx.dtype = means2d.dtype, dtype
        return torch.from_numpy(out), torch.from_numpy(t_final)

    @staticmethod
    def backward(ctx, v_out: Tensor, v_t: Tensor):  # type: ignore[override]
        plan: _Plan = ctx.plan
        need_geom = any(ctx.needs_input_grad[:3])
        need_colors = ctx.needs_input_grad[3]
        if not (need_geom or need_colors):
            return None, None, None, None, None, None, None
        colors_np = ctx.colors_np
        dtype = colors_np.dtype
        n_units = _threads()
        P, D = colors_np.shape
        v_geom = np.zeros((n_units, P, 8), dtype=dtype)
        v_colors = np.zeros((n_units, P, D) if need_colors else (1, 1, D), dtype=dtype)
        cst = composite.constants(dtype, ALPHA_MIN, ALPHA_MAX, T_MIN)
        pxs, pys = _pixel_centres(plan, dtype)
        v_out_np, v_t_np = _np(v_out.to(ctx.dtype)), _np(v_t.to(ctx.dtype))
        with_abs = ctx.absgrad_target is not None
        _run_units(lambda u: composite.composite_backward(
            plan.offsets, plan.ids, plan.order, plan.tile_order, *ctx.entries, colors_np, pxs, pys, plan.width,
            plan.height, plan.tile_w, plan.tile_h, u, n_units, cst, ctx.t_final, ctx.last, v_out_np, v_t_np,
            need_colors, with_abs, v_geom[u], v_colors[u if need_colors else 0]), n_units)
        geom = _sum_units(v_geom).to(ctx.geom_dtype)
        v_means2d = geom[:, :2] if ctx.needs_input_grad[0] else None
        v_conics = geom[:, 2:5] if ctx.needs_input_grad[1] else None
        v_opac = geom[:, 5] if ctx.needs_input_grad[2] else None
        if ctx.absgrad_target is not None:
            target = ctx.absgrad_target()
            if target is not None:
                target.absgrad = geom[:, 6:8].reshape(target.shape).clone()
        v_col = _sum_units(v_colors) if need_colors else None
        return v_means2d, v_conics, v_opac, v_col, None, None, None


def _sum_units(per_unit: np.ndarray) -> Tensor:
    """[U, C*N, K] per-unit gradients (by flat id) summed over the units: [C*N, K]."""
    return torch.from_numpy(per_unit[0] if per_unit.shape[0] == 1 else per_unit.sum(0))


def rasterize_numba(
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
) -> tuple[Float[Tensor, "C H W E"], Float[Tensor, "C H W 1"], dict]:
    """Render like `rasterize_torch` (same arguments, outputs and `info`), compositing in compiled CPU kernels.

    CPU tensors only, float32 or float64 (the kernels compute in the dtype of `colors`). `Ks` use gsplat's pixel
    convention (pixel (x, y) has its centre at (x + 0.5, y + 0.5)).
    """
    if means.device.type != "cpu":
        raise ValueError(f"the numba backend runs on CPU tensors only; got {means.device} (use backend='auto')")
    C, N = viewmats.shape[0], means.shape[0]
    proj = _project(means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d)
    mode_colors, mode_bgs = _mode_colors(colors, proj.depths, backgrounds, render_mode)
    opac_cn = opacities[None].expand(C, N)
    plan = _plan_tiles(proj.radii, proj.means2d, proj.depths, proj.conics, opac_cn.reshape(C * N), width, height)
    target = weakref.ref(proj.means2d) if absgrad else None
    summed, t_final = _CompositeNumba.apply(
        proj.means2d.reshape(C * N, 2),
        proj.conics.reshape(C * N, 3),
        opac_cn.reshape(C * N),
        mode_colors.reshape(C * N, -1),
        plan,
        C,
        target,
    )
    render = summed.reshape(C, height, width, -1)
    t_final = t_final.reshape(C, height, width, 1)
    if mode_bgs is not None:
        render = render + t_final * mode_bgs[:, None, None, :]
    alphas = 1.0 - t_final
    render = _expected_depth(render, alphas, render_mode)
    return render, alphas, _strategy_info(proj, opac_cn, plan.tiles_per_gauss, width, height)
