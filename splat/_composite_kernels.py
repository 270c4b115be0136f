"""Compiled per-tile compositing of the CPU rasteriser, forward and analytic backward (Numba + LLVM vector code).

The maths is gsplat 1.4.0's `rasterize_to_pixels_fwd.cu` / `rasterize_to_pixels_bwd.cu` (one pixel = one CUDA thread
there, one vector lane here). The loop order is Gaussian-outer, pixel-inner inside a 16x16 tile: `pack_entries`
writes one record per tile-list entry, and `composite_forward` / `composite_backward` walk each tile's list and, for
every entry, the tile rows its pixel box covers. One row is one call of `row_forward16` / `row_backward16`, or of
their 8-lane twins when the entry's columns fit in 8: Numba intrinsics that emit LLVM vector code, one `<16 x float>`
(or `<8 x float>`) per per-pixel quantity, kept in registers. Written as Numba loops over the 16 lanes, LLVM
vectorised each loop but wrapped it in run-time alias checks, a scalar remainder and spills to scratch arrays, and a
row cost about twice its arithmetic (`design.md`). At 100k Gaussians the rows of gradients and colours an entry 8
places further on are prefetched (`prefetch_row`): they are mostly out of the caches.
The backward pass sums each Gaussian's gradient over the tile's pixels lane by lane and once over the lanes at its
end (the CUDA kernel's warp reduction), and writes it once.

Floating point: float32 `exp` is Cephes' expf (range reduction to [-ln2/2, ln2/2], a degree-6 polynomial, 2^n put
into the exponent bits; about 1 ulp), float64 calls `llvm.exp` (libm), so float64 stays the exact reference check.
The instructions carry fast-math flags contract, reassoc, nsz and arcp (fused multiply-adds, reassociated sums) but
keep NaN and infinity semantics: a NaN sigma fails every test and its lane drops out. Float constants come in the
`cst` array of the data's dtype (`constants`) and pixel centres in `pxs` / `pys`, because Numba promotes a float32
value to float64 when it meets a Python float or an int: float32 inputs are composited in float32 as the CUDA
kernel and the torch twin do.

The row intrinsics and the kernels that inline them live in this one file on purpose: Numba's on-disk cache
(`cache=True`; next to this file, in the user's cache folder when the package folder is read-only, or in
`NUMBA_CACHE_DIR`) invalidates a kernel when its own source file changes, not when an intrinsic's file does.

Row arrays are C-contiguous: `T`, `tf_vt` [16, 16], `lastl` [16, 16] int32 (relative list positions),
`acc` / `buf` / `vo` [16, D, 16] (row, channel, lane), `csum` [D, 16], `gsum` [8, 16], `colors` [M, D], `px` [16]
(pixel centres of the tile's columns).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16
_FM = ("contract", "reassoc", "nsz", "arcp")
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


class _Vec:
    """IR helpers for one row window of `n` lanes: `<n x fty>` arithmetic with the kernels' fast-math flags."""

    def __init__(self, builder, fty: ir.Type, n: int):
        self.b, self.fty, self.n = builder, fty, n
        self.vt = ir.VectorType(fty, n)
        self.it = ir.VectorType(_I32, n)
        self.suffix = f"v{n}{'f32' if isinstance(fty, ir.FloatType) else 'f64'}"

    def splat(self, value: ir.Value) -> ir.Value:
        vt = ir.VectorType(value.type, self.n)
        one = self.b.insert_element(ir.Constant(vt, ir.Undefined), value, ir.Constant(_I32, 0))
        return self.b.shuffle_vector(one, ir.Constant(vt, ir.Undefined), ir.Constant(self.it, [0] * self.n))

    def const(self, x: float) -> ir.Value:
        return ir.Constant(self.vt, [x] * self.n)

    def _fm(self, ins: ir.Instruction) -> ir.Value:
        ins.flags.extend(_FM)
        return ins

    def add(self, a, b):
        return self._fm(self.b.fadd(a, b))

    def sub(self, a, b):
        return self._fm(self.b.fsub(a, b))

    def mul(self, a, b):
        return self._fm(self.b.fmul(a, b))

    def div(self, a, b):
        return self._fm(self.b.fdiv(a, b))

    def cmp(self, op: str, a, b):
        return self.b.fcmp_ordered(op, a, b)

    def sel(self, mask, a, b):
        return self.b.select(mask, a, b)

    def zero(self):
        return self.const(0.0)

    def call(self, name: str, args: list, ret: ir.Type | None = None):
        ret = self.vt if ret is None else ret
        fn = cgutils.get_or_insert_function(self.b.module, ir.FunctionType(ret, [a.type for a in args]), name)
        return self.b.call(fn, args)

    def ptr(self, data: ir.Value, offset: ir.Value, vt: ir.Type | None = None) -> ir.Value:
        """Pointer to the vector at element `offset` of an array's data."""
        return self.b.bitcast(self.b.gep(data, [offset]), (self.vt if vt is None else vt).as_pointer())

    def load(self, data, offset, vt=None):
        vt = self.vt if vt is None else vt
        return self.b.load(self.ptr(data, offset, vt), align=_align(vt.element))

    def store(self, value, data, offset):
        self.b.store(value, self.ptr(data, offset, value.type), align=_align(value.type.element))

    def exp(self, x):
        """exp(x) per lane: Cephes' float32 polynomial (module docstring), libm through `llvm.exp` for float64."""
        if not isinstance(self.fty, ir.FloatType):
            return self.call(f"llvm.exp.{self.suffix}", [x])
        x = self.sel(self.cmp(">", x, self.const(-87.0)), x, self.const(-87.0))
        x = self.sel(self.cmp("<", x, self.const(88.0)), x, self.const(88.0))
        n = self.add(self.mul(x, self.const(1.44269504088896341)), self.const(0.5))
        n = self.call(f"llvm.floor.{self.suffix}", [n])
        r = self.sub(self.sub(x, self.mul(n, self.const(0.693359375))), self.mul(n, self.const(-2.12194440e-4)))
        p = self.const(1.9875691500e-4)
        for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
            p = self.add(self.mul(p, r), self.const(c))
        p = self.add(self.add(self.mul(self.mul(p, r), r), r), self.const(1.0))
        k = self.b.add(self.b.fptosi(n, self.it), ir.Constant(self.it, [127] * self.n))
        two_n = self.b.bitcast(self.b.shl(k, ir.Constant(self.it, [23] * self.n)), self.vt)
        return self.mul(p, two_n)

    def any(self, mask) -> ir.Value:
        """Whether any lane of an `<n x i1>` mask is set."""
        return self.b.icmp_unsigned("!=", self.b.bitcast(mask, ir.IntType(self.n)), ir.Constant(ir.IntType(self.n), 0))


def _align(fty: ir.Type) -> int:
    return 8 if isinstance(fty, ir.DoubleType) or fty == _I64 else 4


def _data(context, builder, aryty, value) -> ir.Value:
    return context.make_array(aryty)(context, builder, value).data


def _check_arrays(dtype, **arrays) -> None:
    """Every array C-contiguous and of the data's dtype (`lastl`: int32)."""
    for name, ty in arrays.items():
        expected = types.int32 if name == "lastl" else dtype
        if not (isinstance(ty, types.Array) and ty.layout == "C" and ty.dtype == expected):
            raise TypeError(f"{name} must be a C-contiguous array of {expected}, got {ty}")


def _unpack(builder, tup, n):
    return [builder.extract_value(tup, i) for i in range(n)]


def _geometry(v: _Vec, px, fs):
    """dx, sigma, exp(-sigma), op * exp(-sigma) and alpha of one row: fs = (mx, cdy, ccy, hca, op, alpha_max)."""
    mx, cdy, ccy, hca, op, alpha_max = (v.splat(f) for f in fs)
    dx = v.sub(mx, px)
    sigma = v.add(v.mul(dx, v.add(v.mul(hca, dx), cdy)), ccy)
    e = v.exp(v.sub(v.zero(), sigma))
    oe = v.mul(op, e)
    alpha = v.sel(v.cmp("<", oe, alpha_max), oe, alpha_max)  # min(alpha_max, op e)
    return dx, sigma, e, oe, alpha


def _span_mask(v: _Vec, sigma, alpha, window, s_cut, alpha_min):
    """Lanes in the entry's column span whose sigma is in [0, s_cut] and alpha reaches alpha_min."""
    b = v.b
    xa, xb, s = (b.trunc(x, _I32) for x in window)
    lane = b.add(v.splat(s), ir.Constant(v.it, list(range(v.n))))  # tile columns of the window's lanes
    m = b.and_(b.icmp_signed(">=", lane, v.splat(xa)), b.icmp_signed("<=", lane, v.splat(xb)))
    m = b.and_(m, b.and_(v.cmp(">=", sigma, v.zero()), v.cmp("<=", sigma, v.splat(s_cut))))
    return b.and_(m, v.cmp(">=", alpha, v.splat(alpha_min)))


def _row_offset(builder, r, s):
    """Element offset of lane `s` of row `r` in a [16, 16] array."""
    return builder.add(builder.mul(r, ir.Constant(_I64, LANES)), s)


def _channel_offset(builder, r, k, n_ch, s):
    """Element offset of lane `s` of row `r`, channel `k` in a [16, D, 16] array."""
    return builder.add(builder.mul(builder.add(builder.mul(r, n_ch), k), ir.Constant(_I64, LANES)), s)


def _n_channels(context, builder, aryty, value):
    return cgutils.unpack_tuple(builder, context.make_array(aryty)(context, builder, value).shape, 2)[1]


def _make_row_forward(n: int):
    """`row_forward` over a window of `n` lanes (16: the whole row; 8: lanes [s, s + 8))."""

    @intrinsic
    def row_forward(typingctx, T, lastl, acc, colors, px, ints, floats):  # pragma: no cover - compiled
        dtype = colors.dtype
        _check_arrays(dtype, T=T, lastl=lastl, acc=acc, colors=colors, px=px)

        def codegen(context, builder, signature, args):
            aty = signature.args
            v = _Vec(builder, context.get_value_type(dtype), n)
            d_T, d_last, d_acc, d_col, d_px = (_data(context, builder, aty[i], args[i]) for i in range(5))
            g, r, il, xa, xb, s = _unpack(builder, args[5], 6)
            mx, cdy, ccy, hca, op, alpha_max, s_cut, alpha_min, t_min = _unpack(builder, args[6], 9)
            row = _row_offset(builder, r, s)
            _, sigma, _, _, alpha = _geometry(v, v.load(d_px, s), (mx, cdy, ccy, hca, op, alpha_max))
            Tp = v.load(d_T, row)
            next_t = v.mul(Tp, v.sub(v.const(1.0), alpha))
            ok = builder.and_(_span_mask(v, sigma, alpha, (xa, xb, s), s_cut, alpha_min), v.cmp(">", Tp, v.zero()))
            contrib = builder.and_(ok, v.cmp(">", next_t, v.splat(t_min)))
            v.store(v.sel(contrib, next_t, v.sel(ok, v.sub(v.zero(), Tp), Tp)), d_T, row)
            ll = v.load(d_last, row, v.it)
            v.store(v.sel(contrib, v.splat(builder.trunc(il, _I32)), ll), d_last, row)
            n_ch = _n_channels(context, builder, aty[3], args[3])
            # Skipping a row no pixel takes saves its channel loop, but the branch mispredicts: worth it for many
            # channels only (measured at D = 3: the forward 7-16 % faster without it).
            few = builder.icmp_signed("<=", n_ch, ir.Constant(_I64, 4))
            with builder.if_then(builder.or_(few, v.any(contrib))):
                vis = v.sel(contrib, v.mul(alpha, Tp), v.zero())
                col0 = builder.mul(g, n_ch)
                with cgutils.for_range(builder, n_ch) as loop:
                    k = loop.index
                    c = v.splat(builder.load(builder.gep(d_col, [builder.add(col0, k)])))
                    off = _channel_offset(builder, r, k, n_ch, s)
                    v.store(v.add(v.load(d_acc, off), v.mul(vis, c)), d_acc, off)
            return context.get_dummy_value()

        return types.none(T, lastl, acc, colors, px, ints, floats), codegen

    return row_forward


row_forward16, row_forward8 = _make_row_forward(16), _make_row_forward(8)
"""Composite one Gaussian over one tile row, front to back (`composite_forward`'s per-row step), on all 16 lanes
or on the 8 lanes [s, s + 8). ints = (g, r, il, xa, xb, s) int64: the Gaussian's row in `colors`, the tile row, its
relative list position, its column span and the window's first lane; floats = (mx, cdy, ccy, hca, op, alpha_max,
s_cut, alpha_min, t_min). Updates `T[r]` (negated when a pixel stops), `lastl[r]` and `acc[r]`."""


def _make_row_backward(n: int):
    """`row_backward` over a window of `n` lanes (16: the whole row; 8: lanes [s, s + 8))."""

    @intrinsic
    def row_backward(typingctx, T, tf_vt, lastl, vo, buf, csum, gsum, colors, px, ints,
                     floats):  # pragma: no cover - compiled
        dtype = colors.dtype
        _check_arrays(dtype, T=T, tf_vt=tf_vt, lastl=lastl, vo=vo, buf=buf, csum=csum, gsum=gsum, colors=colors,
                      px=px)

        def codegen(context, builder, signature, args):
            aty = signature.args
            v = _Vec(builder, context.get_value_type(dtype), n)
            d_T, d_tv, d_last, d_vo, d_buf, d_cs, d_gs, d_col, d_px = (
                _data(context, builder, aty[i], args[i]) for i in range(9))
            g, r, il, xa, xb, s = _unpack(builder, args[9], 6)
            mx, cdy, ccy, hca, op, alpha_max, s_cut, alpha_min, dy, ca, cb, cc = _unpack(builder, args[10], 12)
            row = _row_offset(builder, r, s)
            dx, sigma, e, oe, alpha = _geometry(v, v.load(d_px, s), (mx, cdy, ccy, hca, op, alpha_max))
            ok = _span_mask(v, sigma, alpha, (xa, xb, s), s_cut, alpha_min)
            ok = builder.and_(ok, builder.icmp_signed("<=", v.splat(builder.trunc(il, _I32)),
                                                      v.load(d_last, row, v.it)))
            with builder.if_then(v.any(ok)):
                one, zero = v.const(1.0), v.zero()
                ra = v.div(one, v.sub(one, alpha))
                Tr = v.load(d_T, row)
                tn = v.mul(Tr, ra)  # transmittance in front of this Gaussian
                v.store(v.sel(ok, tn, Tr), d_T, row)
                ra_m, tn_m, fac = v.sel(ok, ra, zero), v.sel(ok, tn, zero), v.sel(ok, v.mul(alpha, tn), zero)
                va0 = v.sel(ok, v.mul(v.sub(zero, v.load(d_tv, row)), ra), zero)
                e_m = v.sel(builder.and_(ok, v.cmp("<", oe, v.splat(alpha_max))), e, zero)
                n_ch = _n_channels(context, builder, aty[7], args[7])
                va = _channels_backward(v, (d_vo, d_buf, d_cs, d_col), (g, r, s, n_ch), va0, tn_m, ra_m, fac)
                _add_moments(v, d_gs, s, dx, v.splat(dy), va, e_m, (op, ca, cb, cc, cdy))
            return context.get_dummy_value()

        return types.none(T, tf_vt, lastl, vo, buf, csum, gsum, colors, px, ints, floats), codegen

    return row_backward


row_backward16, row_backward8 = _make_row_backward(16), _make_row_backward(8)
"""Gradients of one Gaussian over one tile row, back to front (`composite_backward`'s per-row step), on all 16
lanes or on the 8 lanes [s, s + 8). ints = (g, r, il, xa, xb, s) as for `row_forward16`; floats = (mx, cdy, ccy,
hca, op, alpha_max, s_cut, alpha_min, dy, ca, cb, cc). Recovers the transmittance in front of the Gaussian into
`T[r]`, adds its contribution to `buf[r]` (sum of alpha T c behind), and adds the row's lanes of dL/dcolour to
`csum` [D, 16] and of the eight sigma-gradient moments to `gsum` [8, 16] (dx^2, dx dy, dy^2, mean x, mean y, |x|,
|y|, opacity)."""


def _channels_backward(v: _Vec, data, index, va0, tn_m, ra_m, fac):
    """The colour channels of one row: dL/dalpha completed over them (returned), `buf` and `csum` updated."""
    d_vo, d_buf, d_cs, d_col = data
    g, r, s, n_ch = index
    b = v.b
    va_slot = cgutils.alloca_once(b, v.vt)
    b.store(va0, va_slot)
    col0 = b.mul(g, n_ch)
    with cgutils.for_range(b, n_ch) as loop:
        k = loop.index
        c = v.splat(b.load(b.gep(d_col, [b.add(col0, k)])))
        off, ks = _channel_offset(b, r, k, n_ch, s), b.add(b.mul(k, ir.Constant(_I64, LANES)), s)
        vk, bk = v.load(d_vo, off), v.load(d_buf, off)
        b.store(v.add(b.load(va_slot), v.mul(v.sub(v.mul(c, tn_m), v.mul(bk, ra_m)), vk)), va_slot)
        v.store(v.add(bk, v.mul(c, fac)), d_buf, off)
        v.store(v.add(v.load(d_cs, ks), v.mul(fac, vk)), d_cs, ks)
    return b.load(va_slot)


def _add_moments(v: _Vec, d_gs, s, dx, dy, va, e_m, scalars) -> None:
    """gsum[t, s:s + n] += the row's lanes of the eight sigma-gradient moments."""
    op, ca, cb, cc, cdy = (v.splat(x) for x in scalars)
    v_sigma = v.mul(v.sub(v.zero(), v.mul(op, e_m)), va)
    gx = v.mul(v_sigma, v.add(v.mul(ca, dx), cdy))
    gy = v.mul(v_sigma, v.add(v.mul(cb, dx), v.mul(cc, dy)))
    fabs = f"llvm.fabs.{v.suffix}"
    terms = (v.mul(v.mul(v_sigma, dx), dx), v.mul(v.mul(v_sigma, dx), dy), v.mul(v.mul(v_sigma, dy), dy), gx, gy,
             v.call(fabs, [gx]), v.call(fabs, [gy]), v.mul(e_m, va))
    for t, term in enumerate(terms):
        off = v.b.add(ir.Constant(_I64, t * LANES), s)
        v.store(v.add(v.load(d_gs, off), term), d_gs, off)


def _check_rows(name: str, arr) -> None:
    if not (isinstance(arr, types.Array) and arr.ndim == 2 and arr.layout == "C"
            and arr.dtype in (types.float32, types.float64)):
        raise TypeError(f"{name} needs a C-contiguous 2D float array, got {arr}")


def _row_start(context, builder, aryty, arr, row) -> ir.Value:
    """Pointer to `arr[row, 0]`."""
    ary = context.make_array(aryty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [row, context.get_constant(types.intp, 0)])


@intrinsic
def prefetch_row(typingctx, arr, row):  # pragma: no cover - compiled
    """Ask the cache for `arr[row, 0]` (a C-contiguous 2D float array; `llvm.prefetch`, for writing, high locality)."""
    _check_rows("prefetch_row", arr)

    def codegen(context, builder, signature, args):
        ptr = _row_start(context, builder, signature.args[0], args[0], args[1])
        i8p = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(_I32, 1), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return types.none(arr, row), codegen


@intrinsic
def lane_sum(typingctx, arr, row):  # pragma: no cover - compiled
    """Sum of `arr[row, 0:16]` (a C-contiguous 2D float array) as one vector reduction (`llvm.vector.reduce.fadd`).

    A Gaussian's 8 gradient moments and D colour gradients are summed over the 16 lanes at its end; written as
    loops, those sums compiled to scalar adds and cost 10 % of the backward pass.
    """
    _check_rows("lane_sum", arr)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        start = _row_start(context, builder, aryty, args[0], args[1])
        fty = context.get_value_type(aryty.dtype)
        vty = ir.VectorType(fty, 16)
        vec = builder.load(builder.bitcast(start, vty.as_pointer()), align=aryty.dtype.bitwidth // 8)
        name = "llvm.vector.reduce.fadd.v16" + ("f32" if aryty.dtype == types.float32 else "f64")
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(fty, [fty, vty]), name)
        return builder.call(fn, [ir.Constant(fty, 0.0), vec], fastmath=("reassoc",))

    return arr.dtype(arr, row), codegen


# Order of the entries of `cst` (see `constants`).
_HALF, _ALPHA_MIN, _ALPHA_MAX, _T_MIN, _ONE, _ZERO = range(6)


def constants(dtype: np.dtype, alpha_min: float, alpha_max: float, t_min: float) -> np.ndarray:
    """The kernels' float constants in the data's dtype (float32 rounding of 1/255 etc. as in torch and CUDA)."""
    return np.array([0.5, alpha_min, alpha_max, t_min, 1.0, 0.0], dtype=dtype)


@njit(cache=True, inline="always")
def _span(centre, half_width, lo, hi):  # pragma: no cover - compiled
    """Pixels [first, last] of [lo, hi) whose centre x + 0.5 lies within `half_width` of `centre`."""
    first_f = np.ceil(centre - half_width - 0.5)
    last_f = np.floor(centre + half_width - 0.5)
    first = lo if not first_f > lo else (hi if first_f >= hi else int(first_f))
    last = hi - 1 if not last_f < hi - 1 else (lo - 1 if last_f < lo else int(last_f))
    return first, last


_FASTMATH = set(_FM)  # the kernels' own arithmetic carries the row code's flags


@njit(cache=True, inline="always")
def _tile_box(tile, tile_w, tile_h, width, height):  # pragma: no cover - compiled
    """Camera and pixel box [x0, x1) x [y0, y1) of a flat tile index."""
    cam = tile // (tile_h * tile_w)
    rem = tile % (tile_h * tile_w)
    x0, y0 = (rem % tile_w) * 16, (rem // tile_w) * 16
    return cam, x0, y0, min(x0 + 16, width), min(y0 + 16, height)


@njit(nogil=True, cache=True, error_model="numpy")
def pack_entries(offsets, ids, tile_order, order, means2d, conics, opacities, extents, width, height, tile_w,
                 tile_h, unit, n_units, rec, span):  # pragma: no cover - compiled
    """One record per tile-list entry, so that both compositing passes read their Gaussians in list order.

    `means2d` [C*N, 2], `conics` [C*N, 3], `opacities` [C*N] are indexed by flat ids, `order[slot]` the flat id of
    each slot in `ids`, `extents` [S, 3] by slot. Entry i gets `rec[i]` = (mean x, mean y, conic a, b, c, opacity,
    sigma cut-off, 0) in the compositing dtype and `span[i]` = (first, last) pixel column relative to its tile's left
    edge and (first, last) image row where its alpha can reach 1/255 in that tile (`pixel_extents`); an entry with
    no such pixel gets an empty column range (first > last). The tiles of `tile_order` are dealt round-robin to
    `n_units` units, as in the compositing.
    """
    for j in range(unit, tile_order.shape[0], n_units):
        tile = tile_order[j]
        cam, x0, y0, x1, y1 = _tile_box(tile, tile_w, tile_h, width, height)
        end = offsets[tile + 1]
        for i in range(offsets[tile], end):
            g = ids[i]
            f = order[g]
            ahead = min(i + 8, end - 1)  # an entry further on: its rows into the cache
            prefetch_row(means2d, order[ids[ahead]])
            prefetch_row(conics, order[ids[ahead]])
            prefetch_row(extents, ids[ahead])
            rec[i, 0], rec[i, 1] = means2d[f, 0], means2d[f, 1]
            rec[i, 2], rec[i, 3], rec[i, 4], rec[i, 5] = conics[f, 0], conics[f, 1], conics[f, 2], opacities[f]
            xa, xb, ya, yb = 1, 0, y0, y0 - 1
            if extents[g, 0] >= 0:
                xa, xb = _span(np.float64(rec[i, 0]), extents[g, 0], x0, x1)
                ya, yb = _span(np.float64(rec[i, 1]), extents[g, 1], y0, y1)
                xa, xb = xa - x0, xb - x0
                if ya > yb:
                    xa, xb = 1, 0
            span[i, 0], span[i, 1], span[i, 2], span[i, 3] = xa, xb, ya, yb
            rec[i, 6], rec[i, 7] = extents[g, 2], 0.0


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_FASTMATH)
def composite_forward(offsets, ids, order, tile_order, rec, span, colors, pxs, pys, width, height, tile_w, tile_h,
                      unit, n_units, cst, out, t_final, last):  # pragma: no cover - compiled
    """Front-to-back compositing of every tile (rasterize_to_pixels_fwd.cu); writes `out`, `t_final`, `last`.

    `colors` [C*N, D] (any D) by flat id, `order` [S] the flat id of each slot of `ids`. `out` [C*H*W, D] gets
    sum_k alpha_k T_k c_k, `t_final` [C*H*W] the transmittance left, `last` [C*H*W] the
    position in `ids` of the last contributing Gaussian (-1: none). Busy tiles, heaviest first in `tile_order`,
    are dealt round-robin to `n_units` units; this call does unit `unit`. A pixel stops, as in CUDA, at the first
    Gaussian that would take its transmittance to `t_min` or below (that one is left out); a stopped pixel keeps its
    transmittance negated, so one array holds both.
    """
    D = colors.shape[1]
    dt = colors.dtype
    half, alpha_min, alpha_max, t_min = cst[_HALF], cst[_ALPHA_MIN], cst[_ALPHA_MAX], cst[_T_MIN]
    one, zero = cst[_ONE], cst[_ZERO]
    T = np.empty((16, 16), dt)  # [row, lane]
    acc = np.empty((16, D, 16), dt)  # [row, channel, lane]
    lastl = np.empty((16, 16), np.int32)  # last contributor, relative to the tile's first list entry
    px = np.empty(16, dt)
    for j in range(unit, tile_order.shape[0], n_units):
        tile = tile_order[j]
        cam, x0, y0, x1, y1 = _tile_box(tile, tile_w, tile_h, width, height)
        for xi in range(16):
            px[xi] = pxs[min(x0 + xi, width - 1)]
        T[:] = one
        acc[:] = zero
        lastl[:] = -1
        start = offsets[tile]
        for i in range(start, offsets[tile + 1]):
            xa, xb = np.int64(span[i, 0]), np.int64(span[i, 1])
            if xa > xb:
                continue
            g = np.int64(order[ids[i]])  # flat id: row of `colors` (and of the gradients)
            prefetch_row(colors, np.int64(order[ids[min(i + 8, offsets[tile + 1] - 1)]]))  # an entry further on
            mx, my, ca, cb, cc, op, s_cut = rec[i, 0], rec[i, 1], rec[i, 2], rec[i, 3], rec[i, 4], rec[i, 5], rec[i, 6]
            ya, yb, il = span[i, 2], span[i, 3], np.int64(i - start)
            hca = half * ca
            s = min(xa, np.int64(8))
            narrow = xb < s + 8  # the span fits in 8 lanes: half-width vectors
            for y in range(ya, yb + 1):
                dy = my - pys[y]
                cdy, ccy = cb * dy, half * cc * dy * dy
                fs = (mx, cdy, ccy, hca, op, alpha_max, s_cut, alpha_min, t_min)
                if narrow:
                    row_forward8(T, lastl, acc, colors, px, (g, np.int64(y - y0), il, xa, xb, s), fs)
                else:
                    row_forward16(T, lastl, acc, colors, px, (g, np.int64(y - y0), il, xa, xb, np.int64(0)), fs)
            if (i - start) % 32 == 31 and _all_stopped(T, x1 - x0, y1 - y0, zero):
                break
        base = cam * height * width
        for y in range(y0, y1):
            for x in range(x0, x1):
                q, r, xi = base + y * width + x, y - y0, x - x0
                for k in range(D):
                    out[q, k] = acc[r, k, xi]
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
def composite_backward(offsets, ids, order, tile_order, rec, span, colors, pxs, pys, width, height, tile_w, tile_h,
                       unit, n_units, cst, t_final, last, v_out, v_t, with_colors, with_abs, v_geom,
                       v_colors):  # pragma: no cover - compiled
    """Back-to-front gradients of every tile (rasterize_to_pixels_bwd.cu), summed per parallel unit.

    `v_out` [C*H*W, D] and `v_t` [C*H*W] are the gradients of the composited sum and of the final transmittance.
    This call (unit `unit` of `n_units`) adds its Gaussians' gradients into its own `v_geom` [C*N, 8] (mean x, y,
    conic a, b, c, opacity, |mean x|, |mean y|) and, when `with_colors`, `v_colors` [C*N, D], both by flat id
    (`order[ids[i]]`, as `colors`); the caller sums over
    units (deterministic: the tiles of a unit are fixed by `tile_order`).

    As the CUDA kernel, each pixel's transmittance in front of a Gaussian is recovered from the final one by
    dividing by (1 - alpha) on the way back, and `buf` holds sum_{j behind} alpha_j T_j c_j. With
    dL/dT_final = v_t: dL/dalpha_k = sum_d (c_kd T_k - buf_d / (1 - alpha_k)) v_out_d - v_t T_final / (1 - alpha_k).
    A Gaussian's gradient sums over its rows lane by lane (`gsum`) and over the lanes once at its end.
    """
    D = colors.shape[1]
    dt = colors.dtype
    half, alpha_min, alpha_max, one, zero = cst[_HALF], cst[_ALPHA_MIN], cst[_ALPHA_MAX], cst[_ONE], cst[_ZERO]
    T = np.empty((16, 16), dt)  # [row, lane]
    tf_vt = np.empty((16, 16), dt)  # T_final * v_t
    buf = np.empty((16, D, 16), dt)  # [row, channel, lane]
    vo = np.empty((16, D, 16), dt)
    lastl = np.empty((16, 16), np.int32)
    px = np.empty(16, dt)
    gsum = np.empty((8, 16), dt)  # sigma-gradient moments dx^2, dx dy, dy^2, mean x, y, |x|, |y|, opacity
    csum = np.empty((D, 16), dt)
    for j in range(unit, tile_order.shape[0], n_units):
        tile = tile_order[j]
        cam, x0, y0, x1, y1 = _tile_box(tile, tile_w, tile_h, width, height)
        for xi in range(16):
            px[xi] = pxs[min(x0 + xi, width - 1)]
        start = offsets[tile]
        buf[:] = zero
        max_last = _load_tile(cam * height * width, start, x0, y0, x1, y1, width, t_final, last, v_out, v_t, one,
                              T, tf_vt, lastl, vo)
        for i in range(max_last, start - 1, -1):
            xa, xb = np.int64(span[i, 0]), np.int64(span[i, 1])
            if xa > xb:
                continue
            g = np.int64(order[ids[i]])  # flat id: row of `colors` (and of the gradients)
            _prefetch_gradients(np.int64(order[ids[max(i - 8, start)]]), colors, with_colors, v_geom, v_colors)
            mx, my, ca, cb, cc, op, s_cut = rec[i, 0], rec[i, 1], rec[i, 2], rec[i, 3], rec[i, 4], rec[i, 5], rec[i, 6]
            ya, yb, il = span[i, 2], span[i, 3], np.int64(i - start)
            hca = half * ca
            gsum[:] = zero
            csum[:] = zero
            s = min(xa, np.int64(8))
            narrow = xb < s + 8  # the span fits in 8 lanes: half-width vectors
            for y in range(ya, yb + 1):
                dy = my - pys[y]
                cdy, ccy = cb * dy, half * cc * dy * dy
                fs = (mx, cdy, ccy, hca, op, alpha_max, s_cut, alpha_min, dy, ca, cb, cc)
                r = np.int64(y - y0)
                if narrow:
                    row_backward8(T, tf_vt, lastl, vo, buf, csum, gsum, colors, px, (g, r, il, xa, xb, s), fs)
                else:
                    row_backward16(T, tf_vt, lastl, vo, buf, csum, gsum, colors, px, (g, r, il, xa, xb, np.int64(0)),
                                   fs)
            _add_gaussian_grads(g, gsum, csum, half, with_colors, with_abs, v_geom, v_colors)


@njit(cache=True, inline="always")
def _load_tile(base, start, x0, y0, x1, y1, width, t_final, last, v_out, v_t, one, T, tf_vt, lastl,
               vo):  # pragma: no cover - compiled
    """Fill the backward pass's per-tile arrays from the forward's outputs; returns the tile's last list position."""
    zero = one - one
    lastl[:] = -1  # pixels outside the image never pass the `il <= lastl` test
    T[:] = one
    tf_vt[:] = zero
    vo[:] = zero
    max_last = np.int64(-1)
    for y in range(y0, y1):
        for x in range(x0, x1):
            q, r, xi = base + y * width + x, y - y0, x - x0
            T[r, xi] = t_final[q]
            tf_vt[r, xi] = t_final[q] * v_t[q]
            lastl[r, xi] = last[q] - start if last[q] >= 0 else -1
            max_last = max(max_last, last[q])
            for k in range(v_out.shape[1]):
                vo[r, k, xi] = v_out[q, k]
    return max_last


@njit(cache=True, inline="always")
def _prefetch_gradients(g, colors, with_colors, v_geom, v_colors):  # pragma: no cover - compiled
    """Ask the cache for the rows of flat id g that the backward pass reads and writes, a few entries ahead: at 100k
    Gaussians they are mostly out of the caches, and the prefetch made a training step 7-13 % faster."""
    prefetch_row(v_geom, g)
    prefetch_row(colors, g)
    if with_colors:
        prefetch_row(v_colors, g)


@njit(cache=True, inline="always")
def _add_gaussian_grads(g, gsum, csum, half, with_colors, with_abs, v_geom, v_colors):  # pragma: no cover
    """Sum one Gaussian's per-lane moments over the lanes into its rows of `v_geom` [C*N, 8] and `v_colors`."""
    v_geom[g, 0] += lane_sum(gsum, 3)
    v_geom[g, 1] += lane_sum(gsum, 4)
    v_geom[g, 2] += half * lane_sum(gsum, 0)
    v_geom[g, 3] += lane_sum(gsum, 1)
    v_geom[g, 4] += half * lane_sum(gsum, 2)
    v_geom[g, 5] += lane_sum(gsum, 7)
    if with_abs:
        v_geom[g, 6] += lane_sum(gsum, 5)
        v_geom[g, 7] += lane_sum(gsum, 6)
    if with_colors:
        for k in range(v_colors.shape[1]):
            v_colors[g, k] += lane_sum(csum, k)
