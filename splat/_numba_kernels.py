"""Numba-compiled CPU kernels of the rasteriser: tile binning and per-tile compositing, forward and backward.

Plain NumPy arrays in, plain NumPy arrays out; `rasterize_numba.py` wraps them for torch. The maths is gsplat 1.4.0's
`rasterize_to_pixels_fwd.cu` / `rasterize_to_pixels_bwd.cu` (one pixel = one CUDA thread there, one inner-loop
iteration here); the loop order is Gaussian-outer, pixel-inner inside a 16x16 tile, so the backward pass sums each
Gaussian's gradient over the tile's pixels in registers (the CUDA kernel's warp reduction) and writes it once.

Float constants come in the `cst` array of the data's dtype (`_CONSTANTS`) and pixel centres in `pxs` / `pys`,
because Numba promotes a float32 value to float64 when it meets a Python float or an int: with typed constants,
float32 inputs are composited in float32 exactly as the CUDA kernel and the torch twin do.

Kernels are compiled on first use for the dtypes they meet (float32, float64) and cached on disk (`cache=True`:
Numba's cache, next to this file or in the user's cache folder when the package folder is read-only, or in
`NUMBA_CACHE_DIR`).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# Order of the entries of `cst` (see `constants`).
_HALF, _ALPHA_MIN, _ALPHA_MAX, _T_MIN, _ONE, _ZERO = range(6)
_N_CONSTANTS = 6
CHANNEL_BLOCK = 4
"""The compositing kernels take colours with a multiple of this many channels (the caller pads with zeros): each
lane loop updates one block of channels, unrolled, so a row costs D / 4 loops instead of D."""
_BLOCK = CHANNEL_BLOCK


def constants(dtype: np.dtype, alpha_min: float, alpha_max: float, t_min: float) -> np.ndarray:
    """The kernels' float constants in the data's dtype (float32 rounding of 1/255 etc. as in torch and CUDA)."""
    return np.array([0.5, alpha_min, alpha_max, t_min, 1.0, 0.0], dtype=dtype)


@njit(nogil=True, cache=True)
def depth_order(depths):  # pragma: no cover - compiled
    """Stable argsort of float32 `depths` [M], as `np.argsort(depths, kind="stable")` for finite values.

    An LSD radix sort (three passes of 11 bits) of the float bit patterns made order-preserving as unsigned
    integers (sign bit flipped for positives, every bit for negatives; -0.0 counted as +0.0, a tie as numpy has
    it): 0.19 against 1.6 ms at 20k depths and 1.0 against 9.1 at 100k. Stable, so ties keep their index order.
    """
    M = depths.shape[0]
    keys = np.empty(M, np.uint32)
    bits = (depths + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into +0.0
    for i in range(M):
        b = bits[i]
        keys[i] = b ^ np.uint32(0xFFFFFFFF) if b >> np.uint32(31) else b | np.uint32(0x80000000)
    idx = np.arange(M).astype(np.int64)
    tmp = np.empty(M, np.int64)
    count = np.empty(2049, np.int64)
    for shift in (0, 11, 22):
        count[:] = 0
        for i in range(M):
            count[((keys[idx[i]] >> np.uint32(shift)) & np.uint32(2047)) + 1] += 1
        for d in range(2048):
            count[d + 1] += count[d]
        for i in range(M):
            d = (keys[idx[i]] >> np.uint32(shift)) & np.uint32(2047)
            tmp[count[d]] = idx[i]
            count[d] += 1
        idx, tmp = tmp, idx
    return idx


@njit(nogil=True, cache=True)
def bin_tiles(means2d, radii, n_per_cam, tile_w, tile_h, n_cams, order):  # pragma: no cover - compiled
    """Tile lists, each front to back: (offsets [C*th*tw + 1], slots, tiles per Gaussian [M]).

    A slot is a position in `order`: entry i of the lists is the Gaussian with flat id `order[ids[i]]`, so the
    compositing kernels read and write arrays gathered in depth order, and a tile's list walks them forwards.

    The tile box of a Gaussian is gsplat's (`isect_tiles.cu`, float32 arithmetic, as `rasterize_torch._tile_ranges`):
    floor / ceil of (mean -+ radius) / 16, clamped to the tile grid. Gaussians are listed in the order `order`
    (the flat ids of every visible Gaussian, stably sorted by float32 depth): every tile's list then comes out
    front to back, ties by index, as gsplat's radix sort of (tile, depth) keys leaves them, with no sort per tile.
    """
    n_tiles = n_cams * tile_h * tile_w
    M = radii.shape[0]
    boxes = np.zeros((M, 4), np.int64)
    tiles_per_gauss = np.zeros(M, np.int32)
    sixteen = np.float32(16.0)
    for m in range(M):
        if radii[m] <= 0:
            continue
        mx, my = np.float32(means2d[m, 0]) / sixteen, np.float32(means2d[m, 1]) / sixteen
        r = np.float32(radii[m]) / sixteen
        boxes[m, 0] = int(min(max(np.floor(mx - r), np.float32(0.0)), np.float32(tile_w)))
        boxes[m, 1] = int(min(max(np.ceil(mx + r), np.float32(0.0)), np.float32(tile_w)))
        boxes[m, 2] = int(min(max(np.floor(my - r), np.float32(0.0)), np.float32(tile_h)))
        boxes[m, 3] = int(min(max(np.ceil(my + r), np.float32(0.0)), np.float32(tile_h)))
        tiles_per_gauss[m] = (boxes[m, 1] - boxes[m, 0]) * (boxes[m, 3] - boxes[m, 2])
    counts = np.zeros(n_tiles + 1, np.int64)
    for m in range(M):
        base = (m // n_per_cam) * tile_h
        for ty in range(boxes[m, 2], boxes[m, 3]):
            for tx in range(boxes[m, 0], boxes[m, 1]):
                counts[(base + ty) * tile_w + tx + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    ids = np.empty(offsets[-1], np.int64)
    for j in range(order.shape[0]):
        m = order[j]
        base = (m // n_per_cam) * tile_h
        for ty in range(boxes[m, 2], boxes[m, 3]):
            for tx in range(boxes[m, 0], boxes[m, 1]):
                t = (base + ty) * tile_w + tx
                ids[cursor[t]] = j
                cursor[t] += 1
    return offsets, ids, tiles_per_gauss


@njit(nogil=True, cache=True, error_model="numpy")
def pixel_extents(conics, opacities, alpha_min, out, unit, n_units):  # pragma: no cover - compiled
    """Half-widths [M, 2] of the box outside which a Gaussian's alpha is below `alpha_min` (-1: nowhere above).

    alpha = opacity * exp(-sigma) >= alpha_min needs sigma <= t = log(opacity / alpha_min); the ellipse
    sigma = t has half-widths sqrt(2 t cov_xx), sqrt(2 t cov_yy) with cov = conic^-1. A 2% + 0.01 px margin
    covers float32 rounding, so the box drops only pixels the kernel would skip anyway (like the torch twin's
    block culling). Column 2 is t itself (with the margin): pixels with a larger sigma are skipped before the
    exponential. Computed in float64; writes rows [unit * M / n_units, (unit + 1) * M / n_units) of `out` [M, 3].
    """
    M = conics.shape[0]
    for m in range(unit * M // n_units, (unit + 1) * M // n_units):
        a, b, c = np.float64(conics[m, 0]), np.float64(conics[m, 1]), np.float64(conics[m, 2])
        op = np.float64(opacities[m])
        det = a * c - b * b
        if not op >= np.float64(alpha_min) * (1.0 - 1e-6):
            out[m, 0] = -1.0
            out[m, 1] = -1.0
            out[m, 2] = -1.0
        elif a > 0 and c > 0 and det > 0 and math.isfinite(det):
            t = max(math.log(op / np.float64(alpha_min)), 0.0) * 1.02 + 1e-6
            out[m, 0] = math.sqrt(2.0 * t * c / det) + 0.01
            out[m, 1] = math.sqrt(2.0 * t * a / det) + 0.01
            out[m, 2] = t
        else:
            out[m, 0] = 1e30
            out[m, 1] = 1e30
            out[m, 2] = 1e30


@njit(cache=True, inline="always")
def _span(centre, half_width, lo, hi):  # pragma: no cover - compiled
    """Pixels [first, last] of [lo, hi) whose centre x + 0.5 lies within `half_width` of `centre`."""
    first_f = np.ceil(centre - half_width - 0.5)
    last_f = np.floor(centre + half_width - 0.5)
    first = lo if not first_f > lo else (hi if first_f >= hi else int(first_f))
    last = hi - 1 if not last_f < hi - 1 else (lo - 1 if last_f < lo else int(last_f))
    return first, last


# The compositing kernels work on one tile row of 16 pixels at a time, written as loops over its 16 lanes with no
# branches (every test is a select), so LLVM turns each row into a few SIMD instructions: 16 float32 per AVX-512
# register. Two things keep that vectorisation alive:
# - `_exp` (float32): Cephes' expf (range reduction to [-ln2/2, ln2/2], a degree-6 polynomial, 2^n put into the
#   exponent bits), about 1 ulp, inlined so it vectorises; libm's expf is an opaque call that keeps a loop scalar
#   (Numba's pip build has no SVML). float64 keeps `math.exp`, so float64 stays the exact reference check.
# - `_lanes(cst)`: the lane count, 16, read from an argument's shape. With a literal 16, LLVM fully unrolls each
#   16-lane loop before its loop vectoriser runs and then vectorises the loop around it instead (over the colour
#   channels, with gathers, and only for 8 or more channels): three times slower at D = 6.
# `_FASTMATH` lets LLVM reassociate the per-lane sums and fuse multiply-adds; it keeps NaN and infinity semantics,
# which the masks rely on (a NaN sigma fails every test and the lane drops out).
_FASTMATH = {"contract", "reassoc", "nsz", "arcp"}


@intrinsic
def _bits_to_f32(typingctx, bits):  # pragma: no cover - compiled
    """The float32 whose bit pattern is the int32 `bits` (2^n as (n + 127) << 23)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


def _exp(x):  # pragma: no cover - replaced by the overload in compiled code
    """exp(x): a vectorisable polynomial for float32, math.exp for float64 (see the note above `_FASTMATH`)."""
    return math.exp(x)


@overload(_exp, inline="always", fastmath=_FASTMATH)
def _exp_overload(x):  # pragma: no cover - compiled
    if x == types.float32:
        def exp32(x):
            x = min(max(x, np.float32(-87.0)), np.float32(88.0))
            n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
            r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
            p = np.float32(1.9875691500e-4)
            p = p * r + np.float32(1.3981999507e-3)
            p = p * r + np.float32(8.3334519073e-3)
            p = p * r + np.float32(4.1665795894e-2)
            p = p * r + np.float32(1.6666665459e-1)
            p = p * r + np.float32(5.0000001201e-1)
            p = p * r * r + r + np.float32(1.0)
            return p * _bits_to_f32((np.int32(n) + np.int32(127)) << np.int32(23))

        return exp32
    return lambda x: math.exp(x)


@intrinsic
def _lane_sum(typingctx, arr, row):  # pragma: no cover - compiled
    """Sum of `arr[row, 0:16]` (a C-contiguous 2D float array) as one vector reduction (`llvm.vector.reduce.fadd`).

    A Gaussian's 8 gradient moments and D colour gradients are summed over the 16 lanes at its end; written as
    loops, those sums compiled to scalar adds and cost 10 % of the backward pass.
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 2 and arr.layout == "C"
            and arr.dtype in (types.float32, types.float64)):
        raise TypeError(f"_lane_sum needs a C-contiguous 2D float array, got {arr}")

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        start = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], context.get_constant(types.intp, 0)])
        fty = context.get_value_type(aryty.dtype)
        vty = ir.VectorType(fty, 16)
        vec = builder.load(builder.bitcast(start, vty.as_pointer()), align=aryty.dtype.bitwidth // 8)
        name = "llvm.vector.reduce.fadd.v16" + ("f32" if aryty.dtype == types.float32 else "f64")
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(fty, [fty, vty]), name)
        return builder.call(fn, [ir.Constant(fty, 0.0), vec], fastmath=("reassoc",))

    return arr.dtype(arr, row), codegen


@njit(cache=True, inline="always")
def _lanes(cst):  # pragma: no cover - compiled
    """16, as a value LLVM cannot see through (the constants array's length is a run-time value)."""
    return np.int64(cst.shape[0]) - _N_CONSTANTS + 16


@njit(cache=True, inline="always")
def _tile_box(tile, tile_w, tile_h, width, height):  # pragma: no cover - compiled
    """Camera and pixel box [x0, x1) x [y0, y1) of a flat tile index."""
    cam = tile // (tile_h * tile_w)
    rem = tile % (tile_h * tile_w)
    x0, y0 = (rem % tile_w) * 16, (rem // tile_w) * 16
    return cam, x0, y0, min(x0 + 16, width), min(y0 + 16, height)


@njit(nogil=True, cache=True, error_model="numpy")
def pack_entries(offsets, ids, tile_order, means2d, conics, opacities, extents, width, height, tile_w, tile_h,
                 unit, n_units, rec, span):  # pragma: no cover - compiled
    """One record per tile-list entry, so that both compositing passes read their Gaussians in list order.

    `means2d` [S, 2], `conics` [S, 3], `opacities` [S], `extents` [S, 3] are indexed by the slots in `ids`. Entry i
    gets `rec[i]` = (mean x, mean y, conic a, b, c, opacity, sigma cut-off, 0) in the compositing dtype and
    `span[i]` = (first, last) pixel column relative to its tile's left edge and (first, last) image row where its
    alpha can reach 1/255 in that tile (`pixel_extents`); an entry with no such pixel gets an empty column range
    (first > last). The tiles of `tile_order` are dealt round-robin to `n_units` units, as in the compositing.
    """
    for j in range(unit, tile_order.shape[0], n_units):
        tile = tile_order[j]
        cam, x0, y0, x1, y1 = _tile_box(tile, tile_w, tile_h, width, height)
        for i in range(offsets[tile], offsets[tile + 1]):
            g = ids[i]
            xa, xb, ya, yb = 1, 0, y0, y0 - 1
            if extents[g, 0] >= 0:
                xa, xb = _span(np.float64(means2d[g, 0]), extents[g, 0], x0, x1)
                ya, yb = _span(np.float64(means2d[g, 1]), extents[g, 1], y0, y1)
                xa, xb = xa - x0, xb - x0
                if ya > yb:
                    xa, xb = 1, 0
            span[i, 0], span[i, 1], span[i, 2], span[i, 3] = xa, xb, ya, yb
            rec[i, 0], rec[i, 1] = means2d[g, 0], means2d[g, 1]
            rec[i, 2], rec[i, 3], rec[i, 4], rec[i, 5] = conics[g, 0], conics[g, 1], conics[g, 2], opacities[g]
            rec[i, 6], rec[i, 7] = extents[g, 2], 0.0


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_FASTMATH)
def composite_forward(offsets, ids, tile_order, rec, span, colors, pxs, pys, width, height, tile_w, tile_h,
                      unit, n_units, cst, out, t_final, last):  # pragma: no cover - compiled
    """Front-to-back compositing of every tile (rasterize_to_pixels_fwd.cu); writes `out`, `t_final`, `last`.

    `colors` [M, D] have D a multiple of `CHANNEL_BLOCK`. `out` [C*H*W, D] gets sum_k alpha_k T_k c_k, `t_final` [C*H*W] the transmittance left, `last` [C*H*W] the
    position in `ids` of the last contributing Gaussian (-1: none). Busy tiles, heaviest first in `tile_order`,
    are dealt round-robin to `n_units` units; this call does unit `unit`. A pixel stops, as in CUDA, at the first
    Gaussian that would take its transmittance to `t_min` or below (that one is left out); a stopped pixel keeps its
    transmittance negated, so one array holds both.
    """
    D = colors.shape[1]
    dt = colors.dtype
    half, alpha_min, alpha_max, t_min = cst[_HALF], cst[_ALPHA_MIN], cst[_ALPHA_MAX], cst[_T_MIN]
    one, zero = cst[_ONE], cst[_ZERO]
    nl = _lanes(cst)
    T = np.empty((16, 16), dt)  # [row, lane]
    acc = np.empty((16, D // _BLOCK, _BLOCK, 16), dt)  # [row, channel block, channel, lane]
    cg = np.empty(_BLOCK, dt)
    lastl = np.empty((16, 16), np.int32)  # last contributor, relative to the tile's first list entry
    px = np.empty(16, dt)
    vis = np.empty(16, dt)
    lane = np.arange(16).astype(np.int32)
    for j in range(unit, tile_order.shape[0], n_units):
        tile = tile_order[j]
        cam, x0, y0, x1, y1 = _tile_box(tile, tile_w, tile_h, width, height)
        for xi in range(nl):
            px[xi] = pxs[min(x0 + xi, width - 1)]
        T[:] = one
        acc[:] = zero
        lastl[:] = -1
        start = offsets[tile]
        for i in range(start, offsets[tile + 1]):
            xa32, xb32 = span[i, 0], span[i, 1]
            if xa32 > xb32:
                continue
            g = ids[i]
            mx, my, ca, cb, cc, op, s_cut = rec[i, 0], rec[i, 1], rec[i, 2], rec[i, 3], rec[i, 4], rec[i, 5], rec[i, 6]
            ya, yb, il = span[i, 2], span[i, 3], np.int32(i - start)
            hca = half * ca
            for y in range(ya, yb + 1):
                r = y - y0
                dy = my - pys[y]
                cdy, ccy = cb * dy, half * cc * dy * dy
                for xi in range(nl):
                    dx = mx - px[xi]
                    sigma = dx * (hca * dx + cdy) + ccy
                    alpha = min(alpha_max, op * _exp(-sigma))
                    Tp = T[r, xi]
                    next_t = Tp * (one - alpha)
                    ok = ((lane[xi] >= xa32) & (lane[xi] <= xb32) & (sigma >= zero) & (sigma <= s_cut)
                          & (alpha >= alpha_min) & (Tp > zero))
                    contrib = ok & (next_t > t_min)
                    vis[xi] = alpha * Tp if contrib else zero
                    T[r, xi] = next_t if contrib else (-Tp if ok else Tp)
                    lastl[r, xi] = il if contrib else lastl[r, xi]
                for b in range(D // _BLOCK):
                    for kk in range(_BLOCK):
                        cg[kk] = colors[g, b * _BLOCK + kk]
                    for xi in range(nl):
                        v = vis[xi]
                        for kk in range(_BLOCK):
                            acc[r, b, kk, xi] += v * cg[kk]
            if (i - start) % 32 == 31 and _all_stopped(T, x1 - x0, y1 - y0, zero):
                break
        base = cam * height * width
        for y in range(y0, y1):
            for x in range(x0, x1):
                q, r, xi = base + y * width + x, y - y0, x - x0
                for k in range(D):
                    out[q, k] = acc[r, k // _BLOCK, k % _BLOCK, xi]
                t_final[q] = abs(T[r, xi])
                last[q] = lastl[r, xi] + start if lastl[r, xi] >= 0 else -1


@njit(cache=True, inline="always")
def _all_stopped(T, n_x, n_y, zero):  # pragma: no cover - compiled
    """Whether every pixel of the tile's image part has stopped (negated transmittance)."""
    for r in range(n_y):
        for xi in range(n_x):
            if T[r, xi] > zero:
                return False
    return True


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_FASTMATH)
def composite_backward(offsets, ids, tile_order, rec, span, colors, pxs, pys, width, height, tile_w, tile_h,
                       unit, n_units, cst, t_final, last, v_out, v_t, with_colors, with_abs, v_geom,
                       v_colors):  # pragma: no cover - compiled
    """Back-to-front gradients of every tile (rasterize_to_pixels_bwd.cu), summed per parallel unit.

    `v_out` [C*H*W, D] and `v_t` [C*H*W] are the gradients of the composited sum and of the final transmittance.
    This call (unit `unit` of `n_units`) adds its Gaussians' gradients into its own `v_geom` [M, 8] (mean x, y,
    conic a, b, c, opacity, |mean x|, |mean y|) and, when `with_colors`, `v_colors` [M, D]; the caller sums over
    units (deterministic: the tiles of a unit are fixed by `tile_order`).

    As the CUDA kernel, each pixel's transmittance in front of a Gaussian is recovered from the final one by
    dividing by (1 - alpha) on the way back, and `buf` holds sum_{j behind} alpha_j T_j c_j. With
    dL/dT_final = v_t: dL/dalpha_k = sum_d (c_kd T_k - buf_d / (1 - alpha_k)) v_out_d - v_t T_final / (1 - alpha_k).
    A Gaussian's gradient sums over its rows lane by lane (`gsum`) and over the lanes once at its end.
    """
    D = colors.shape[1]
    dt = colors.dtype
    half, alpha_min, alpha_max, one, zero = cst[_HALF], cst[_ALPHA_MIN], cst[_ALPHA_MAX], cst[_ONE], cst[_ZERO]
    nl = _lanes(cst)
    T = np.empty((16, 16), dt)  # [row, lane]
    tf_vt = np.empty((16, 16), dt)  # T_final * v_t
    buf = np.empty((16, D // _BLOCK, _BLOCK, 16), dt)  # [row, channel block, channel, lane]
    vo = np.empty((16, D // _BLOCK, _BLOCK, 16), dt)
    cg = np.empty(_BLOCK, dt)
    lastl = np.empty((16, 16), np.int32)
    px = np.empty(16, dt)
    lane = np.arange(16).astype(np.int32)
    ra_m, tn_m, fac = np.empty(16, dt), np.empty(16, dt), np.empty(16, dt)  # 1 / (1 - alpha), T, alpha T
    va, e_m = np.empty(16, dt), np.empty(16, dt)  # dL/dalpha, exp(-sigma) where it passes a gradient
    gsum = np.empty((8, 16), dt)  # sigma-gradient moments dx^2, dx dy, dy^2, mean x, y, |x|, |y|, opacity
    csum = np.empty((D, 16), dt)
    for j in range(unit, tile_order.shape[0], n_units):
        tile = tile_order[j]
        cam, x0, y0, x1, y1 = _tile_box(tile, tile_w, tile_h, width, height)
        for xi in range(nl):
            px[xi] = pxs[min(x0 + xi, width - 1)]
        base, start = cam * height * width, offsets[tile]
        lastl[:] = -1  # pixels outside the image never pass the `il <= lastl` test
        T[:] = one
        tf_vt[:] = zero
        buf[:] = zero
        vo[:] = zero
        max_last = np.int64(-1)
        for y in range(y0, y1):
            for x in range(x0, x1):
                q, r, xi = base + y * width + x, y - y0, x - x0
                T[r, xi] = t_final[q]
                tf_vt[r, xi] = t_final[q] * v_t[q]
                lastl[r, xi] = last[q] - start if last[q] >= 0 else -1
                max_last = max(max_last, last[q])
                for k in range(D):
                    vo[r, k // _BLOCK, k % _BLOCK, xi] = v_out[q, k]
        for i in range(max_last, start - 1, -1):
            xa32, xb32 = span[i, 0], span[i, 1]
            if xa32 > xb32:
                continue
            g = ids[i]
            mx, my, ca, cb, cc, op, s_cut = rec[i, 0], rec[i, 1], rec[i, 2], rec[i, 3], rec[i, 4], rec[i, 5], rec[i, 6]
            ya, yb, il = span[i, 2], span[i, 3], np.int32(i - start)
            hca = half * ca
            for t in range(8):  # explicit loops: a slice assignment here cost more than the lane sums
                for xi in range(nl):
                    gsum[t, xi] = zero
            for k in range(D):
                for xi in range(nl):
                    csum[k, xi] = zero
            for y in range(ya, yb + 1):
                r = y - y0
                dy = my - pys[y]
                cdy, ccy = cb * dy, half * cc * dy * dy
                n_ok = np.int32(0)
                for xi in range(nl):
                    dx = mx - px[xi]
                    sigma = dx * (hca * dx + cdy) + ccy
                    e = _exp(-sigma)
                    alpha = min(alpha_max, op * e)
                    ok = ((lane[xi] >= xa32) & (lane[xi] <= xb32) & (il <= lastl[r, xi]) & (sigma >= zero)
                          & (sigma <= s_cut) & (alpha >= alpha_min))
                    ra = one / (one - alpha)
                    tn = T[r, xi] * ra  # transmittance in front of this Gaussian
                    T[r, xi] = tn if ok else T[r, xi]
                    ra_m[xi] = ra if ok else zero
                    tn_m[xi] = tn if ok else zero
                    fac[xi] = alpha * tn if ok else zero
                    va[xi] = -tf_vt[r, xi] * ra if ok else zero  # dL/dalpha, completed over channels below
                    e_m[xi] = e if (ok & (op * e < alpha_max)) else zero  # a clamped alpha passes no gradient
                    n_ok += np.int32(1) if ok else np.int32(0)
                if n_ok == 0:
                    continue
                for b in range(D // _BLOCK):
                    for kk in range(_BLOCK):
                        cg[kk] = colors[g, b * _BLOCK + kk]
                    for xi in range(nl):
                        a, t, ra, f = va[xi], tn_m[xi], ra_m[xi], fac[xi]
                        for kk in range(_BLOCK):
                            v, bk = vo[r, b, kk, xi], buf[r, b, kk, xi]
                            a += (cg[kk] * t - bk * ra) * v
                            buf[r, b, kk, xi] = bk + cg[kk] * f
                            csum[b * _BLOCK + kk, xi] += f * v
                        va[xi] = a
                for xi in range(nl):
                    dx = mx - px[xi]
                    v_sigma = -op * e_m[xi] * va[xi]
                    gx = v_sigma * (ca * dx + cdy)
                    gy = v_sigma * (cb * dx + cc * dy)
                    gsum[0, xi] += v_sigma * dx * dx
                    gsum[1, xi] += v_sigma * dx * dy
                    gsum[2, xi] += v_sigma * dy * dy
                    gsum[3, xi] += gx
                    gsum[4, xi] += gy
                    gsum[5, xi] += abs(gx)
                    gsum[6, xi] += abs(gy)
                    gsum[7, xi] += e_m[xi] * va[xi]
            _add_gaussian_grads(g, gsum, csum, half, with_colors, with_abs, v_geom, v_colors)


@njit(cache=True, inline="always")
def _add_gaussian_grads(g, gsum, csum, half, with_colors, with_abs, v_geom, v_colors):  # pragma: no cover
    """Sum one Gaussian's per-lane moments over the lanes into its rows of `v_geom` [M, 8] and `v_colors`."""
    v_geom[g, 0] += _lane_sum(gsum, 3)
    v_geom[g, 1] += _lane_sum(gsum, 4)
    v_geom[g, 2] += half * _lane_sum(gsum, 0)
    v_geom[g, 3] += _lane_sum(gsum, 1)
    v_geom[g, 4] += half * _lane_sum(gsum, 2)
    v_geom[g, 5] += _lane_sum(gsum, 7)
    if with_abs:
        v_geom[g, 6] += _lane_sum(gsum, 5)
        v_geom[g, 7] += _lane_sum(gsum, 6)
    if with_colors:
        for k in range(v_colors.shape[1]):
            v_colors[g, k] += _lane_sum(csum, k)

# ----------------------------------------------------------------------------------------------------------------
# Projection (gsplat's pinhole `fully_fused_projection`, non-packed), forward and backward, in float64
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _rotmat(qw, qx, qy, qz):  # pragma: no cover - compiled
    """Rotation of a (normalised) wxyz quaternion, row-major 9-tuple (gsplat `_quat_to_rotmat`)."""
    return (1.0 - 2.0 * (qy * qy + qz * qz), 2.0 * (qx * qy - qw * qz), 2.0 * (qx * qz + qw * qy),
            2.0 * (qx * qy + qw * qz), 1.0 - 2.0 * (qx * qx + qz * qz), 2.0 * (qy * qz - qw * qx),
            2.0 * (qx * qz - qw * qy), 2.0 * (qy * qz + qw * qx), 1.0 - 2.0 * (qx * qx + qy * qy))


@njit(cache=True, inline="always")
def _project_one(means, quats, scales, viewmats, Ks, c, n, width, height, eps2d, buf, cov, tmp):  # pragma: no cover
    """Camera-space centre, covariances and Jacobian of Gaussian n in camera c, written into `buf` [48] (`cov`, `tmp`
    [9]: scratch; every buffer is allocated once per kernel call, as an allocation per Gaussian cost as much as the
    arithmetic).

    buf: 0-2 mean_c, 3-11 R (world, normalised quaternion), 12-20 covar_c, 21-26 J (2x3), 27-29 cov2d (p, q, r)
    with eps2d, 30-31 clamped x/z, y/z, 32-33 clamp flags, 34 |q|, 35-38 normalised quaternion, 39-47 M = R S.
    """
    qw, qx, qy, qz = np.float64(quats[n, 0]), np.float64(quats[n, 1]), np.float64(quats[n, 2]), np.float64(quats[n, 3])
    qn = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
    qw, qx, qy, qz = qw / qn, qx / qn, qy / qn, qz / qn
    buf[34], buf[35], buf[36], buf[37], buf[38] = qn, qw, qx, qy, qz
    R = _rotmat(qw, qx, qy, qz)
    for i in range(9):
        buf[3 + i] = R[i]
        buf[39 + i] = R[i] * np.float64(scales[n, i % 3])
    # cov = M M^T
    for i in range(3):
        for j in range(3):
            cov[i * 3 + j] = (buf[39 + i * 3] * buf[39 + j * 3] + buf[40 + i * 3] * buf[40 + j * 3]
                              + buf[41 + i * 3] * buf[41 + j * 3])
    for i in range(3):
        buf[i] = (np.float64(viewmats[c, i, 0]) * np.float64(means[n, 0]) + np.float64(viewmats[c, i, 1])
                  * np.float64(means[n, 1]) + np.float64(viewmats[c, i, 2]) * np.float64(means[n, 2])
                  + np.float64(viewmats[c, i, 3]))
    # tmp = W cov
    for i in range(3):
        for j in range(3):
            tmp[i * 3 + j] = (np.float64(viewmats[c, i, 0]) * cov[j] + np.float64(viewmats[c, i, 1]) * cov[3 + j]
                              + np.float64(viewmats[c, i, 2]) * cov[6 + j])
    for i in range(3):
        for j in range(3):
            buf[12 + i * 3 + j] = (tmp[i * 3] * np.float64(viewmats[c, j, 0]) + tmp[i * 3 + 1]
                                   * np.float64(viewmats[c, j, 1]) + tmp[i * 3 + 2] * np.float64(viewmats[c, j, 2]))
    fx, fy, cx, cy = np.float64(Ks[c, 0, 0]), np.float64(Ks[c, 1, 1]), np.float64(Ks[c, 0, 2]), np.float64(Ks[c, 1, 2])
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    z = buf[2]
    u, v = buf[0] / z, buf[1] / z
    uc, vc = min(max(u, -lim_x_neg), lim_x_pos), min(max(v, -lim_y_neg), lim_y_pos)
    buf[30], buf[31] = uc, vc
    buf[32] = 1.0 if (u >= -lim_x_neg and u <= lim_x_pos) else 0.0
    buf[33] = 1.0 if (v >= -lim_y_neg and v <= lim_y_pos) else 0.0
    buf[21], buf[22], buf[23] = fx / z, 0.0, -fx * uc / z
    buf[24], buf[25], buf[26] = 0.0, fy / z, -fy * vc / z
    for i in range(2):  # cov2d = J covar_c J^T
        for j in range(i, 2):
            s = 0.0
            for k in range(3):
                for l in range(3):
                    s += buf[21 + i * 3 + k] * buf[12 + k * 3 + l] * buf[21 + j * 3 + l]
            buf[27 + i + j] = s
    buf[27] += eps2d
    buf[29] += eps2d


@njit(nogil=True, cache=True, error_model="numpy")
def project_forward(means, quats, scales, viewmats, Ks, width, height, near, far, eps2d,
                    means2d, depths, conics, radii, unit, n_units):  # pragma: no cover - compiled
    """means2d [C, N, 2], depths [C, N], conics [C, N, 3], radii [C, N] of every Gaussian in every camera.

    As `rasterize_torch.project_gaussians`: kept when in the depth range, det > 0, its 3-sigma box overlaps the
    image; culled ones get radius 0 (their other values are finite and unused).
    """
    C, N = depths.shape
    buf, cov, tmp = np.empty(48), np.empty(9), np.empty(9)
    for cn in range(unit * C * N // n_units, (unit + 1) * C * N // n_units):
        c, n = cn // N, cn % N
        _project_one(means, quats, scales, viewmats, Ks, c, n, width, height, eps2d, buf, cov, tmp)
        z = buf[2]
        in_range = z > near and z < far
        zs = z if in_range else 1.0
        mx = (np.float64(Ks[c, 0, 0]) * buf[0] + np.float64(Ks[c, 0, 1]) * buf[1] + np.float64(Ks[c, 0, 2]) * zs) / zs
        my = (np.float64(Ks[c, 1, 0]) * buf[0] + np.float64(Ks[c, 1, 1]) * buf[1] + np.float64(Ks[c, 1, 2]) * zs) / zs
        p, q, r = buf[27], buf[28], buf[29]
        det = p * r - q * q
        det_safe = max(det, 1e-10)
        means2d[c, n, 0], means2d[c, n, 1] = mx, my
        depths[c, n] = z
        conics[c, n, 0], conics[c, n, 1], conics[c, n, 2] = r / det_safe, -q / det_safe, p / det_safe
        b = 0.5 * (p + r)
        radius = np.ceil(3.0 * math.sqrt(b + math.sqrt(max(b * b - det, 0.01))))
        inside = mx + radius > 0 and mx - radius < width and my + radius > 0 and my - radius < height
        keep = det > 0 and in_range and inside and math.isfinite(radius)
        if not keep:
            radii[c, n] = 0
        elif radius < 2147483648.0:
            radii[c, n] = np.int32(radius)
        else:  # what torch's float -> int32 cast gives on x86 (a negative radius: culled downstream)
            radii[c, n] = np.int32(-2147483648)


@njit(nogil=True, cache=True, error_model="numpy")
def project_backward(means, quats, scales, viewmats, Ks, width, height, eps2d, radii, v_means2d, v_conics,
                     v_depths, v_means, v_quats, v_scales, unit, n_units):  # pragma: no cover - compiled
    """Gradients of means [N, 3], quats [N, 4], scales [N, 3] from those of means2d, conics and depths.

    One Gaussian per iteration, summed over cameras (no races); culled Gaussians (radius 0) get nothing, as
    their upstream gradients are zero. The chain is gsplat's `fully_fused_projection_bwd`: conic = cov2d^-1 so
    dL/dcov2d = -conic G conic (G the symmetric conic gradient), cov2d = J covar_c J^T, covar_c = W covar W^T,
    covar = M M^T with M = R S, R from the normalised quaternion; J's clamped x/z and y/z pass no gradient.
    """
    C, N = radii.shape
    buf, cov, tmp = np.empty(48), np.empty(9), np.empty(9)
    g_mean, g_cov = np.empty(3), np.empty(9)  # g_cov: world-space covariance gradient, summed over cameras
    gcc, gJ, gM, gR = np.empty(9), np.empty(6), np.empty(9), np.empty(9)
    for n in range(unit * N // n_units, (unit + 1) * N // n_units):
        g_mean[:] = 0.0
        g_cov[:] = 0.0
        any_cam = False
        for c in range(C):
            if radii[c, n] <= 0:
                continue
            any_cam = True
            _project_one(means, quats, scales, viewmats, Ks, c, n, width, height, eps2d, buf, cov, tmp)
            _cov2d_backward(buf, _conic_backward(buf, v_conics, c, n), gcc, gJ)
            g_x, g_y, g_z = _camera_mean_backward(buf, Ks, gJ, v_means2d, v_depths, c, n)
            _to_world_backward(viewmats, c, g_x, g_y, g_z, gcc, g_mean, g_cov)
        if not any_cam:
            for i in range(3):
                v_means[n, i] = 0
                v_scales[n, i] = 0
            for i in range(4):
                v_quats[n, i] = 0
            continue
        for i in range(3):
            v_means[n, i] = g_mean[i]
        _covar_backward(buf, g_cov, scales, n, gM, gR, v_scales, v_quats)


@njit(cache=True, inline="always")
def _conic_backward(buf, v_conics, c, n):  # pragma: no cover - compiled
    """dL/dcov2d = -conic G conic (G the symmetric conic gradient), row-major 2x2."""
    p, q, r = buf[27], buf[28], buf[29]
    det = p * r - q * q
    ia, ib, ic = r / det, -q / det, p / det  # conic
    ga, gb, gc = np.float64(v_conics[c, n, 0]), 0.5 * np.float64(v_conics[c, n, 1]), np.float64(v_conics[c, n, 2])
    t00, t01 = ia * ga + ib * gb, ia * gb + ib * gc
    t10, t11 = ib * ga + ic * gb, ib * gb + ic * gc
    V00 = -(t00 * ia + t01 * ib)
    V01 = -(t00 * ib + t01 * ic)
    V11 = -(t10 * ib + t11 * ic)
    return (V00, V01, V01, V11)


@njit(cache=True, inline="always")
def _cov2d_backward(buf, V, gcc, gJ):  # pragma: no cover - compiled
    """From V = dL/dcov2d: the covar_c gradient J^T V J into `gcc` [9] and the J gradient 2 V J covar_c into `gJ`."""
    for k in range(3):
        for l in range(3):
            s = 0.0
            for i in range(2):
                for j in range(2):
                    s += buf[21 + i * 3 + k] * V[i * 2 + j] * buf[21 + j * 3 + l]
            gcc[k * 3 + l] = s
    for i in range(2):
        for k in range(3):
            s = 0.0
            for j in range(2):
                for l in range(3):
                    s += V[i * 2 + j] * buf[21 + j * 3 + l] * buf[12 + l * 3 + k]
            gJ[i * 3 + k] = 2.0 * s


@njit(cache=True, inline="always")
def _camera_mean_backward(buf, Ks, gJ, v_means2d, v_depths, c, n):  # pragma: no cover - compiled
    """Gradient of the camera-space mean (x, y, z) through J, means2d = (K[:2] @ mean_c) / z and the depth."""
    x, y, z = buf[0], buf[1], buf[2]
    fx, fy = np.float64(Ks[c, 0, 0]), np.float64(Ks[c, 1, 1])
    uc, vc = buf[30], buf[31]
    # J = [[fx/z, 0, -fx uc/z], [0, fy/z, -fy vc/z]]
    g_z = -fx / (z * z) * gJ[0] + fx * uc / (z * z) * gJ[2] - fy / (z * z) * gJ[4] + fy * vc / (z * z) * gJ[5]
    g_uc, g_vc = -fx / z * gJ[2], -fy / z * gJ[5]
    g_x = g_uc / z * buf[32]
    g_y = g_vc / z * buf[33]
    g_z += -(g_uc * buf[32] * x + g_vc * buf[33] * y) / (z * z)
    vm0, vm1 = np.float64(v_means2d[c, n, 0]), np.float64(v_means2d[c, n, 1])
    k00, k01, k02 = np.float64(Ks[c, 0, 0]), np.float64(Ks[c, 0, 1]), np.float64(Ks[c, 0, 2])
    k10, k11, k12 = np.float64(Ks[c, 1, 0]), np.float64(Ks[c, 1, 1]), np.float64(Ks[c, 1, 2])
    num0, num1 = k00 * x + k01 * y + k02 * z, k10 * x + k11 * y + k12 * z
    g_x += (k00 * vm0 + k10 * vm1) / z
    g_y += (k01 * vm0 + k11 * vm1) / z
    g_z += (k02 * vm0 + k12 * vm1) / z - (num0 * vm0 + num1 * vm1) / (z * z)
    g_z += np.float64(v_depths[c, n])
    return g_x, g_y, g_z


@njit(cache=True, inline="always")
def _to_world_backward(viewmats, c, g_x, g_y, g_z, gcc, g_mean, g_cov):  # pragma: no cover - compiled
    """Add camera c's gradients to the world-space mean and covariance: mean_c = W mean + t, covar_c = W covar W^T."""
    for i in range(3):
        g_mean[i] += (np.float64(viewmats[c, 0, i]) * g_x + np.float64(viewmats[c, 1, i]) * g_y
                      + np.float64(viewmats[c, 2, i]) * g_z)
    for a in range(3):
        for b in range(3):
            s = 0.0
            for k in range(3):
                for l in range(3):
                    s += np.float64(viewmats[c, k, a]) * gcc[k * 3 + l] * np.float64(viewmats[c, l, b])
            g_cov[a * 3 + b] += s


@njit(cache=True, inline="always")
def _covar_backward(buf, g_cov, scales, n, gM, gR, v_scales, v_quats):  # pragma: no cover - compiled
    """Scale and quaternion gradients of Gaussian n from the world covariance gradient: covar = M M^T,
    dL/dM = (G + G^T) M, M = R diag(s), R from the normalised quaternion (gsplat `_quat_to_rotmat` backward)."""
    for i in range(3):
        for j in range(3):
            s = 0.0
            for k in range(3):
                s += (g_cov[i * 3 + k] + g_cov[k * 3 + i]) * buf[39 + k * 3 + j]
            gM[i * 3 + j] = s
    for j in range(3):
        sj = np.float64(scales[n, j])
        acc = 0.0
        for i in range(3):
            gR[i * 3 + j] = gM[i * 3 + j] * sj
            acc += gM[i * 3 + j] * buf[3 + i * 3 + j]
        v_scales[n, j] = acc
    qn, qw, qx, qy, qz = buf[34], buf[35], buf[36], buf[37], buf[38]
    g00, g01, g02, g10, g11, g12, g20, g21, g22 = gR[0], gR[1], gR[2], gR[3], gR[4], gR[5], gR[6], gR[7], gR[8]
    vw = 2.0 * (-qz * g01 + qy * g02 + qz * g10 - qx * g12 - qy * g20 + qx * g21)
    vx = 2.0 * (qy * g01 + qz * g02 + qy * g10 - 2.0 * qx * g11 - qw * g12 + qz * g20 + qw * g21 - 2.0 * qx * g22)
    vy = 2.0 * (-2.0 * qy * g00 + qx * g01 + qw * g02 + qx * g10 + qz * g12 - qw * g20 + qz * g21 - 2.0 * qy * g22)
    vz = 2.0 * (-2.0 * qz * g00 - qw * g01 + qx * g02 + qw * g10 - 2.0 * qz * g11 + qy * g12 + qx * g20 + qy * g21)
    dot = vw * qw + vx * qx + vy * qy + vz * qz
    v_quats[n, 0] = (vw - dot * qw) / qn
    v_quats[n, 1] = (vx - dot * qx) / qn
    v_quats[n, 2] = (vy - dot * qy) / qn
    v_quats[n, 3] = (vz - dot * qz) / qn
