"""Furniture, props and wall items built from boxes, cylinders and ellipsoids.

Each builder returns an `ObjectSpec` in the object's own frame: x across the object, y from back (-y) to front (+y),
z up from its base (z = 0 stands on the floor or on the supporting surface). Parts never share a visible face plane
(panels protrude by a few millimetres or more), so the nearest hit, and therefore every label, is well defined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

from panst3r_splat.pipeline.datasets.synth.geometry import BOX, CYLINDER, ELLIPSOID
from panst3r_splat.pipeline.datasets.synth.materials import MaterialBank
from panst3r_splat.pipeline.datasets.synth.textures import STRIPES

Placement = Literal["wall", "free"]
_EYE = np.eye(3)
_Z_TO_X = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
"""Rotation taking the local z axis to x (a lying cylinder along the object's width)."""


@dataclass(frozen=True)
class Part:
    kind: int
    center: tuple[float, float, float]
    half: tuple[float, float, float]
    slot: int
    """Index into the object's `materials`."""
    rotation: np.ndarray = field(default_factory=lambda: _EYE)


@dataclass(frozen=True)
class Surface:
    """A horizontal rectangle (object frame) on which props can stand, with the free height above it."""

    z: float
    x: tuple[float, float]
    y: tuple[float, float]
    clearance: float


@dataclass
class ObjectSpec:
    class_name: str
    parts: list[Part]
    materials: list[int]
    placement: Placement = "free"
    surfaces: list[Surface] = field(default_factory=list)
    kind: str = ""
    """Builder variant (for scene.json), e.g. 'round' for a round table."""

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of all parts in the object frame."""
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for p in self.parts:
            extent = np.abs(p.rotation) @ np.array(p.half)
            lo = np.minimum(lo, np.array(p.center) - extent)
            hi = np.maximum(hi, np.array(p.center) + extent)
        return lo, hi


def box(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, slot: int) -> Part:
    """A box from its bounds."""
    return Part(BOX, ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2),
                slot)


def cyl(cx: float, cy: float, z0: float, z1: float, rx: float, ry: float, slot: int) -> Part:
    """An upright (elliptic) cylinder."""
    return Part(CYLINDER, (cx, cy, (z0 + z1) / 2), (rx, ry, (z1 - z0) / 2), slot)


def rod_x(x0: float, x1: float, cy: float, cz: float, r: float, slot: int) -> Part:
    """A horizontal cylinder along x."""
    return Part(CYLINDER, ((x0 + x1) / 2, cy, cz), (r, r, (x1 - x0) / 2), slot, _Z_TO_X)


def ell(cx: float, cy: float, cz: float, ax: float, ay: float, az: float, slot: int) -> Part:
    """An ellipsoid."""
    return Part(ELLIPSOID, (cx, cy, cz), (ax, ay, az), slot)


Builder = Callable[[np.random.Generator, MaterialBank, float], ObjectSpec]


def table(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    h = rng.uniform(0.7, 0.78)
    mats = [bank.new(rng, "wood" if rng.random() < 0.7 else "stone"), bank.new(rng, "wood" if rng.random() < 0.5 else "metal")]
    if rng.random() < 0.3:
        r = rng.uniform(0.4, 0.6) * s
        parts = [cyl(0, 0, h - 0.04, h, r, r, 0), cyl(0, 0, 0.03, h - 0.04, 0.04, 0.04, 1),
                 cyl(0, 0, 0, 0.03, 0.3 * r + 0.1, 0.3 * r + 0.1, 1)]
        return ObjectSpec("table", parts, mats, "free", [Surface(h, (-0.6 * r, 0.6 * r), (-0.6 * r, 0.6 * r), 0.6)],
                          "round")
    w, d, t = rng.uniform(0.8, 1.8) * s, rng.uniform(0.6, 1.0) * s, rng.uniform(0.03, 0.05)
    lt, inset = rng.uniform(0.035, 0.06), rng.uniform(0.03, 0.08)
    parts = [box(-w / 2, w / 2, -d / 2, d / 2, h - t, h, 0)]
    round_legs = rng.random() < 0.4
    for sx in (-1, 1):
        for sy in (-1, 1):
            cx, cy = sx * (w / 2 - inset - lt / 2), sy * (d / 2 - inset - lt / 2)
            parts.append(cyl(cx, cy, 0, h - t, lt / 2, lt / 2, 1) if round_legs else
                         box(cx - lt / 2, cx + lt / 2, cy - lt / 2, cy + lt / 2, 0, h - t, 1))
    return ObjectSpec("table", parts, mats, "free", [Surface(h, (-w / 2 + 0.05, w / 2 - 0.05),
                                                             (-d / 2 + 0.05, d / 2 - 0.05), 0.6)], "rect")


def chair(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    sw, sd = rng.uniform(0.4, 0.5) * s, rng.uniform(0.4, 0.5) * s
    sh, st, lt = rng.uniform(0.42, 0.48), rng.uniform(0.03, 0.06), rng.uniform(0.025, 0.04)
    back_h, bt = rng.uniform(0.35, 0.5), rng.uniform(0.03, 0.05)
    frame = bank.new(rng, ("wood", "metal", "color", "dark")[rng.integers(4)])
    seat = frame if rng.random() < 0.4 else bank.new(rng, "fabric")
    parts = [box(-sw / 2, sw / 2, -sd / 2, sd / 2, sh - st, sh, 1)]
    for sx in (-1, 1):
        for sy in (-1, 1):
            cx, cy = sx * (sw / 2 - lt / 2 - 0.01), sy * (sd / 2 - lt / 2 - 0.01)
            parts.append(box(cx - lt / 2, cx + lt / 2, cy - lt / 2, cy + lt / 2, 0, sh - st, 0))
    if rng.random() < 0.7:
        parts.append(box(-sw / 2, sw / 2, -sd / 2, -sd / 2 + bt, sh + 0.004, sh + back_h, 1))
    else:  # two posts and a top rail
        for sx in (-1, 1):
            parts.append(box(sx * sw / 2 - lt / 2 * (1 + sx), sx * sw / 2 + lt / 2 * (1 - sx), -sd / 2, -sd / 2 + bt,
                             sh + 0.004, sh + back_h, 0))
        parts.append(box(-sw / 2 + lt, sw / 2 - lt, -sd / 2, -sd / 2 + bt, sh + back_h - 0.12, sh + back_h - 0.005, 1))
    return ObjectSpec("chair", parts, [frame, seat], "free")


def sofa(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    w, d = rng.uniform(1.5, 2.4) * s, rng.uniform(0.8, 1.0) * s
    seat_h, back_h = rng.uniform(0.38, 0.45), rng.uniform(0.75, 0.9)
    arm_w, arm_h, back_t = rng.uniform(0.12, 0.22), rng.uniform(0.55, 0.65), rng.uniform(0.15, 0.25)
    mats = [bank.new(rng, "fabric"), bank.new(rng, "fabric" if rng.random() < 0.4 else "dark")]
    cushion = mats[0] if rng.random() < 0.6 else bank.new(rng, "fabric")
    mats.append(cushion)
    parts = [box(-w / 2 + arm_w, w / 2 - arm_w, -d / 2 + back_t, d / 2, 0.05, seat_h - 0.12, 0),
             box(-w / 2, w / 2, -d / 2, -d / 2 + back_t, 0.05, back_h, 0),
             box(-w / 2, -w / 2 + arm_w, -d / 2 + back_t, d / 2, 0.05, arm_h, 0),
             box(w / 2 - arm_w, w / 2, -d / 2 + back_t, d / 2, 0.05, arm_h, 0)]
    n = int(rng.integers(2, 4))
    inner = w - 2 * arm_w
    for i in range(n):
        x0 = -inner / 2 + i * inner / n + 0.006
        parts.append(box(x0, x0 + inner / n - 0.012, -d / 2 + back_t + 0.006, d / 2 - 0.008, seat_h - 0.12, seat_h, 2))
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(cyl(sx * (w / 2 - 0.06), sy * (d / 2 - 0.06), 0, 0.05, 0.025, 0.025, 1))
    return ObjectSpec("sofa", parts, mats, "wall")


def bed(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    w, length = rng.uniform(0.9, 1.8) * s, rng.uniform(1.9, 2.1)
    frame_h, mat_t = rng.uniform(0.25, 0.35), rng.uniform(0.15, 0.25)
    head_h, head_t = rng.uniform(0.8, 1.1), rng.uniform(0.05, 0.08)
    mats = [bank.new(rng, "wood" if rng.random() < 0.6 else "fabric"), bank.new(rng, "white"),
            bank.new(rng, "fabric"), bank.new(rng, "white" if rng.random() < 0.6 else "fabric")]
    y0 = -length / 2
    top = frame_h + mat_t
    parts = [box(-w / 2, w / 2, y0 + head_t, length / 2, 0, frame_h, 0),
             box(-w / 2 + 0.02, w / 2 - 0.02, y0 + head_t + 0.02, length / 2 - 0.02, frame_h, top, 1),
             box(-w / 2 - 0.015, w / 2 + 0.015, y0 + 0.45 * length, length / 2 + 0.012, frame_h + 0.4 * mat_t,
                 top + 0.025, 2),
             box(-w / 2 - 0.02, w / 2 + 0.02, y0, y0 + head_t, 0, head_h, 0)]
    n_pillows = 1 if w < 1.2 else 2
    for i in range(n_pillows):
        cx = 0.0 if n_pillows == 1 else (-1 + 2 * i) * w / 4
        parts.append(ell(cx, y0 + head_t + 0.22, top + 0.06, min(0.3, w / (2 * n_pillows) - 0.04), 0.16, 0.08, 3))
    return ObjectSpec("bed", parts, mats, "wall")


def _doors(w: float, z0: float, z1: float, y_front: float, door_w: float, slot: int, handle_slot: int,
           rng: np.random.Generator) -> list[Part]:
    """Door panels protruding 2 cm from a front face at `y_front`, each with a handle."""
    n = max(1, int(round(w / door_w)))
    parts = []
    for i in range(n):
        x0 = -w / 2 + i * w / n + 0.005
        x1 = x0 + w / n - 0.01
        parts.append(box(x0, x1, y_front, y_front + 0.02, z0, z1, slot))
        hx = x1 - 0.06 if i % 2 == 0 else x0 + 0.06
        hz = z0 + rng.uniform(0.6, 0.85) * (z1 - z0)
        parts.append(box(hx - 0.01, hx + 0.01, y_front + 0.02, y_front + 0.045, hz - 0.06, hz + 0.06, handle_slot))
    return parts


def cabinet(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    w, d = rng.uniform(0.6, 1.6) * s, rng.uniform(0.4, 0.6)
    h = rng.uniform(1.5, 2.0) if rng.random() < 0.2 else rng.uniform(0.6, 1.1)
    mats = [bank.new(rng, ("wood", "white", "color")[rng.integers(3)]), bank.new(rng, ("wood", "white", "color")[rng.integers(3)]),
            bank.new(rng, ("metal", "dark")[rng.integers(2)]), bank.new(rng, ("wood", "stone")[rng.integers(2)])]
    parts = [box(-w / 2, w / 2, -d / 2, d / 2 - 0.02, 0, h, 0)]
    parts += _doors(w, 0.04, h - 0.03, d / 2 - 0.02, rng.uniform(0.35, 0.55), 1, 2, rng)
    top = h
    if rng.random() < 0.5 and h < 1.2:
        top = h + 0.025
        parts.append(box(-w / 2 - 0.012, w / 2 + 0.012, -d / 2, d / 2 + 0.015, h, top, 3))
    return ObjectSpec("cabinet", parts, mats, "wall", [Surface(top, (-w / 2 + 0.04, w / 2 - 0.04),
                                                               (-d / 2 + 0.04, d / 2 - 0.06), 0.7)])


def counter(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    w, d, h = rng.uniform(1.4, 3.0) * s, rng.uniform(0.55, 0.65), rng.uniform(0.86, 0.92)
    mats = [bank.new(rng, ("wood", "white", "color")[rng.integers(3)]), bank.new(rng, ("wood", "white", "color")[rng.integers(3)]),
            bank.new(rng, ("metal", "dark")[rng.integers(2)]), bank.new(rng, "stone"), bank.new(rng, "dark")]
    parts = [box(-w / 2, w / 2, -d / 2, d / 2 - 0.04, 0.1, h - 0.04, 0),
             box(-w / 2 + 0.02, w / 2 - 0.02, -d / 2, d / 2 - 0.1, 0, 0.1, 4),
             box(-w / 2 - 0.01, w / 2 + 0.01, -d / 2, d / 2 + 0.02, h - 0.04, h, 3)]
    parts += _doors(w, 0.12, h - 0.07, d / 2 - 0.04, rng.uniform(0.4, 0.6), 1, 2, rng)
    return ObjectSpec("counter", parts, mats, "wall", [Surface(h, (-w / 2 + 0.05, w / 2 - 0.05),
                                                               (-d / 2 + 0.05, d / 2 - 0.05), 0.6)])


def shelves(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    w, d, h = rng.uniform(0.6, 1.2) * s, rng.uniform(0.28, 0.4), rng.uniform(1.0, 2.0)
    t = rng.uniform(0.02, 0.03)
    mats = [bank.new(rng, ("wood", "white", "color")[rng.integers(3)]), bank.new(rng, ("wood", "white", "dark")[rng.integers(3)])]
    parts = [box(-w / 2, -w / 2 + t, -d / 2, d / 2, 0, h, 0), box(w / 2 - t, w / 2, -d / 2, d / 2, 0, h, 0),
             box(-w / 2 + t, w / 2 - t, -d / 2, -d / 2 + 0.012, 0, h, 1)]
    n = max(2, int(round(h / rng.uniform(0.3, 0.4))))
    levels = [0.04 + k * (h - 0.04 - t) / n for k in range(n + 1)]
    surfaces = []
    for k, z in enumerate(levels):
        parts.append(box(-w / 2 + t, w / 2 - t, -d / 2 + 0.012, d / 2 - 0.004, z, z + t, 0))
        if k < n:
            surfaces.append(Surface(z + t, (-w / 2 + t + 0.01, w / 2 - t - 0.01), (-d / 2 + 0.03, d / 2 - 0.03),
                                    levels[k + 1] - z - t - 0.01))
    return ObjectSpec("shelves", parts, mats, "wall", surfaces)


def refrigerator(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    w, d, h = rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.75), rng.uniform(1.6, 1.9)
    mats = [bank.new(rng, ("white", "metal", "dark")[rng.integers(3)]), bank.new(rng, "metal")]
    split = h * rng.uniform(0.6, 0.7)
    parts = [box(-w / 2, w / 2, -d / 2, d / 2 - 0.03, 0, h, 0),
             box(-w / 2 + 0.005, w / 2 - 0.005, d / 2 - 0.03, d / 2, 0.05, split - 0.006, 0),
             box(-w / 2 + 0.005, w / 2 - 0.005, d / 2 - 0.03, d / 2, split + 0.006, h - 0.01, 0)]
    hx = w / 2 - 0.07
    parts += [cyl(hx, d / 2 + 0.03, split - 0.45, split - 0.08, 0.012, 0.012, 1),
              cyl(hx, d / 2 + 0.03, split + 0.08, split + 0.3, 0.012, 0.012, 1)]
    return ObjectSpec("refrigerator", parts, mats, "wall")


def television(rng: np.random.Generator, bank: MaterialBank, s: float, *, wall: bool = False) -> ObjectSpec:
    w = rng.uniform(0.7, 1.3) * s if wall else rng.uniform(0.5, 1.0) * s
    ht, t = w * rng.uniform(0.55, 0.6), rng.uniform(0.03, 0.06)
    mats = [bank.new(rng, "dark"), bank.new(rng, "screen")]
    z0 = 0.0 if wall else 0.08
    y0 = 0.0 if wall else -t / 2
    parts = [box(-w / 2, w / 2, y0, y0 + t, z0, z0 + ht, 0),
             box(-w / 2 + 0.02, w / 2 - 0.02, y0 + t, y0 + t + 0.004, z0 + 0.02, z0 + ht - 0.02, 1)]
    if not wall:
        parts += [box(-0.15 * w, 0.15 * w, -0.1, 0.1, 0, 0.02, 0), box(-0.03, 0.03, -0.02, 0.02, 0.02, z0 + 0.01, 0)]
    return ObjectSpec("television", parts, mats, "wall" if wall else "free", kind="wall" if wall else "stand")


def toilet(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    mats = [bank.new(rng, "white"), bank.new(rng, ("white", "wood", "dark")[rng.integers(3)])]
    k = rng.uniform(0.9, 1.1)
    parts = [cyl(0, 0.05, 0, 0.25, 0.12 * k, 0.16 * k, 0), cyl(0, 0.08, 0.25, 0.4, 0.19 * k, 0.25 * k, 0),
             cyl(0, 0.08, 0.4, 0.43, 0.2 * k, 0.26 * k, 1),
             box(-0.2 * k, 0.2 * k, -0.3 * k, -0.12 * k, 0.4, 0.78, 0),
             box(-0.21 * k, 0.21 * k, -0.305 * k, -0.11 * k, 0.78, 0.8, 0)]
    return ObjectSpec("toilet", parts, mats, "wall")


def sink(rng: np.random.Generator, bank: MaterialBank, s: float, *, on_counter: bool = False) -> ObjectSpec:
    mats = [bank.new(rng, "white"), bank.new(rng, "metal"), bank.new(rng, "stone")]
    bw, bd, bh = rng.uniform(0.2, 0.3), rng.uniform(0.17, 0.22), rng.uniform(0.1, 0.15)
    z0 = 0.0 if on_counter else rng.uniform(0.72, 0.78)
    parts = [box(-bw, bw, -bd, bd, z0, z0 + bh, 0), box(-bw + 0.03, bw - 0.03, -bd + 0.05, bd - 0.03, z0 + bh,
                                                        z0 + bh + 0.003, 2),
             cyl(0, -bd + 0.025, z0 + bh, z0 + bh + 0.12, 0.015, 0.015, 1),
             box(-0.012, 0.012, -bd + 0.02, -bd + 0.11, z0 + bh + 0.1, z0 + bh + 0.125, 1)]
    if not on_counter:
        parts.append(cyl(0, -bd + 0.08, 0, z0, 0.08, 0.08, 0))
    return ObjectSpec("sink", parts, mats, "free" if on_counter else "wall", kind="counter" if on_counter else "pedestal")


def bag(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    mats = [bank.new(rng, "color"), bank.new(rng, ("dark", "color")[rng.integers(2)])]
    w, d, h = rng.uniform(0.15, 0.25) * s, rng.uniform(0.08, 0.13) * s, rng.uniform(0.25, 0.45) * s
    if rng.random() < 0.4:  # backpack
        return ObjectSpec("bag", [ell(0, 0, h / 2, w, d * 1.2, h / 2, 0), ell(0, d * 0.9, h * 0.4, w * 0.7, d * 0.6, h * 0.25, 1)],
                          mats, "free", kind="backpack")
    ht = 0.012
    parts = [box(-w, w, -d, d, 0, h, 0),
             box(-w * 0.5, -w * 0.5 + ht * 2, -ht, ht, h, h + 0.12, 1), box(w * 0.5 - ht * 2, w * 0.5, -ht, ht, h, h + 0.12, 1),
             box(-w * 0.5, w * 0.5, -ht, ht, h + 0.12, h + 0.12 + ht * 2, 1)]
    return ObjectSpec("bag", parts, mats, "free", kind="tote")


def person(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    k = rng.uniform(0.9, 1.1)
    mats = [bank.new(rng, "fabric"), bank.new(rng, "color"), bank.new(rng, "skin")]
    leg, hip, shoulder = 0.85 * k, 0.1 * k, 1.45 * k
    parts = [cyl(-hip, 0, 0, leg, 0.07, 0.08, 0), cyl(hip, 0, 0, leg, 0.07, 0.08, 0),
             box(-0.2 * k, 0.2 * k, -0.12, 0.12, leg - 0.02, shoulder, 1),
             cyl(-0.26 * k, 0, leg - 0.05, shoulder - 0.03, 0.05, 0.05, 1), cyl(0.26 * k, 0, leg - 0.05, shoulder - 0.03, 0.05, 0.05, 1),
             cyl(0, 0, shoulder, shoulder + 0.06, 0.045, 0.045, 2), ell(0, 0.01, shoulder + 0.16, 0.1, 0.11, 0.125, 2)]
    return ObjectSpec("person", parts, mats, "free")


def lamp(rng: np.random.Generator, bank: MaterialBank, s: float, *, table_lamp: bool = False) -> ObjectSpec:
    mats = [bank.new(rng, ("metal", "dark", "wood")[rng.integers(3)]), bank.new(rng, "shade")]
    k = 0.3 if table_lamp else 1.0
    h, r = rng.uniform(1.3, 1.7) * k, rng.uniform(0.15, 0.25) * (0.6 if table_lamp else 1.0)
    parts = [cyl(0, 0, 0, 0.02, r * 0.7, r * 0.7, 0), cyl(0, 0, 0.02, h - 0.1 * k, 0.015, 0.015, 0),
             cyl(0, 0, h - 0.25 * max(k, 0.6), h, r, r, 1)]
    return ObjectSpec("lamp", parts, mats, "free", kind="table" if table_lamp else "floor")


def otherprop(rng: np.random.Generator, bank: MaterialBank, s: float, *, max_height: float = 2.0) -> ObjectSpec:
    choice = rng.integers(4)
    mats = [bank.new(rng, "color"), bank.new(rng, ("color", "stone", "white")[rng.integers(3)])]
    if choice == 0:  # a stack of books
        parts, z = [], 0.0
        for i in range(int(rng.integers(1, 5))):
            bw, bd, bt = rng.uniform(0.1, 0.16), rng.uniform(0.07, 0.12), rng.uniform(0.02, 0.05)
            dx = rng.uniform(-0.01, 0.01)
            if z + bt > max_height:
                break
            parts.append(box(dx - bw, dx + bw, -bd, bd, z, z + bt, i % 2))
            z += bt + 0.001
        return ObjectSpec("otherprop", parts or [box(-0.1, 0.1, -0.08, 0.08, 0, 0.02, 0)], mats, "free", kind="books")
    if choice == 1:  # a vase with a ball of foliage or a bowl
        h = min(rng.uniform(0.12, 0.3), max_height * 0.6)
        r = rng.uniform(0.05, 0.1)
        return ObjectSpec("otherprop", [cyl(0, 0, 0, h, r, r, 0), ell(0, 0, h + r * 0.8, r * 1.6, r * 1.6, r * 1.2, 1)],
                          mats, "free", kind="plant")
    if choice == 2:  # a box
        w, d, h = rng.uniform(0.08, 0.25), rng.uniform(0.08, 0.2), min(rng.uniform(0.08, 0.35), max_height)
        return ObjectSpec("otherprop", [box(-w, w, -d, d, 0, h, 0), box(-w - 0.005, w + 0.005, -d - 0.005, d + 0.005, h,
                                                                       h + 0.01, 1)], mats, "free", kind="box")
    r = rng.uniform(0.04, 0.09)
    h = min(rng.uniform(0.08, 0.2), max_height)
    return ObjectSpec("otherprop", [cyl(0, 0, 0, h, r, r, 0), ell(0, 0, h, r * 0.9, r * 0.9, r * 0.4, 1)], mats, "free",
                      kind="jar")


def floor_prop(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    """An otherprop standing on the floor: a potted plant or a storage box, larger than table props."""
    mats = [bank.new(rng, ("stone", "white", "color")[rng.integers(3)]), bank.new(rng, "fabric")]
    if rng.random() < 0.5:
        h, r = rng.uniform(0.25, 0.45), rng.uniform(0.12, 0.2)
        return ObjectSpec("otherprop", [cyl(0, 0, 0, h, r, r, 0), ell(0, 0, h + r * 1.5, r * 1.8, r * 1.8, r * 2.2, 1)],
                          mats, "free", kind="plant")
    w, d, h = rng.uniform(0.2, 0.4), rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.5)
    return ObjectSpec("otherprop", [box(-w, w, -d, d, 0, h, 0), box(-w - 0.01, w + 0.01, -d - 0.01, d + 0.01, h, h + 0.02, 1)],
                      mats, "free", kind="storage")


def door(rng: np.random.Generator, bank: MaterialBank, s: float) -> ObjectSpec:
    w, h, t = rng.uniform(0.78, 0.95), rng.uniform(2.0, 2.1), rng.uniform(0.03, 0.045)
    mats = [bank.new(rng, ("wood", "white", "color")[rng.integers(3)]), bank.new(rng, ("white", "wood")[rng.integers(2)]),
            bank.new(rng, "metal")]
    f = rng.uniform(0.05, 0.08)
    parts = [box(-w / 2, w / 2, 0, t, 0, h, 0),
             box(-w / 2 - f, -w / 2, 0, t + 0.02, 0, h + f, 1), box(w / 2, w / 2 + f, 0, t + 0.02, 0, h + f, 1),
             box(-w / 2, w / 2, 0, t + 0.02, h, h + f, 1),
             ell(w / 2 - 0.08, t + 0.045, 1.0, 0.028, 0.028, 0.028, 2),
             box(w / 2 - 0.088, w / 2 - 0.072, t, t + 0.025, 0.992, 1.008, 2)]
    return ObjectSpec("door", parts, mats, "wall")


def window(rng: np.random.Generator, bank: MaterialBank, s: float) -> tuple[ObjectSpec, tuple[float, float, float]]:
    """A window (glass, frame, sill) on the wall plane y = 0, and its (half width, bottom, top) for curtains."""
    w, z0 = rng.uniform(0.4, 0.8), rng.uniform(0.8, 1.0)
    z1 = rng.uniform(1.9, 2.2)
    mats = [bank.new(rng, "glass"), bank.new(rng, ("white", "wood", "dark")[rng.integers(3)])]
    f, t = rng.uniform(0.04, 0.07), rng.uniform(0.03, 0.05)
    parts = [box(-w, w, 0, 0.015, z0, z1, 0),
             box(-w - f, -w, 0, t, z0, z1, 1), box(w, w + f, 0, t, z0, z1, 1),
             box(-w - f, w + f, 0, t, z1, z1 + f, 1), box(-w - f - 0.03, w + f + 0.03, 0, t + 0.1, z0 - 0.03, z0, 1),
             box(-0.02, 0.02, 0.015, t - 0.008, z0, z1, 1), box(-w, w, 0.015, t - 0.008, (z0 + z1) / 2 - 0.02,
                                                                (z0 + z1) / 2 + 0.02, 1)]
    return ObjectSpec("window", parts, mats, "wall"), (w + f, z0, z1)


def curtain(rng: np.random.Generator, bank: MaterialBank, window_half: float, top: float) -> ObjectSpec:
    """Two curtain panels and a rod framing a window of half width `window_half` whose frame ends at `top`."""
    # Vertical folds: stripes across x.
    mats = [bank.new(rng, "fabric", pattern=STRIPES, axis=0), bank.new(rng, ("metal", "wood", "dark")[rng.integers(3)])]
    panel = rng.uniform(0.2, 0.4)
    y0 = rng.uniform(0.13, 0.16)
    z0, z1 = rng.uniform(0.02, 0.6), top + rng.uniform(0.12, 0.2)
    parts = [box(-window_half - panel + 0.08, -window_half + 0.08, y0, y0 + 0.04, z0, z1, 0),
             box(window_half - 0.08, window_half + panel - 0.08, y0, y0 + 0.04, z0, z1, 0),
             rod_x(-window_half - panel, window_half + panel, y0 + 0.02, z1 + 0.03, 0.015, 1)]
    return ObjectSpec("curtain", parts, mats, "wall")


FLOOR_BUILDERS: dict[str, Builder] = {
    "table": table, "chair": chair, "sofa": sofa, "bed": bed, "cabinet": cabinet, "counter": counter,
    "shelves": shelves, "refrigerator": refrigerator, "toilet": toilet, "sink": sink, "bag": bag, "person": person,
    "lamp": lamp, "otherprop": floor_prop,
}
"""Builders of pieces that stand on the floor, by class name."""

FLOOR_WEIGHTS: dict[str, float] = {
    "table": 1.2, "chair": 1.2, "sofa": 0.8, "bed": 0.6, "cabinet": 0.8, "counter": 0.4, "shelves": 0.6,
    "refrigerator": 0.5, "toilet": 0.4, "sink": 0.4, "bag": 0.8, "person": 0.3, "lamp": 0.3, "otherprop": 0.3,
}
"""Relative frequency of each floor piece (thing classes about half of the mass; tables bring chairs)."""
