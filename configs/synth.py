"""Options of the synthetic scene generator (`pipeline/datasets/synth/`), and the seed range kept for evaluation."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

HELD_OUT_SEED_START = 1_000_000
"""Seeds >= this are evaluation scenes: training data must never be generated from them (`training_seed` checks)."""

PathKind = Literal["orbit", "sweep", "mixed"]


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes a synthetic scene except the seed. Ranges ``(lo, hi)`` are sampled per scene."""

    train_views: int = 12
    """Training (input) views, in path order."""
    test_views: int = 6
    """Held-out novel test views, at poses between the training views with other heights and angles."""
    width: int = 192
    """Image width in pixels."""
    height: int = 144
    """Image height in pixels."""
    num_objects: tuple[int, int] = (5, 8)
    """Range of floor furniture pieces (chairs around a table count); props on surfaces and wall items come extra."""
    repeat_probability: float = 0.45
    """Chance that a new piece repeats a class already in the room (several instances of one class)."""
    prop_probability: float = 0.6
    """Chance that a supporting surface (table, cabinet, counter, shelf board) carries props."""
    wall_items: tuple[int, int] = (1, 4)
    """Range of doors, windows (with curtains) and wall-mounted televisions."""
    room_size_min: tuple[float, float, float] = (3.6, 3.2, 2.5)
    """Smallest room (x, y, height) in metres."""
    room_size_max: tuple[float, float, float] = (7.0, 6.0, 3.0)
    """Largest room (x, y, height) in metres."""
    size_jitter: float = 0.15
    """Relative random scale of furniture dimensions around their typical sizes."""
    texture_strength: float = 0.35
    """Amplitude of the multi-scale detail noise on every surface (relative brightness)."""
    pattern_contrast: float = 0.5
    """How far the second pattern colour departs from the main colour (0 = plain surfaces)."""
    ambient: tuple[float, float] = (0.3, 0.5)
    """Range of the ambient light level."""
    light_strength: tuple[float, float] = (0.4, 0.8)
    """Range of the directional and point light intensities."""
    shadows: bool = True
    """Cast shadows of objects (one shadow ray per light and pixel, about a third more render time)."""
    ceiling_probability: float = 1.0
    """Chance that the room has a ceiling; without one, rays leaving upwards are void (class 0, depth 0)."""
    fov_deg: tuple[float, float] = (58.0, 72.0)
    """Range of the horizontal field of view in degrees."""
    path: PathKind = "orbit"
    """Camera path: 'orbit' (ring inside the room looking inwards), 'sweep' (along one wall, looking across) or
    'mixed' (either, chosen by the seed)."""
    arc_deg: tuple[float, float] = (180.0, 330.0)
    """Range of the angle an orbit covers (degrees)."""
    camera_height: tuple[float, float] = (1.2, 1.7)
    """Range of camera heights above the floor (metres)."""
    test_height_offset: float = 0.3
    """Test views sit this far above or below the training path (metres, alternating)."""
    roll_deg: float = 3.0
    """Largest camera roll (degrees)."""
    floor_weights: tuple[tuple[str, float], ...] | None = None
    """Relative frequency of each floor piece as ``((class name, weight), ...)``; None: the generator's defaults
    (``furniture.FLOOR_WEIGHTS``). Training uses flatter weights so that rare classes appear often."""

    def __post_init__(self) -> None:
        if self.train_views < 1 or self.test_views < 0:
            raise ValueError(f"need train_views >= 1 and test_views >= 0, got {self.train_views}, {self.test_views}")
        if self.width < 8 or self.height < 8:
            raise ValueError(f"image size {self.width}x{self.height} is too small; use at least 8x8 pixels")
        if not 0 <= self.num_objects[0] <= self.num_objects[1]:
            raise ValueError(f"num_objects must be a range (lo, hi) with 0 <= lo <= hi, got {self.num_objects}")
        if self.path not in ("orbit", "sweep", "mixed"):
            raise ValueError(f"unknown camera path {self.path!r}; use 'orbit', 'sweep' or 'mixed'")

    @property
    def num_views(self) -> int:
        return self.train_views + self.test_views


TRAINING_PRESET = SynthConfig(train_views=12, test_views=0, width=128, height=96, num_objects=(4, 10), path="mixed",
                              texture_strength=0.45, ceiling_probability=0.9, arc_deg=(120.0, 360.0))
"""Variety for model training: all views are inputs, both camera paths, wider object counts."""


def with_views(config: SynthConfig, *, train_views: int, test_views: int) -> SynthConfig:
    """A copy of `config` with other view counts (the room does not change with them)."""
    return replace(config, train_views=train_views, test_views=test_views)


def training_seed(seed: int) -> int:
    """Return `seed` if it may be used for training data, else raise (it belongs to the held-out range)."""
    if not 0 <= seed < HELD_OUT_SEED_START:
        raise ValueError(f"seed {seed} is outside the training range [0, {HELD_OUT_SEED_START}); seeds from "
                         f"{HELD_OUT_SEED_START} up are held out for evaluation")
    return seed
