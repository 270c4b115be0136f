"""Rooms: a box with floor, walls and ceiling, wall items (doors, windows, curtains, wall televisions), furniture on
the floor placed without overlap, and props on supporting surfaces; compiled into one `World` for the ray caster."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from jaxtyping import Float32, Float64, Int32, UInt8, UInt16

from panst3r_splat.configs.synth import SynthConfig
from panst3r_splat.core.class_table import CLASS_BY_NAME, THING_IDS
from panst3r_splat.pipeline.datasets.synth import furniture as fu
from panst3r_splat.pipeline.datasets.synth.geometry import ROOM_FACES, Primitives, Room
from panst3r_splat.pipeline.datasets.synth.materials import MaterialBank
from panst3r_splat.pipeline.datasets.synth.textures import NOISE_TABLE_SIZE, Lighting, Materials

WALL_NORMALS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
"""Inward normal (x, y) of the four walls, in the order of the room faces -x, +x, -y, +y."""
_MAX_FLOOR_COVER = 0.45
"""Stop adding furniture once footprints cover this fraction of the floor (cameras need room to stand)."""


@dataclass(frozen=True)
class PlacedObject:
    """One object of the scene (a furniture piece, a prop or a wall item) as written to scene.json."""

    class_name: str
    class_id: int
    instance_id: int
    """Scene-wide instance id for things (1, 2, ...), 0 for stuff."""
    kind: str
    position: tuple[float, float, float]
    """World position of the object's frame origin (centre of its base)."""
    yaw: float
    """Rotation about the world z axis (radians); the object's front (+y) faces (-sin yaw, cos yaw)."""
    size: tuple[float, float, float]
    """Extent of its bounding box in its own frame (metres)."""
    support: int
    """Index of the object it stands on, -1 for the floor or a wall."""


@dataclass(frozen=True)
class World:
    """Everything the renderer needs. Hit ids 0..P-1 are primitives, P..P+5 the room faces (see geometry)."""

    room: Room
    primitives: Primitives
    semantics: UInt8[np.ndarray, "P6"]
    """Class id per hit id."""
    instances: UInt16[np.ndarray, "P6"]
    """Instance id per hit id (0 for stuff)."""
    material_ids: Int32[np.ndarray, "P6"]
    materials: Materials
    lighting: Lighting
    noise_table: Float32[np.ndarray, "T"]
    objects: tuple[PlacedObject, ...]
    object_lo: Float64[np.ndarray, "G 3"]
    """World bounding box of each object (same order as `objects`), used to keep cameras out of furniture."""
    object_hi: Float64[np.ndarray, "G 3"]


def _rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _footprint(spec: fu.ObjectSpec, position: np.ndarray, yaw: float, margin: float) -> np.ndarray:
    """Corners (4, 2) of the object's bounding rectangle on the floor, grown by `margin`."""
    lo, hi = spec.bounds()
    local = np.array([[lo[0] - margin, lo[1] - margin], [hi[0] + margin, lo[1] - margin],
                      [hi[0] + margin, hi[1] + margin], [lo[0] - margin, hi[1] + margin]])
    return local @ _rot_z(yaw)[:2, :2].T + position[:2]


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quadrilaterals (corners in order)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for nx, ny in np.stack([-edges[:, 1], edges[:, 0]], axis=1):
            pa, pb = a @ (nx, ny), b @ (nx, ny)
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


@dataclass
class _Layout:
    """Mutable state while a room is being furnished."""

    size: np.ndarray
    bank: MaterialBank
    specs: list[fu.ObjectSpec] = field(default_factory=list)
    poses: list[tuple[np.ndarray, float]] = field(default_factory=list)
    supports: list[int] = field(default_factory=list)
    footprints: list[np.ndarray] = field(default_factory=list)
    wall_spans: list[list[tuple[float, float]]] = field(default_factory=lambda: [[], [], [], []])
    floor_area: float = 0.0

    def inside(self, corners: np.ndarray, margin: float) -> bool:
        half = self.size[:2] / 2 - margin
        return bool(np.all(np.abs(corners) <= half))

    def free(self, corners: np.ndarray) -> bool:
        return not any(_overlap(corners, other) for other in self.footprints)

    def add(self, spec: fu.ObjectSpec, position: np.ndarray, yaw: float, support: int = -1,
            footprint: np.ndarray | None = None) -> int:
        self.specs.append(spec)
        self.poses.append((position, yaw))
        self.supports.append(support)
        if footprint is not None:
            self.footprints.append(footprint)
            lo, hi = spec.bounds()
            self.floor_area += float((hi[0] - lo[0]) * (hi[1] - lo[1]))
        return len(self.specs) - 1


def _wall_frame(size: np.ndarray, wall: int) -> tuple[np.ndarray, float, float]:
    """Centre (x, y) of a wall, the yaw that turns an object's front into the room, and the wall's length."""
    n = WALL_NORMALS[wall]
    yaw = math.atan2(-n[0], n[1])
    center = -n * size[:2] / 2
    length = size[1] if wall < 2 else size[0]
    return center, yaw, float(length)


def _place_on_wall(layout: _Layout, rng: np.random.Generator, spec: fu.ObjectSpec, *, gap: float, z: float,
                   floor: bool, tries: int = 25) -> int | None:
    """Put an object's back against a random wall; floor pieces must not overlap others, wall items must not share
    a stretch of wall with other wall items."""
    lo, hi = spec.bounds()
    for _ in range(tries):
        wall = int(rng.integers(4))
        center, yaw, length = _wall_frame(layout.size, wall)
        u_lo, u_hi = -length / 2 + 0.05 - lo[0], length / 2 - 0.05 - hi[0]
        if u_hi <= u_lo:
            continue
        u = rng.uniform(u_lo, u_hi)
        tangent = _rot_z(yaw)[:2, 0]
        n = WALL_NORMALS[wall]
        position = np.array([*(center + tangent * u + n * (gap - lo[1])), z])
        span = (u + lo[0], u + hi[0])
        if floor:
            corners = _footprint(spec, position, yaw, 0.04)
            if not (layout.inside(corners, 0.0) and layout.free(corners)):
                continue
            return layout.add(spec, position, yaw, footprint=corners)
        if any(span[0] < b + 0.15 and a < span[1] + 0.15 for a, b in layout.wall_spans[wall]):
            continue
        layout.wall_spans[wall].append(span)
        index = layout.add(spec, position, yaw)
        if spec.class_name == "door":  # keep the floor in front of a door clear
            clear = fu.ObjectSpec("door", [fu.box(lo[0], hi[0], 0, 0.9, 0, 2, 0)], [])
            layout.footprints.append(_footprint(clear, position, yaw, 0.0))
        return index
    return None


def _place_free(layout: _Layout, rng: np.random.Generator, spec: fu.ObjectSpec, tries: int = 25) -> int | None:
    for _ in range(tries):
        half = layout.size[:2] / 2 - 0.3
        position = np.array([rng.uniform(-half[0], half[0]), rng.uniform(-half[1], half[1]), 0.0])
        yaw = (rng.integers(4) * math.pi / 2 + rng.normal(0, 0.08)) if rng.random() < 0.6 else rng.uniform(-math.pi, math.pi)
        corners = _footprint(spec, position, float(yaw), 0.05)
        if layout.inside(corners, 0.05) and layout.free(corners):
            return layout.add(spec, position, float(yaw), footprint=corners)
    return None


def _chairs_around(layout: _Layout, rng: np.random.Generator, table_index: int, count: int, s: float) -> int:
    """Up to `count` chairs facing a table, all sharing one chair design's materials (a dining set)."""
    table = layout.specs[table_index]
    position, yaw = layout.poses[table_index]
    lo, hi = table.bounds()
    proto_state = rng.integers(1 << 31)
    slots = [(0.0, hi[1], math.pi, 0.0), (0.0, lo[1], 0.0, 0.0), (hi[0], 0.0, math.pi / 2, 1.0),
             (lo[0], 0.0, -math.pi / 2, 1.0)]
    if hi[0] - lo[0] > 1.3:  # a long table seats two per long side
        slots = [(-(hi[0] - lo[0]) / 4, hi[1], math.pi, 0.0), ((hi[0] - lo[0]) / 4, hi[1], math.pi, 0.0),
                 (-(hi[0] - lo[0]) / 4, lo[1], 0.0, 0.0), ((hi[0] - lo[0]) / 4, lo[1], 0.0, 0.0)] + slots[2:]
    placed = 0
    for k in rng.permutation(len(slots)):
        if placed >= count:
            break
        x, y, rel_yaw, _ = slots[int(k)]
        chair = fu.chair(np.random.default_rng(int(proto_state)), layout.bank, s)  # same design for the whole set
        c_lo, c_hi = chair.bounds()
        out = np.array([-math.sin(rel_yaw), math.cos(rel_yaw)])  # chair front direction in the table frame
        local = np.array([x, y]) - out * (c_hi[1] + rng.uniform(0.04, 0.15))
        world = position[:2] + _rot_z(yaw)[:2, :2] @ local
        chair_yaw = yaw + rel_yaw + rng.normal(0, 0.1)
        chair_pos = np.array([world[0], world[1], 0.0])
        corners = _footprint(chair, chair_pos, chair_yaw, 0.03)
        if layout.inside(corners, 0.05) and layout.free(corners):
            layout.add(chair, chair_pos, chair_yaw, footprint=corners)
            placed += 1
    return placed


def _wall_items(layout: _Layout, rng: np.random.Generator, cfg: SynthConfig) -> None:
    n_items = int(rng.integers(cfg.wall_items[0], cfg.wall_items[1] + 1))
    doors = 0
    for _ in range(n_items):
        r = rng.random()
        if r < 0.35 and doors < 2:
            if _place_on_wall(layout, rng, fu.door(rng, layout.bank, 1.0), gap=0.0, z=0.0, floor=False) is not None:
                doors += 1
        elif r < 0.8:
            spec, (half, _, top) = fu.window(rng, layout.bank, 1.0)
            index = _place_on_wall(layout, rng, spec, gap=0.0, z=0.0, floor=False)
            if index is not None and rng.random() < 0.6:
                position, yaw = layout.poses[index]
                layout.add(fu.curtain(rng, layout.bank, half, top), position, yaw)
        else:
            tv = fu.television(rng, layout.bank, 1.0, wall=True)
            lo, hi = tv.bounds()
            _place_on_wall(layout, rng, tv, gap=0.0, z=rng.uniform(1.1, 1.5) - (hi[2] - lo[2]) / 2, floor=False)


_MAX_PER_ROOM = {"lamp": 2, "bed": 2, "refrigerator": 2, "toilet": 2, "sink": 2, "counter": 2, "person": 2,
                 "sofa": 2, "otherprop": 2, "shelves": 3, "cabinet": 3}
"""Caps per floor class, so repeats go to classes that come in numbers (chairs, tables, bags, ...)."""


def _pick_class(rng: np.random.Generator, chosen: list[str], cfg: SynthConfig) -> str:
    table = fu.FLOOR_WEIGHTS if cfg.floor_weights is None else dict(cfg.floor_weights)
    unknown = set(table) - set(fu.FLOOR_BUILDERS)
    if unknown:
        raise ValueError(f"floor_weights names unknown floor pieces {sorted(unknown)}; known: {sorted(fu.FLOOR_BUILDERS)}")
    allowed = [n for n in table if chosen.count(n) < _MAX_PER_ROOM.get(n, 99) and table[n] > 0]
    # Repeats go to things (several instances of one class) and to tables (which bring chairs).
    repeatable = [n for n in chosen if n in allowed and (n == "table" or CLASS_BY_NAME[n].id in THING_IDS)]
    if repeatable and rng.random() < cfg.repeat_probability:
        return repeatable[int(rng.integers(len(repeatable)))]
    weights = np.array([table[n] for n in allowed])
    return allowed[int(rng.choice(len(allowed), p=weights / weights.sum()))]


def _floor_pieces(layout: _Layout, rng: np.random.Generator, cfg: SynthConfig) -> None:
    target = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    floor_total = float(layout.size[0] * layout.size[1])
    chosen: list[str] = []
    placed, attempts = 0, 0
    while placed < target and attempts < 4 * target + 8:
        attempts += 1
        if layout.floor_area > _MAX_FLOOR_COVER * floor_total:
            break
        name = _pick_class(rng, chosen, cfg)
        s = 1.0 + cfg.size_jitter * rng.uniform(-1, 1)
        spec = fu.FLOOR_BUILDERS[name](rng, layout.bank, s)
        if spec.placement == "wall":
            index = _place_on_wall(layout, rng, spec, gap=rng.uniform(0.05, 0.1), z=0.0, floor=True)
        else:
            index = _place_free(layout, rng, spec)
        if index is None:
            continue
        chosen.append(name)
        placed += 1
        if name == "table" and placed < target and rng.random() < 0.8:
            n_chairs = _chairs_around(layout, rng, index, int(rng.integers(1, min(4, target - placed) + 1)), s)
            chosen += ["chair"] * n_chairs
            placed += n_chairs


_PROPS_BY_SUPPORT = {
    "table": (("otherprop", 0.6), ("lamp", 0.2), ("bag", 0.1), ("television", 0.1)),
    "cabinet": (("otherprop", 0.45), ("television", 0.3), ("lamp", 0.25)),
    "counter": (("otherprop", 0.5), ("sink", 0.35), ("television", 0.15)),
    "shelves": (("otherprop", 1.0),),
}


def _prop(rng: np.random.Generator, bank: MaterialBank, name: str, clearance: float) -> fu.ObjectSpec:
    if name == "lamp":
        return fu.lamp(rng, bank, 1.0, table_lamp=True)
    if name == "television":
        return fu.television(rng, bank, 1.0)
    if name == "sink":
        return fu.sink(rng, bank, 1.0, on_counter=True)
    if name == "bag":
        return fu.bag(rng, bank, 0.8)
    return fu.otherprop(rng, bank, 1.0, max_height=clearance - 0.02)


def _props(layout: _Layout, rng: np.random.Generator, cfg: SynthConfig) -> None:
    """Props stand side by side along each supporting surface, never wider than it or taller than its clearance."""
    for parent in range(len(layout.specs)):
        spec = layout.specs[parent]
        options = _PROPS_BY_SUPPORT.get(spec.class_name)
        if options is None or layout.supports[parent] != -1:
            continue
        position, yaw = layout.poses[parent]
        for surface in spec.surfaces:
            if rng.random() >= cfg.prop_probability:
                continue
            x = surface.x[0]
            for _ in range(int(rng.integers(1, 4))):
                names, probs = zip(*options)
                prop = _prop(rng, layout.bank, names[int(rng.choice(len(names), p=np.array(probs)))], surface.clearance)
                lo, hi = prop.bounds()
                x += rng.uniform(0.0, 0.15) - lo[0]
                if x + hi[0] > surface.x[1] or hi[2] - lo[2] > surface.clearance or hi[1] - lo[1] > surface.y[1] - surface.y[0]:
                    break
                y = rng.uniform(surface.y[0] - lo[1], surface.y[1] - hi[1])
                local = _rot_z(yaw) @ np.array([x, y, surface.z])
                turn = rng.normal(0, 0.15) + (math.pi if rng.random() < 0.1 else 0.0)
                layout.add(prop, position + local, yaw + (0.0 if prop.class_name == "television" else turn), parent)
                x += hi[0] + 0.02


def _room_and_lighting(rng: np.random.Generator, cfg: SynthConfig, bank: MaterialBank,
                       size: np.ndarray) -> tuple[Room, np.ndarray, Lighting]:
    room = Room(lo=np.array([-size[0] / 2, -size[1] / 2, 0.0]), hi=np.array([size[0] / 2, size[1] / 2, size[2]]),
                has_ceiling=bool(rng.random() < cfg.ceiling_probability))
    wall = bank.new(rng, "wall")
    wall_mats = [wall] * 4
    if rng.random() < 0.35:  # an accent wall
        wall_mats[int(rng.integers(4))] = bank.new(rng, "wall")
    face_mats = np.array(wall_mats + [bank.new(rng, "floor"), bank.new(rng, "ceiling")], dtype=np.int32)
    elevation, azimuth = rng.uniform(0.5, 1.2), rng.uniform(-math.pi, math.pi)
    sun = np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
    tint = 1.0 + rng.normal(0, 0.04, size=3)
    lighting = Lighting(
        ambient=float(rng.uniform(*cfg.ambient)), sun_direction=sun, sun_intensity=float(rng.uniform(*cfg.light_strength)),
        lamp_position=np.array([rng.uniform(-0.3, 0.3) * size[0], rng.uniform(-0.3, 0.3) * size[1], size[2] - 0.3]),
        lamp_intensity=float(1.2 * rng.uniform(*cfg.light_strength)), lamp_falloff=float(rng.uniform(2.0, 4.0)),
        tint=tint / tint.mean())
    return room, face_mats, lighting


def _compile(layout: _Layout, room: Room, face_mats: np.ndarray, lighting: Lighting, table: np.ndarray) -> World:
    kinds, centers, rotations, halves, groups, sems, insts, mats = [], [], [], [], [], [], [], []
    objects, lo_all, hi_all = [], [], []
    next_instance = 1
    for g, (spec, (position, yaw), support) in enumerate(zip(layout.specs, layout.poses, layout.supports)):
        info = CLASS_BY_NAME[spec.class_name]
        instance = 0
        if info.id in THING_IDS:
            instance, next_instance = next_instance, next_instance + 1
        r_obj = _rot_z(yaw)
        corners = []
        for part in spec.parts:
            kinds.append(part.kind)
            centers.append(position + r_obj @ np.array(part.center))
            rotations.append(r_obj @ part.rotation)
            halves.append(part.half)
            groups.append(g)
            sems.append(info.id)
            insts.append(instance)
            mats.append(spec.materials[part.slot])
            ext = np.abs(rotations[-1]) @ np.array(part.half)
            corners += [centers[-1] - ext, centers[-1] + ext]
        lo_all.append(np.min(corners, axis=0))
        hi_all.append(np.max(corners, axis=0))
        s_lo, s_hi = spec.bounds()
        objects.append(PlacedObject(spec.class_name, info.id, instance, spec.kind, tuple(float(v) for v in position),
                                    float(yaw), tuple(float(v) for v in s_hi - s_lo), support))
    prims = Primitives(kinds=np.array(kinds, dtype=np.int8), centers=np.array(centers).reshape(-1, 3),
                       rotations=np.array(rotations).reshape(-1, 3, 3), half_sizes=np.array(halves).reshape(-1, 3),
                       groups=np.array(groups, dtype=np.int32))
    wall, floor, ceiling = (CLASS_BY_NAME[n].id for n in ("wall", "floor", "ceiling"))
    face_sems = [wall] * 4 + [floor, ceiling]
    assert len(face_sems) == ROOM_FACES
    return World(
        room=room, primitives=prims,
        semantics=np.array(sems + face_sems, dtype=np.uint8), instances=np.array(insts + [0] * ROOM_FACES, dtype=np.uint16),
        material_ids=np.concatenate([np.array(mats, dtype=np.int32), face_mats]), materials=layout.bank.build(),
        lighting=lighting, noise_table=table, objects=tuple(objects),
        object_lo=np.array(lo_all).reshape(-1, 3), object_hi=np.array(hi_all).reshape(-1, 3))


def build_world(cfg: SynthConfig, rng: np.random.Generator) -> World:
    """Draw a furnished room. Uses only `rng` (and no view or image options), so a seed fixes the room."""
    lo, hi = np.array(cfg.room_size_min), np.array(cfg.room_size_max)
    size = lo + (hi - lo) * rng.random(3)
    bank = MaterialBank(contrast=cfg.pattern_contrast, detail=cfg.texture_strength)
    room, face_mats, lighting = _room_and_lighting(rng, cfg, bank, size)
    table = rng.uniform(-1.0, 1.0, size=NOISE_TABLE_SIZE).astype(np.float32)
    layout = _Layout(size=size, bank=bank)
    _wall_items(layout, rng, cfg)
    _floor_pieces(layout, rng, cfg)
    _props(layout, rng, cfg)
    return _compile(layout, room, face_mats, lighting, table)
