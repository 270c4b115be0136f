"""Material families: plausible colour ranges and patterns per kind of surface, sampled per scene."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from panst3r_splat.pipeline.datasets.synth.textures import CHECKER, NOISE, PLAIN, STRIPES, TILES, WOOD, Materials


@dataclass(frozen=True)
class Family:
    """Where a material's colours and pattern are drawn from."""

    hue: tuple[float, float]
    """Hue range in [0, 1] (wraps around)."""
    saturation: tuple[float, float]
    value: tuple[float, float]
    patterns: tuple[int, ...]
    scale: tuple[float, float]
    """Pattern period range in metres."""


FAMILIES: dict[str, Family] = {
    "wall": Family((0.0, 1.0), (0.03, 0.25), (0.65, 0.92), (NOISE, STRIPES, TILES, NOISE), (0.15, 0.6)),
    "floor": Family((0.05, 0.12), (0.2, 0.6), (0.3, 0.7), (WOOD, TILES, CHECKER, NOISE), (0.25, 0.6)),
    "ceiling": Family((0.0, 1.0), (0.0, 0.08), (0.8, 0.95), (NOISE, TILES), (0.4, 0.8)),
    "wood": Family((0.05, 0.11), (0.35, 0.7), (0.3, 0.75), (WOOD, WOOD, NOISE), (0.02, 0.08)),
    "fabric": Family((0.0, 1.0), (0.2, 0.7), (0.3, 0.8), (NOISE, STRIPES, CHECKER), (0.05, 0.2)),
    "white": Family((0.0, 1.0), (0.0, 0.06), (0.8, 0.95), (PLAIN, NOISE), (0.1, 0.3)),
    "metal": Family((0.5, 0.65), (0.0, 0.1), (0.45, 0.75), (NOISE, PLAIN), (0.05, 0.2)),
    "dark": Family((0.0, 1.0), (0.0, 0.2), (0.08, 0.22), (NOISE, PLAIN), (0.1, 0.3)),
    "screen": Family((0.55, 0.7), (0.1, 0.4), (0.05, 0.18), (NOISE,), (0.2, 0.5)),
    "glass": Family((0.53, 0.62), (0.15, 0.45), (0.75, 0.98), (NOISE,), (0.3, 0.8)),
    "stone": Family((0.0, 1.0), (0.0, 0.15), (0.35, 0.85), (NOISE, CHECKER, TILES), (0.05, 0.3)),
    "color": Family((0.0, 1.0), (0.45, 0.9), (0.35, 0.9), (NOISE, STRIPES, CHECKER, PLAIN), (0.03, 0.12)),
    "skin": Family((0.03, 0.09), (0.25, 0.6), (0.35, 0.9), (NOISE,), (0.05, 0.1)),
    "shade": Family((0.08, 0.15), (0.05, 0.3), (0.8, 0.97), (NOISE, STRIPES), (0.03, 0.08)),
}


@dataclass
class MaterialBank:
    """Accumulates the materials of one scene; `build` freezes them into a `Materials` table."""

    contrast: float
    detail: float
    rows: list[tuple[int, np.ndarray, np.ndarray, float, np.ndarray, np.ndarray, float]] = field(default_factory=list)

    def new(self, rng: np.random.Generator, family: str, *, pattern: int | None = None, axis: int | None = None) -> int:
        """Draw a new material of `family` and return its id (`pattern`, `axis`: force the pattern / its axis)."""
        fam = FAMILIES[family]
        hue = rng.uniform(*fam.hue) % 1.0
        c0 = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*fam.saturation), rng.uniform(*fam.value)))
        # The second colour: a darker/lighter shade with a small hue shift, `contrast` away from the first.
        shade_factor = rng.uniform(0.45, 0.8) if rng.random() < 0.7 else rng.uniform(1.2, 1.6)
        other = np.clip(np.array(colorsys.hsv_to_rgb((hue + rng.normal(0, 0.05)) % 1.0,
                                                     rng.uniform(*fam.saturation), 1.0)) * c0.max() * shade_factor,
                        0, 1)
        c1 = c0 + self.contrast * rng.uniform(0.6, 1.0) * (other - c0)
        drawn_pattern = int(fam.patterns[rng.integers(len(fam.patterns))])
        drawn_axis = int(rng.integers(3))
        axis_vec = np.zeros(3)
        axis_vec[drawn_axis if axis is None else axis] = 1.0
        offset = rng.uniform(-1000.0, 1000.0, size=3)
        detail = self.detail * rng.uniform(0.7, 1.3)
        self.rows.append((drawn_pattern if pattern is None else pattern, c0, c1, float(rng.uniform(*fam.scale)), axis_vec,
                          offset, detail))
        return len(self.rows) - 1

    def build(self) -> Materials:
        """Freeze into arrays."""
        cols = list(zip(*self.rows)) if self.rows else [[] for _ in range(7)]
        return Materials(
            patterns=np.array(cols[0], dtype=np.int32).reshape(-1),
            colors0=np.array(cols[1], dtype=np.float64).reshape(-1, 3),
            colors1=np.array(cols[2], dtype=np.float64).reshape(-1, 3),
            scales=np.array(cols[3], dtype=np.float64).reshape(-1),
            axes=np.array(cols[4], dtype=np.float64).reshape(-1, 3),
            offsets=np.array(cols[5], dtype=np.float64).reshape(-1, 3),
            detail=np.array(cols[6], dtype=np.float64).reshape(-1),
        )

