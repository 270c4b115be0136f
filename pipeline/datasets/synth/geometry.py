"""Analytic primitives and a vectorised ray caster (one ray per pixel, nearest hit wins).

Every furniture part is a convex primitive given by a rigid frame and half sizes: a box, a cylinder along its local z
axis, or an ellipsoid. In the primitive's *unit* frame (local coordinates divided by the half sizes) these become the
cube [-1, 1]^3, the unit cylinder and the unit sphere, so one ray-interval routine per kind serves every size. The
room is the inside of an axis-aligned box: rays start inside it and hit the face where they leave it.

Directions need not be unit length: rays built as ``R_world_cam @ K^-1 [u, v, 1]`` make the hit parameter ``t`` the
z-depth of the hit in that camera, which is exactly what the depth maps store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float64, Int8, Int32

BOX, CYLINDER, ELLIPSOID = 0, 1, 2
KIND_NAMES = ("box", "cylinder", "ellipsoid")
ROOM_FACES = 6
"""Room faces, in this order: -x wall, +x wall, -y wall, +y wall, floor (z = 0), ceiling (z = top)."""
MISS = -1
NEAR = 1e-6
"""Hits closer than this (in ray parameter) are ignored, so a ray never hits the surface it starts on."""

_TINY = 1e-12


@dataclass(frozen=True)
class Primitives:
    """P convex primitives, grouped into objects so rays can skip whole objects by their bounding box."""

    kinds: Int8[np.ndarray, "P"]
    """BOX, CYLINDER (axis = local z) or ELLIPSOID."""
    centers: Float64[np.ndarray, "P 3"]
    """Centre of each primitive in the world frame (metres)."""
    rotations: Float64[np.ndarray, "P 3 3"]
    """R_world_local: columns are the primitive's local axes in the world frame."""
    half_sizes: Float64[np.ndarray, "P 3"]
    """Half extents along the local axes (box half sides; cylinder radii x, y and half height; ellipsoid semi-axes)."""
    groups: Int32[np.ndarray, "P"]
    """Object index of each primitive; the parts of one object are culled together."""

    @property
    def count(self) -> int:
        return int(self.kinds.shape[0])


@dataclass(frozen=True)
class Room:
    """The inside of an axis-aligned box; rays start inside and end on one of its faces."""

    lo: Float64[np.ndarray, "3"]
    hi: Float64[np.ndarray, "3"]
    has_ceiling: bool
    """Without a ceiling, rays that leave through the top hit nothing (void)."""


def _safe_inverse(d: np.ndarray) -> np.ndarray:
    # A zero direction component would give 0 * inf = nan in the slab test; a tiny value of the same sign gives the
    # correct limit (the slab interval is then (-huge, +huge) or empty).
    return 1.0 / np.where(np.abs(d) < _TINY, np.where(d < 0, -_TINY, _TINY), d)


# The fast path works on rays stored as rows of coordinates, o and d of shape (3, N): numpy reductions over a
# length-3 last axis are slow, element-wise operations on contiguous rows are not.

def _to_unit_frame(o: np.ndarray, d: np.ndarray, center: np.ndarray, rotation: np.ndarray,
                   half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # R^T (x - c) / h for every column x: world -> local -> unit frame.
    scale = rotation.T / half[:, None]
    return scale @ o - (scale @ center)[:, None], scale @ d


def _max3(a: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(a[0], a[1]), a[2])


def _min3(a: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(a[0], a[1]), a[2])


def _slab(o: np.ndarray, d_inv: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    t1 = (lo - o) * d_inv
    t2 = (hi - o) * d_inv
    return _max3(np.minimum(t1, t2)), _min3(np.maximum(t1, t2))


def _interval_box(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _slab(o, _safe_inverse(d), -1.0, 1.0)


def _interval_cylinder(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Infinite unit cylinder x^2 + y^2 <= 1 intersected with the slab |z| <= 1.
    a = d[0] * d[0] + d[1] * d[1]
    b = o[0] * d[0] + o[1] * d[1]
    c = o[0] * o[0] + o[1] * o[1] - 1.0
    disc = b * b - a * c
    parallel = a < _TINY
    sq = np.sqrt(np.maximum(disc, 0.0))
    a_safe = np.where(parallel, 1.0, a)
    ts1 = np.where(parallel, np.where(c <= 0, -np.inf, np.inf), (-b - sq) / a_safe)
    ts2 = np.where(parallel, np.where(c <= 0, np.inf, -np.inf), (-b + sq) / a_safe)
    empty = ~parallel & (disc < 0)
    ts1 = np.where(empty, np.inf, ts1)
    ts2 = np.where(empty, -np.inf, ts2)
    inv = _safe_inverse(d[2])
    tz1 = (-1.0 - o[2]) * inv
    tz2 = (1.0 - o[2]) * inv
    return np.maximum(ts1, np.minimum(tz1, tz2)), np.minimum(ts2, np.maximum(tz1, tz2))


def _interval_ellipsoid(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    c = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - 1.0
    disc = b * b - a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    empty = disc < 0
    return np.where(empty, np.inf, (-b - sq) / a), np.where(empty, -np.inf, (-b + sq) / a)


_INTERVALS = {BOX: _interval_box, CYLINDER: _interval_cylinder, ELLIPSOID: _interval_ellipsoid}


def room_exit(origins: Float64[np.ndarray, "N 3"], dirs: Float64[np.ndarray, "N 3"],
              room: Room) -> tuple[Float64[np.ndarray, "N"], Int32[np.ndarray, "N"]]:
    """Ray parameter and face index (0..5, see ROOM_FACES) where each ray leaves the room."""
    o, d = origins.T, dirs.T
    inv = _safe_inverse(d)
    t_far = np.where(d < 0, (room.lo[:, None] - o) * inv, (room.hi[:, None] - o) * inv)  # [3, N] exit per axis
    axis = np.where(t_far[0] <= t_far[1], np.where(t_far[0] <= t_far[2], 0, 2), np.where(t_far[1] <= t_far[2], 1, 2))
    t = _min3(t_far)
    face = (2 * axis + (np.take_along_axis(d, axis[None], axis=0)[0] >= 0)).astype(np.int32)
    if not room.has_ceiling:
        t = np.where(face == 5, np.inf, t)
    return t, face


def _group_bounds(prims: Primitives) -> tuple[np.ndarray, np.ndarray]:
    """World axis-aligned bounds of every group, from the bounds of its primitives' oriented boxes."""
    extent = np.abs(prims.rotations) @ prims.half_sizes[:, :, None]  # [P, 3, 1] world half extent of each part
    lo_p = prims.centers - extent[:, :, 0]
    hi_p = prims.centers + extent[:, :, 0]
    n_groups = int(prims.groups.max()) + 1 if prims.count else 0
    lo = np.full((n_groups, 3), np.inf)
    hi = np.full((n_groups, 3), -np.inf)
    np.minimum.at(lo, prims.groups, lo_p)
    np.maximum.at(hi, prims.groups, hi_p)
    return lo - 1e-6, hi + 1e-6


def cast_rays(origins: Float64[np.ndarray, "N 3"], dirs: Float64[np.ndarray, "N 3"], prims: Primitives,
              room: Room) -> tuple[Float64[np.ndarray, "N"], Int32[np.ndarray, "N"]]:
    """Nearest hit of every ray: ray parameter ``t`` (inf on a miss) and hit id.

    Ids ``0..P-1`` are primitives, ``P + f`` is room face ``f``, ``MISS`` (-1) is nothing (only without ceiling).
    A ray that starts inside a primitive does not see that primitive. Rays are tested against an object's parts
    only where they enter the object's bounding box before the best hit so far, which keeps the cost close to one
    slab test per object for most rays.
    """
    t_best, face = room_exit(origins, dirs, room)
    ids = np.where(np.isfinite(t_best), prims.count + face, MISS).astype(np.int32)
    if prims.count == 0:
        return t_best, ids
    o_all, d_all = np.ascontiguousarray(origins.T), np.ascontiguousarray(dirs.T)
    inv_all = _safe_inverse(d_all)
    lo, hi = _group_bounds(prims)
    for group in range(lo.shape[0]):
        members = np.flatnonzero(prims.groups == group)
        if members.size == 0:
            continue
        t_in, t_out = _slab(o_all, inv_all, lo[group][:, None], hi[group][:, None])
        rays = np.flatnonzero((t_in <= t_out) & (t_out > NEAR) & (t_in < t_best))
        if rays.size == 0:
            continue
        o, d = o_all[:, rays], d_all[:, rays]
        t_sub, id_sub = t_best[rays], ids[rays]
        for p in members:
            o_u, d_u = _to_unit_frame(o, d, prims.centers[p], prims.rotations[p], prims.half_sizes[p])
            t_near, t_far = _INTERVALS[int(prims.kinds[p])](o_u, d_u)
            hit = (t_near <= t_far) & (t_near > NEAR) & (t_near < t_sub)
            t_sub = np.where(hit, t_near, t_sub)
            id_sub = np.where(hit, p, id_sub)
        t_best[rays], ids[rays] = t_sub, id_sub
    return t_best, ids


def surface_normals(points: Float64[np.ndarray, "N 3"], ids: Int32[np.ndarray, "N"], prims: Primitives,
                    room: Room) -> Float64[np.ndarray, "N 3"]:
    """Unit outward normal (inward for room faces) at hit points; zero where the ray missed."""
    normals = np.zeros_like(points)
    room_hit = ids >= prims.count
    face = ids[room_hit] - prims.count
    axis, positive = face // 2, face % 2 == 1
    normals[np.flatnonzero(room_hit), axis] = np.where(positive, -1.0, 1.0)
    hit = np.flatnonzero((ids >= 0) & ~room_hit)
    if hit.size == 0:
        return normals
    p = ids[hit]
    rot, half = prims.rotations[p], prims.half_sizes[p]
    u = np.einsum("nji,nj->ni", rot, points[hit] - prims.centers[p]) / half  # unit-frame coordinates
    n_u = u.copy()  # ellipsoid: the gradient of |u|^2
    kinds = prims.kinds[p]
    box = kinds == BOX
    if box.any():
        ub = u[box]
        axis_b = np.argmax(np.abs(ub), axis=1)
        nb = np.zeros_like(ub)
        nb[np.arange(len(ub)), axis_b] = np.sign(ub[np.arange(len(ub)), axis_b])
        n_u[box] = nb
    cyl = kinds == CYLINDER
    if cyl.any():
        uc = u[cyl]
        cap = np.abs(uc[:, 2]) > np.hypot(uc[:, 0], uc[:, 1])
        n_u[cyl] = np.where(cap[:, None], np.stack([0 * uc[:, 2], 0 * uc[:, 2], np.sign(uc[:, 2])], 1),
                            uc * np.array([1.0, 1.0, 0.0]))
    n_world = np.einsum("nij,nj->ni", rot, n_u / half)  # inverse-transpose of the scaling keeps normals normal
    normals[hit] = n_world / np.maximum(np.linalg.norm(n_world, axis=1, keepdims=True), _TINY)
    return normals


def local_coordinates(points: Float64[np.ndarray, "N 3"], ids: Int32[np.ndarray, "N"],
                      prims: Primitives) -> Float64[np.ndarray, "N 3"]:
    """Hit points in the metric local frame of the primitive they lie on (room faces and misses: world frame).

    Textures are functions of these coordinates, so a surface point has the same colour in every view.
    """
    out = points.copy()
    hit = np.flatnonzero((ids >= 0) & (ids < prims.count))
    p = ids[hit]
    out[hit] = np.einsum("nji,nj->ni", prims.rotations[p], points[hit] - prims.centers[p])
    return out


# --- slow, obviously-correct twin ------------------------------------------------------------------------------------

def _candidates_unit(kind: int, o: tuple[float, float, float], d: tuple[float, float, float]) -> list[float]:
    """Every ray parameter where the ray crosses the unit primitive's surface (by enumerating its faces)."""
    out: list[float] = []
    inside = 1.0 + 1e-9
    if kind == BOX:
        for axis in range(3):
            if d[axis] == 0.0:
                continue
            for side in (-1.0, 1.0):
                t = (side - o[axis]) / d[axis]
                q = [o[i] + t * d[i] for i in range(3)]
                if all(abs(q[i]) <= inside for i in range(3) if i != axis):
                    out.append(t)
    elif kind == CYLINDER:
        a = d[0] ** 2 + d[1] ** 2
        b = 2 * (o[0] * d[0] + o[1] * d[1])
        c = o[0] ** 2 + o[1] ** 2 - 1
        if a > 0 and b * b - 4 * a * c >= 0:
            for sign in (-1.0, 1.0):
                t = (-b + sign * math.sqrt(b * b - 4 * a * c)) / (2 * a)
                if abs(o[2] + t * d[2]) <= inside:
                    out.append(t)
        if d[2] != 0.0:
            for side in (-1.0, 1.0):
                t = (side - o[2]) / d[2]
                if (o[0] + t * d[0]) ** 2 + (o[1] + t * d[1]) ** 2 <= inside:
                    out.append(t)
    else:
        a = sum(x * x for x in d)
        b = 2 * sum(x * y for x, y in zip(o, d))
        c = sum(x * x for x in o) - 1
        if b * b - 4 * a * c >= 0:
            out += [(-b + s * math.sqrt(b * b - 4 * a * c)) / (2 * a) for s in (-1.0, 1.0)]
    return out


def _cast_rays(origins: np.ndarray, dirs: np.ndarray, prims: Primitives, room: Room) -> tuple[np.ndarray, np.ndarray]:
    """Reference twin of `cast_rays`: one ray and one primitive at a time, in plain Python floats."""
    n = origins.shape[0]
    t_out = np.full(n, np.inf)
    id_out = np.full(n, MISS, dtype=np.int32)
    for r in range(n):
        o_w = [float(x) for x in origins[r]]
        d_w = [float(x) for x in dirs[r]]
        best, best_id = math.inf, MISS
        for face in range(ROOM_FACES):
            axis, bound = face // 2, (room.hi if face % 2 else room.lo)[face // 2]
            if d_w[axis] == 0.0 or (face == 5 and not room.has_ceiling):
                continue
            t = (float(bound) - o_w[axis]) / d_w[axis]
            q = [o_w[i] + t * d_w[i] for i in range(3)]
            on_face = all(room.lo[i] - 1e-9 <= q[i] <= room.hi[i] + 1e-9 for i in range(3) if i != axis)
            if t > NEAR and on_face and t < best:
                best, best_id = t, prims.count + face
        for p in range(prims.count):
            rot, c, h = prims.rotations[p], prims.centers[p], prims.half_sizes[p]
            o_u = tuple(float(sum(rot[j, i] * (o_w[j] - c[j]) for j in range(3)) / h[i]) for i in range(3))
            d_u = tuple(float(sum(rot[j, i] * d_w[j] for j in range(3)) / h[i]) for i in range(3))
            # A convex surface is entered at its smallest crossing; a ray starting inside a part sees nothing of it.
            crossings = _candidates_unit(int(prims.kinds[p]), o_u, d_u)
            if crossings and NEAR < min(crossings) < best:
                best, best_id = min(crossings), p
        t_out[r], id_out[r] = best, best_id
    return t_out, id_out

