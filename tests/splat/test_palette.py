"""Palettes: fixed, distinct, void black; overlay blends as stated."""

from __future__ import annotations

import numpy as np

from _typecheck import rejects
from panst3r_splat.core import class_table
from panst3r_splat.splat.palette import (
    instance_colors, overlay, panoptic_colors, segment_color, semantic_colors, semantic_palette,
)


def test_semantic_colours_are_the_class_table() -> None:
    assert np.array_equal(semantic_palette(), class_table.palette())
    chair = class_table.class_by_name("chair")
    assert tuple(semantic_colors(np.array([chair.id]))[0]) == chair.color
    assert semantic_colors(np.array([0])).tolist() == [[0, 0, 0]]
    assert semantic_colors(np.array([200])).tolist() == [[128, 128, 128]]


def test_instance_colours_stable_distinct_void_black() -> None:
    ids = np.arange(0, 257)
    cols = instance_colors(ids)
    assert cols[0].tolist() == [0, 0, 0]
    assert np.array_equal(instance_colors(ids[::-1])[::-1], cols)  # a pure function of the id
    c = cols[1:].astype(np.float64)
    dist = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(len(c)) * 1e9
    assert dist.min() > 15 and dist[:20, :20].min() > 30
    assert instance_colors(np.array([[3, 0], [3, 4]])).shape == (2, 2, 3)


def test_panoptic_colours_stuff_is_class_colour_things_differ() -> None:
    cls = np.array([1, 5, 5])
    inst = np.array([0, 3, 4])
    cols = panoptic_colors(cls, inst)
    assert tuple(cols[0]) == class_table.CLASS_BY_ID[1].color
    assert not np.array_equal(cols[1], cols[2])
    assert segment_color(3, 5, True) == tuple(cols[1].tolist())
    assert segment_color(9, 1, False) == class_table.CLASS_BY_ID[1].color


def test_overlay_blends() -> None:
    rgb = np.full((2, 3, 3), 100, np.uint8)
    lab = np.full((2, 3, 3), 200, np.uint8)
    assert np.array_equal(overlay(rgb, lab, alpha=0.0), rgb)
    assert np.array_equal(overlay(rgb, lab, alpha=1.0), lab)
    assert np.all(overlay(rgb, lab, alpha=0.5) == 150)
    mask = np.array([[True, False, True], [False, False, False]])
    out = overlay(rgb.astype(np.float32) / 255.0, lab, alpha=1.0, mask=mask)
    assert out[0, 0, 0] == 200 and out[0, 1, 0] == 100
    with rejects(ValueError, match="one size"):
        overlay(rgb, lab[:1])
