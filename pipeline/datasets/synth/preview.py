"""A contact sheet of a synthetic scene (image, depth, semantics, instances per view) for eyeballing the generator."""

from __future__ import annotations

import numpy as np
from jaxtyping import UInt8

from panst3r_splat.core.class_table import palette
from panst3r_splat.pipeline.datasets.synth.scene import SynthScene


def _instance_colors(instances: np.ndarray) -> np.ndarray:
    # A fixed hash of the id, so one instance has one colour in every view; 0 (stuff / void) stays dark grey.
    ids = instances.astype(np.int64)
    rgb = np.stack([(ids * 97) % 200 + 55, (ids * 57) % 200 + 55, (ids * 151) % 200 + 55], axis=-1).astype(np.uint8)
    return np.where((ids == 0)[..., None], np.uint8(40), rgb)


def _depth_colors(depth: np.ndarray) -> np.ndarray:
    valid = depth > 0
    top = float(depth[valid].max()) if valid.any() else 1.0
    level = np.where(valid, 255 - np.clip(depth / top * 235, 0, 235), 0).astype(np.uint8)
    return np.stack([level, level, level], axis=-1)


def contact_sheet(scene: SynthScene, *, max_views: int = 18) -> UInt8[np.ndarray, "H2 W2 3"]:
    """One row per view (training views then test views, test rows framed in red): RGB | depth | semantics | instances."""
    pal = palette()
    rows = []
    for v in range(min(scene.images.shape[0], max_views)):
        tiles = [scene.images[v], _depth_colors(scene.depth[v]), pal[scene.semantics[v]],
                 _instance_colors(scene.instances[v])]
        row = np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], axis=1)
        if scene.is_test[v]:
            row[:2], row[-2:], row[:, :2], row[:, -2:] = 255 * np.array([1, 0, 0], dtype=np.uint8), 255 * np.array(
                [1, 0, 0], dtype=np.uint8), 255 * np.array([1, 0, 0], dtype=np.uint8), 255 * np.array([1, 0, 0], dtype=np.uint8)
        rows.append(row)
    # Two columns of rows keep the sheet roughly square.
    half = (len(rows) + 1) // 2
    left, right = rows[:half], rows[half:]
    if len(right) < len(left):
        right.append(np.zeros_like(rows[0]))
    return np.concatenate([np.concatenate(left, axis=0), np.concatenate(right, axis=0)], axis=1)
