"""Camera paths inside the room: training views along a path, held-out test views between them at other heights.

Every pose is checked before it is kept: the camera stands inside the room, outside every object's bounding box,
and a small probe render shows mostly valid, not-too-close content. A pose that fails is nudged towards the room
centre with a fresh aim; the best of a few tries is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Bool, Float64

from panst3r_splat.configs.synth import SynthConfig
from panst3r_splat.core.class_table import CLASS_BY_NAME
from panst3r_splat.core.transforms import look_at
from panst3r_splat.pipeline.datasets.synth.geometry import MISS
from panst3r_splat.pipeline.datasets.synth.layout import WALL_NORMALS, World
from panst3r_splat.pipeline.datasets.synth.render import cast_views

_PROBE = (24, 32)
"""(H, W) of the probe render that vets a pose."""
_TRIES = 8
_ROOM_SHELL = frozenset(CLASS_BY_NAME[n].id for n in ("wall", "floor", "ceiling"))


@dataclass(frozen=True)
class CameraRig:
    """Intrinsics shared by all views and the views' poses, training views first (in path order), then test."""

    K: Float64[np.ndarray, "3 3"]
    T_world_cam: Float64[np.ndarray, "V 4 4"]
    """Camera-to-world, OpenCV axes (x right, y down, z forward)."""
    is_test: Bool[np.ndarray, "V"]
    path: str
    """'orbit' or 'sweep'."""


@dataclass(frozen=True)
class _PathPoint:
    position: np.ndarray
    target: np.ndarray


def intrinsics(width: int, height: int, fov_x_deg: float) -> Float64[np.ndarray, "3 3"]:
    """Pinhole K with square pixels and the pixel-centre convention: the principal point is ((W-1)/2, (H-1)/2).

    The image spans pixel coordinates -0.5 .. W-0.5, hence ``fx = W / (2 tan(fov/2))``.
    """
    f = width / (2.0 * math.tan(math.radians(fov_x_deg) / 2.0))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _orbit(world: World, rng: np.random.Generator, cfg: SynthConfig):
    half = world.room.hi[:2]
    fraction = rng.uniform(0.45, 0.7)
    theta0 = rng.uniform(-math.pi, math.pi)
    arc = math.radians(rng.uniform(*cfg.arc_deg)) * (1 if rng.random() < 0.5 else -1)
    focus = _furniture_focus(world) * rng.uniform(0.3, 0.7)
    base_h = rng.uniform(*cfg.camera_height)
    wobble_h, phase = rng.uniform(0.0, 0.15), rng.uniform(0, 2 * math.pi)
    target_h = rng.uniform(0.5, 0.9)
    beyond = rng.uniform(0.2, 0.6)

    def at(s: float, radius_scale: float, dh: float, jitter: np.ndarray) -> _PathPoint:
        theta = theta0 + arc * s
        xy = focus * 0.3 + fraction * radius_scale * half * np.array([math.cos(theta), math.sin(theta)])
        z = base_h + wobble_h * math.sin(2 * math.pi * s + phase) + dh
        # Aim past the furniture's centre, across the room: less floor, more furniture and far wall in view.
        target_xy = focus + beyond * (focus - xy) + jitter[:2]
        return _PathPoint(np.array([*xy, z]), np.array([*target_xy, target_h + jitter[2]]))

    closed = abs(arc) > math.radians(300)
    return at, closed


def _sweep(world: World, rng: np.random.Generator, cfg: SynthConfig):
    size = world.room.hi[:2] * 2
    wall = int(rng.integers(4))
    n = WALL_NORMALS[wall]
    tangent = np.array([n[1], -n[0]])
    depth = size[0] if wall < 2 else size[1]
    length = size[1] if wall < 2 else size[0]
    start = -n * depth / 2 + n * rng.uniform(0.6, 1.0)
    span = rng.uniform(0.4, 0.7) * length
    look = rng.uniform(0.35, 0.6) * depth
    base_h = rng.uniform(*cfg.camera_height)
    target_h = rng.uniform(0.5, 0.9)
    swing = rng.uniform(-0.5, 0.5) * length  # > 0: views converge on the far side; < 0: they pan along

    def at(s: float, radius_scale: float, dh: float, jitter: np.ndarray) -> _PathPoint:
        along = (s - 0.5) * span
        xy = start * radius_scale + tangent * along
        target_xy = start + n * look + tangent * (-(s - 0.5) * swing)
        return _PathPoint(np.array([*xy, base_h + dh]), np.array([*(target_xy + jitter[:2]), target_h + jitter[2]]))

    return at, False


def _furniture_focus(world: World) -> np.ndarray:
    """Mean floor position of the objects (what views should look at), (0, 0) in an empty room."""
    if len(world.objects) == 0:
        return np.zeros(2)
    return np.mean((world.object_lo[:, :2] + world.object_hi[:, :2]) / 2, axis=0)


def _pose_score(world: World, T: np.ndarray, K_probe: np.ndarray) -> float:
    """0 for an unusable pose, else higher is better: valid content, few very close pixels, some furniture."""
    pos = T[:3, 3]
    if np.any(pos <= world.room.lo + [0.25, 0.25, 0.5]) or np.any(pos >= world.room.hi - [0.25, 0.25, 0.25]):
        return 0.0
    inside = np.all((pos > world.object_lo - 0.2) & (pos < world.object_hi + 0.2), axis=1)
    if inside.any():
        return 0.0
    _, _, t, ids = cast_views(world, K_probe, T[None], *_PROBE)
    valid = ids != MISS
    close = valid & (t < 0.4)
    objects = valid & ~np.isin(world.semantics[np.where(valid, ids, 0)], list(_ROOM_SHELL))
    if valid.mean() < 0.75 or close.mean() > 0.1:
        return 0.0
    return float(0.2 + valid.mean() - close.mean() + 2.0 * min(objects.mean(), 0.35))


def _vetted(world: World, rng: np.random.Generator, path, s: float, dh: float, radius: float,
            K_probe: np.ndarray, roll_deg: float) -> np.ndarray:
    """The best-scoring of a few poses around path point `s` (the nominal one is favoured, for a smooth path)."""
    best, best_score = None, -1.0
    for attempt in range(_TRIES):
        jitter = rng.normal(0, 0.15 + 0.1 * attempt, size=3) * np.array([1.0, 1.0, 0.5])
        point = path(s, radius * (1.0 - 0.08 * attempt), dh * (1.0 - 0.1 * attempt), jitter)
        T = look_at(point.position, point.target, roll=math.radians(rng.uniform(-roll_deg, roll_deg)))
        score = _pose_score(world, T, K_probe) + (0.15 if attempt == 0 else 0.0)
        if score > best_score:
            best, best_score = T, score
    assert best is not None
    return best


def _path_parameters(n_train: int, n_test: int, closed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training views spread along the path; each test view half-way between two consecutive training views."""
    step = 1.0 / (n_train if closed else max(n_train - 1, 1))
    s_train = np.arange(n_train) * step
    if n_train == 1:
        return s_train, (np.arange(n_test) + 0.5) / max(n_test, 1)
    gaps = n_train if closed else n_train - 1
    slots = np.floor((np.arange(n_test) + 0.5) * gaps / max(n_test, 1)).astype(int)
    return s_train, (slots + 0.5) * step


def sample_cameras(world: World, cfg: SynthConfig, rng: np.random.Generator) -> CameraRig:
    """Intrinsics and poses of `cfg.train_views` training views and `cfg.test_views` novel test views."""
    fov = rng.uniform(*cfg.fov_deg)
    K = intrinsics(cfg.width, cfg.height, fov)
    K_probe = intrinsics(_PROBE[1], _PROBE[0], fov)
    kind = cfg.path if cfg.path != "mixed" else ("orbit", "sweep")[int(rng.integers(2))]
    path, closed = (_orbit if kind == "orbit" else _sweep)(world, rng, cfg)
    s_train, s_test = _path_parameters(cfg.train_views, cfg.test_views, closed)
    poses = [_vetted(world, rng, path, float(s), 0.0, 1.0, K_probe, cfg.roll_deg) for s in s_train]
    for j, s in enumerate(s_test):
        dh = (1 if j % 2 == 0 else -1) * cfg.test_height_offset * rng.uniform(0.7, 1.0)
        radius = 1.0 + rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.18)
        poses.append(_vetted(world, rng, path, float(s), dh, radius, K_probe, cfg.roll_deg * 2))
    is_test = np.arange(len(poses)) >= cfg.train_views
    return CameraRig(K=K, T_world_cam=np.stack(poses), is_test=is_test, path=kind)
