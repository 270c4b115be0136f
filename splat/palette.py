"""Fixed colour palettes for label images: semantic (the class table's colours), instance and panoptic ids.

Every colour is a pure function of the id (no random state, no dependence on which other ids are present), so the
same object has the same colour in every view, every render and every run. Id 0 (void) is always black.
Instance colours walk the hue circle by the golden ratio (consecutive ids land far apart); saturation and value
follow two other irrational steps, so ids whose hues nearly coincide (those a Fibonacci number apart) still differ
(the first 256 ids are at least 19 apart in RGB, the first 20 at least 31).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, Integer, UInt8

from panst3r_splat.core import class_table

_GOLDEN = 0.6180339887498949
_SAT_STEP = 0.31943828249996997  # sqrt(5) / 7
_VAL_STEP = 0.14159265358979312  # pi - 3
_UNKNOWN_CLASS = np.array([128, 128, 128], dtype=np.uint8)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB in [0, 1] (h, s, v in [0, 1])."""
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [np.stack(c, axis=-1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = np.zeros(h.shape + (3,))
    for k, rgb in enumerate(choices):
        out = np.where((i == k)[..., None], rgb, out)
    return out


def semantic_palette() -> UInt8[np.ndarray, "K1 3"]:
    """Colour of every dataset class id (index = class id, 0 = void black), from the class table."""
    return class_table.palette()


def instance_colors(ids: Integer[np.ndarray, "*S"]) -> UInt8[np.ndarray, "*S 3"]:
    """A stable, distinct colour per instance / segment id; 0 is black."""
    ids = np.asarray(ids).astype(np.int64)
    h = np.mod(ids * _GOLDEN + 0.1, 1.0)
    s = 0.5 + 0.5 * np.mod(ids * _SAT_STEP + 0.3, 1.0)
    v = 0.6 + 0.4 * np.mod(ids * _VAL_STEP + 0.7, 1.0)
    rgb = np.round(_hsv_to_rgb(h, s, v) * 255.0).astype(np.uint8)
    rgb[ids == 0] = 0
    return rgb


def semantic_colors(class_ids: Integer[np.ndarray, "*S"]) -> UInt8[np.ndarray, "*S 3"]:
    """Class-table colour of each dataset class id (void black, ids outside the table grey)."""
    ids = np.asarray(class_ids).astype(np.int64)
    table = semantic_palette()
    known = (ids >= 0) & (ids < len(table))
    out = np.where(known[..., None], table[np.clip(ids, 0, len(table) - 1)], _UNKNOWN_CLASS)
    return out.astype(np.uint8)


def panoptic_colors(class_ids: Integer[np.ndarray, "*S"], instance_ids: Integer[np.ndarray, "*S"]
                    ) -> UInt8[np.ndarray, "*S 3"]:
    """Stuff (instance 0) in its class colour; a thing in its class colour mixed 50/50 with its instance colour,
    so instances of one class share a tint yet stay apart (as Detectron2's panoptic view jitters class colours)."""
    sem = semantic_colors(class_ids).astype(np.float64)
    inst = instance_colors(instance_ids).astype(np.float64)
    things = (np.asarray(instance_ids) != 0)[..., None]
    return np.where(things, np.round(0.5 * sem + 0.5 * inst), sem).astype(np.uint8)


def segment_color(segment_id: int, class_id: int, isthing: bool) -> tuple[int, int, int]:
    """Legend colour of a panoptic segment: what `panoptic_colors` paints it with (things keyed by segment id)."""
    rgb = panoptic_colors(np.array([class_id]), np.array([segment_id if isthing else 0]))[0]
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def overlay(rgb: UInt8[np.ndarray, "H W 3"] | Float[np.ndarray, "H W 3"], labels_rgb: UInt8[np.ndarray, "H W 3"],
            *, alpha: float = 0.5, mask: np.ndarray | None = None) -> UInt8[np.ndarray, "H W 3"]:
    """Blend a label colour image over an RGB image (`alpha` = label weight); where `mask` is False (e.g. void),
    the RGB shows through unchanged. Float RGB is read as [0, 1]."""
    base = np.asarray(rgb)
    base = base * 255.0 if base.dtype.kind == "f" else base.astype(np.float64)
    if base.shape != labels_rgb.shape:
        raise ValueError(f"overlay needs images of one size, got {base.shape} and {labels_rgb.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha}")
    mixed = (1.0 - alpha) * base + alpha * labels_rgb.astype(np.float64)
    if mask is not None:
        mixed = np.where(np.asarray(mask, dtype=bool)[..., None], mixed, base)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)
