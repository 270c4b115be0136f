"""Procedural solid textures and Lambert shading.

Textures are functions of the metric local coordinates of a surface point (`geometry.local_coordinates`), so every
view sees the same colour at the same point, and shading is Lambertian (view-independent): photo-consistency across
views holds exactly, which is what lets multi-view geometry be recovered from the images. Every material combines a
large-scale pattern (noise blotches, checker, stripes, wood rings or tiles with per-tile colours) with multi-scale
value-noise detail from decimetres down to about a centimetre, so surfaces are textured at every image resolution.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float32, Float64, Int32, Int64, UInt8

NOISE, CHECKER, STRIPES, WOOD, TILES, PLAIN = 0, 1, 2, 3, 4, 5
PATTERN_NAMES = ("noise", "checker", "stripes", "wood", "tiles", "plain")
NOISE_TABLE_SIZE = 1 << 16

_HASH = (np.int64(73856093), np.int64(19349663), np.int64(83492791))
_HASH32 = tuple(np.int32(h) for h in _HASH)


@dataclass(frozen=True)
class Materials:
    """M materials, one row each."""

    patterns: Int32[np.ndarray, "M"]
    """NOISE, CHECKER, STRIPES, WOOD, TILES or PLAIN (large-scale pattern only; detail noise is always added)."""
    colors0: Float64[np.ndarray, "M 3"]
    """Main colour, linear RGB in [0, 1]."""
    colors1: Float64[np.ndarray, "M 3"]
    """Second colour of the pattern."""
    scales: Float64[np.ndarray, "M"]
    """Period of the pattern in metres."""
    axes: Float64[np.ndarray, "M 3"]
    """Unit direction of stripes / wood grain in the local frame."""
    offsets: Float64[np.ndarray, "M 3"]
    """Shift of the noise domain, so two materials never share a noise field."""
    detail: Float64[np.ndarray, "M"]
    """Amplitude of the multi-scale detail noise (relative brightness change)."""


@dataclass(frozen=True)
class Lighting:
    """Ambient + one directional light + one point light, all white-ish."""

    ambient: float
    sun_direction: Float64[np.ndarray, "3"]
    """Unit vector pointing from the scene towards the sun."""
    sun_intensity: float
    lamp_position: Float64[np.ndarray, "3"]
    lamp_intensity: float
    lamp_falloff: float
    """Distance (m) at which the point light has dropped to half its strength."""
    tint: Float64[np.ndarray, "3"]
    """Colour of the light, multiplies the shading."""


def value_noise(points: Float64[np.ndarray, "N 3"], table: Float32[np.ndarray, "T"]) -> Float32[np.ndarray, "N"]:
    """Smooth 3D value noise in [-1, 1]: hashed lattice values, trilinear with smoothstep weights.

    Computed in float32 / int32 (the hash wraps around on purpose): it is the renderer's hottest loop.
    """
    cell = np.floor(points)
    frac = (points - cell).astype(np.float32)
    w = frac * frac * (np.float32(3.0) - np.float32(2.0) * frac)
    c = cell.astype(np.int64).astype(np.int32)  # wraps far from the origin, which only reshuffles the hash
    mask = np.int32(table.shape[0] - 1)
    with np.errstate(over="ignore"):
        hx = (c[:, 0] * _HASH32[0], (c[:, 0] + 1) * _HASH32[0])
        hy = (c[:, 1] * _HASH32[1], (c[:, 1] + 1) * _HASH32[1])
        hz = (c[:, 2] * _HASH32[2], (c[:, 2] + 1) * _HASH32[2])
    wx, wy, wz = w[:, 0], w[:, 1], w[:, 2]
    planes = []
    for z in (0, 1):
        rows = []
        for y in (0, 1):
            hyz = hy[y] ^ hz[z]
            v0, v1 = table[(hx[0] ^ hyz) & mask], table[(hx[1] ^ hyz) & mask]
            rows.append(v0 + wx * (v1 - v0))
        planes.append(rows[0] + wy * (rows[1] - rows[0]))
    return planes[0] + wz * (planes[1] - planes[0])


def _value_noise(points: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Reference twin of `value_noise`: one point at a time, in Python integers and floats."""
    mask = table.shape[0] - 1
    out = []
    for point in points:
        cell = [math.floor(v) for v in point]
        w = [(v - c) * (v - c) * (3 - 2 * (v - c)) for v, c in zip(point, cell)]
        total = 0.0
        for corner in itertools.product((0, 1), repeat=3):
            x, y, z = (c + d for c, d in zip(cell, corner))
            weight = math.prod(wi if d else 1 - wi for wi, d in zip(w, corner))
            total += weight * float(table[((x * int(_HASH[0])) ^ (y * int(_HASH[1])) ^ (z * int(_HASH[2]))) & mask])
        out.append(total)
    return np.array(out)


def fbm(points: Float64[np.ndarray, "N 3"], table: Float32[np.ndarray, "T"], base_scale: float, octaves: int,
        gain: float = 0.5) -> Float32[np.ndarray, "N"]:
    """Fractal sum of value noise with periods ``base_scale / 2**k`` metres (k < octaves), amplitudes ``gain**k``;
    normalised to roughly [-1, 1]."""
    total = np.zeros(points.shape[0], dtype=np.float32)
    norm = 0.0
    for octave in range(octaves):
        amp = gain ** octave
        # Each octave is shifted so octaves do not share lattice points (which would correlate them).
        total += np.float32(amp) * value_noise(points * ((2.0 ** octave) / base_scale) + 17.31 * octave, table)
        norm += amp
    return total / np.float32(norm)


def _hash01(cells: Int64[np.ndarray, "N 3"]) -> Float64[np.ndarray, "N"]:
    h = (cells[:, 0] * _HASH[0]) ^ (cells[:, 1] * _HASH[1]) ^ (cells[:, 2] * _HASH[2])
    return ((h * np.int64(2654435761)) & np.int64(0xFFFF)) / 65535.0


def _pattern(kind: int, p: np.ndarray, axes: np.ndarray, scales: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Blend weight towards colour 1, in [0, 1], for points of one pattern kind (p already offset, in metres)."""
    s = scales[:, None]
    if kind == NOISE:
        return np.clip(0.5 + 0.9 * fbm(p / s, table, 1.0, 2), 0.0, 1.0)
    if kind == CHECKER:
        cells = np.floor(p / s).astype(np.int64)
        return (cells.sum(axis=1) % 2).astype(np.float64)
    if kind == STRIPES:
        coord = np.einsum("ni,ni->n", p, axes) / scales + 0.15 * fbm(p, table, 0.5, 1)
        return 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * np.pi * coord))
    if kind == WOOD:
        along = np.einsum("ni,ni->n", p, axes)[:, None] * axes
        radius = np.linalg.norm(p - along, axis=1)
        rings = radius / scales + 0.6 * fbm(p, table, 0.3, 2)
        return np.abs(2.0 * (rings - np.floor(rings)) - 1.0) ** 2
    if kind == TILES:
        q = p / s
        cells = np.floor(q).astype(np.int64)
        edge = np.abs(q - cells - 0.5).max(axis=1)
        per_tile = 0.25 + 0.5 * _hash01(cells)
        return np.where(edge > 0.46, 1.0, per_tile)
    return np.zeros(p.shape[0])


def albedo(local_points: Float64[np.ndarray, "N 3"], material_ids: Int32[np.ndarray, "N"], materials: Materials,
           table: Float32[np.ndarray, "T"]) -> Float64[np.ndarray, "N 3"]:
    """Surface colour (linear RGB in [0, 1]) at points given in their primitive's local frame."""
    p_all = local_points + materials.offsets[material_ids]
    mix = np.zeros(local_points.shape[0])
    for kind in range(len(PATTERN_NAMES)):
        sel = np.flatnonzero(materials.patterns[material_ids] == kind)
        if sel.size == 0:
            continue
        m = material_ids[sel]
        mix[sel] = _pattern(kind, p_all[sel], materials.axes[m], materials.scales[m], table)
    c0, c1 = materials.colors0[material_ids], materials.colors1[material_ids]
    out = c0 + (c1 - c0) * mix[:, None]
    # Multi-scale detail, periods 50 cm down to 3 cm with slowly falling amplitudes, so even plain walls carry texture
    # at the scale of a pixel (about 2 cm at 3 m in a 192-pixel-wide view).
    detail = fbm(p_all + 101.0, table, 0.5, 5, gain=0.75)
    return np.clip(out * (1.0 + materials.detail[material_ids, None] * detail[:, None]), 0.0, 1.0)


def facing_viewer(normals: Float64[np.ndarray, "N 3"], view_dirs: Float64[np.ndarray, "N 3"]) -> Float64[np.ndarray, "N 3"]:
    """Normals flipped to the side the ray came from (thin parts then look the same from both sides)."""
    return np.where((np.einsum("ni,ni->n", normals, view_dirs) > 0)[:, None], -normals, normals)


def shade(albedos: Float64[np.ndarray, "N 3"], points: Float64[np.ndarray, "N 3"], normals: Float64[np.ndarray, "N 3"],
          lighting: Lighting, sun_visible: Float64[np.ndarray, "N"],
          lamp_visible: Float64[np.ndarray, "N"]) -> UInt8[np.ndarray, "N 3"]:
    """Lambert shading with the given light visibilities (0 = in shadow), as sRGB-ish uint8 (gamma 2.2).

    Every term depends on the surface point only, never on the viewer, so colours agree across views.
    """
    sun = np.maximum(0.0, normals @ lighting.sun_direction) * lighting.sun_intensity * sun_visible
    to_lamp = lighting.lamp_position - points
    dist = np.linalg.norm(to_lamp, axis=1)
    lamp = np.maximum(0.0, np.einsum("ni,ni->n", normals, to_lamp) / np.maximum(dist, 1e-6))
    lamp = lamp * lighting.lamp_intensity / (1.0 + (dist / lighting.lamp_falloff) ** 2) * lamp_visible
    light = (lighting.ambient + sun + lamp)[:, None] * lighting.tint
    linear = np.clip(albedos * light, 0.0, 1.0)
    return np.round(255.0 * linear ** (1 / 2.2)).astype(np.uint8)
