"""Render views of a `World`: one ray per pixel through its centre, nearest hit, exact labels and z-depth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float64, Int32, UInt8, UInt16

from panst3r_splat.pipeline.datasets.synth.geometry import MISS, cast_rays, local_coordinates, surface_normals
from panst3r_splat.pipeline.datasets.synth.layout import World
from panst3r_splat.pipeline.datasets.synth.textures import albedo, facing_viewer, shade

VOID_COLOR = np.array([20, 20, 24], dtype=np.uint8)
"""Colour of pixels that see nothing (only possible in rooms without a ceiling)."""
CHUNK_RAYS = 1 << 14


@dataclass(frozen=True)
class RenderedViews:
    """V rendered views at H x W."""

    images: UInt8[np.ndarray, "V H W 3"]
    depth: Float64[np.ndarray, "V H W"]
    """z-depth in metres (distance along the camera's optical axis), 0 where the ray hit nothing."""
    semantics: UInt8[np.ndarray, "V H W"]
    instances: UInt16[np.ndarray, "V H W"]
    hit_ids: Int32[np.ndarray, "V H W"]
    """Primitive / room-face id of each pixel's hit (see geometry.cast_rays), -1 for none."""


def pixel_rays(K: Float64[np.ndarray, "3 3"], T_world_cam: Float64[np.ndarray, "V 4 4"], height: int,
               width: int) -> tuple[Float64[np.ndarray, "N 3"], Float64[np.ndarray, "N 3"]]:
    """World-frame origins and directions of one ray per pixel, views then rows then columns.

    Pixel (u, v) with integer u, v is the pixel *centre* (the convention of intrinsic_color.txt), and directions are
    ``R_world_cam @ K^-1 [u, v, 1]``: their camera-frame z is 1, so a hit's ray parameter is its z-depth.
    """
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    pix = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3)  # [H*W, 3]
    d_cam = pix @ np.linalg.inv(K).T
    rot, pos = T_world_cam[:, :3, :3], T_world_cam[:, :3, 3]
    dirs = np.einsum("vij,nj->vni", rot, d_cam).reshape(-1, 3)
    origins = np.repeat(pos, height * width, axis=0)
    return origins, dirs


def cast_views(world: World, K: np.ndarray, T_world_cam: np.ndarray, height: int,
               width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Geometry only: origins, directions, ray parameter (z-depth, inf on a miss) and hit id per ray."""
    origins, dirs = pixel_rays(K, T_world_cam, height, width)
    t, ids = cast_rays(origins, dirs, world.primitives, world.room)
    return origins, dirs, t, ids


SHADOW_OFFSET = 1e-4
"""Shadow rays start this far (metres) off the surface, so they never hit the surface they leave."""


def light_visibility(world: World, points: Float64[np.ndarray, "N 3"],
                     normals: Float64[np.ndarray, "N 3"]) -> tuple[Float64[np.ndarray, "N"], Float64[np.ndarray, "N"]]:
    """1 where the sun / the lamp reaches a surface point, 0 where a piece of furniture is in the way.

    The 'sun' is a directional fill light: the room's own walls do not block it, only objects do.
    """
    prims = world.primitives
    origins = points + SHADOW_OFFSET * normals
    _, sun_ids = cast_rays(origins, np.broadcast_to(world.lighting.sun_direction, points.shape), prims, world.room)
    t_lamp, lamp_ids = cast_rays(origins, world.lighting.lamp_position - origins, prims, world.room)
    sun_blocked = (sun_ids >= 0) & (sun_ids < prims.count)
    lamp_blocked = (lamp_ids >= 0) & (lamp_ids < prims.count) & (t_lamp < 1.0)
    return 1.0 - sun_blocked, 1.0 - lamp_blocked


def _shade_rays(world: World, origins: np.ndarray, dirs: np.ndarray, t: np.ndarray, ids: np.ndarray,
                shadows: bool) -> np.ndarray:
    colors = np.broadcast_to(VOID_COLOR, (ids.shape[0], 3)).copy()
    idx = np.flatnonzero(ids != MISS)
    points = origins[idx] + t[idx, None] * dirs[idx]
    hit_ids = ids[idx]
    normals = facing_viewer(surface_normals(points, hit_ids, world.primitives, world.room), dirs[idx])
    local = local_coordinates(points, hit_ids, world.primitives)
    base = albedo(local, world.material_ids[hit_ids], world.materials, world.noise_table)
    if shadows:
        sun_visible, lamp_visible = light_visibility(world, points, normals)
    else:
        sun_visible = lamp_visible = np.ones(idx.shape[0])
    colors[idx] = shade(base, points, normals, world.lighting, sun_visible, lamp_visible)
    return colors


def render_views(world: World, K: Float64[np.ndarray, "3 3"], T_world_cam: Float64[np.ndarray, "V 4 4"], height: int,
                 width: int, *, shadows: bool = True) -> RenderedViews:
    """Colour, depth and labels of every view.

    Rays of all views are processed together in chunks of about `CHUNK_RAYS`: large enough that numpy's per-call
    overhead vanishes, small enough that the working arrays stay in the CPU caches (whole-scene arrays are slower).
    `shadows` casts one shadow ray per light and pixel (objects shadow the floor, walls and each other).
    """
    n_views = T_world_cam.shape[0]
    origins, dirs = pixel_rays(K, T_world_cam, height, width)
    n = origins.shape[0]
    t = np.empty(n)
    ids = np.empty(n, dtype=np.int32)
    colors = np.empty((n, 3), dtype=np.uint8)
    for start in range(0, n, CHUNK_RAYS):
        sl = slice(start, min(start + CHUNK_RAYS, n))
        t[sl], ids[sl] = cast_rays(origins[sl], dirs[sl], world.primitives, world.room)
        colors[sl] = _shade_rays(world, origins[sl], dirs[sl], t[sl], ids[sl], shadows)
    hit = ids != MISS
    shape = (n_views, height, width)
    safe = np.where(hit, ids, 0)
    return RenderedViews(
        images=colors.reshape(*shape, 3),
        depth=np.where(hit, t, 0.0).reshape(shape),
        semantics=np.where(hit, world.semantics[safe], 0).astype(np.uint8).reshape(shape),
        instances=np.where(hit, world.instances[safe], 0).astype(np.uint16).reshape(shape),
        hit_ids=ids.reshape(shape),
    )
