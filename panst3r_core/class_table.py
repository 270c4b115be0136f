"""The one class table of the project: the 21 reduced ScanNet classes of Panoptic Lifting.

Source: nihalsid/panoptic-lifting ``resources/scannet_reduced_things.csv`` (row order = class id, 0 = void).
Used by ``synth`` (ground truth), ``eval`` (thing/stuff split), the built-in model's class set and every legend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassInfo:
    """One row of the class table."""

    id: int
    """Dataset label id written to ``rs_semantics`` / ``pred_semantics`` (0 is void)."""
    name: str
    isthing: bool
    """Countable object (instances kept apart) or stuff (one segment per class and scene)."""
    color: tuple[int, int, int]
    """Legend colour, RGB uint8."""


VOID_ID = 0

CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(1, "wall", False, (174, 199, 232)),
    ClassInfo(2, "floor", False, (152, 223, 138)),
    ClassInfo(3, "cabinet", False, (31, 119, 180)),
    ClassInfo(4, "bed", True, (255, 187, 120)),
    ClassInfo(5, "chair", True, (188, 189, 34)),
    ClassInfo(6, "sofa", True, (140, 86, 75)),
    ClassInfo(7, "table", False, (255, 152, 150)),
    ClassInfo(8, "door", False, (214, 39, 40)),
    ClassInfo(9, "window", False, (197, 176, 213)),
    ClassInfo(10, "counter", False, (148, 103, 189)),
    ClassInfo(11, "shelves", False, (196, 156, 148)),
    ClassInfo(12, "curtain", False, (23, 190, 207)),
    ClassInfo(13, "ceiling", False, (178, 76, 76)),
    ClassInfo(14, "refrigerator", True, (247, 182, 210)),
    ClassInfo(15, "television", True, (66, 188, 102)),
    ClassInfo(16, "person", True, (219, 219, 141)),
    ClassInfo(17, "toilet", True, (140, 57, 197)),
    ClassInfo(18, "sink", True, (202, 185, 52)),
    ClassInfo(19, "lamp", False, (51, 176, 203)),
    ClassInfo(20, "bag", True, (200, 54, 131)),
    ClassInfo(21, "otherprop", False, (92, 193, 61)),
)

NUM_CLASSES = len(CLASSES)
"""21 classes, ids 1..21."""

CLASS_BY_ID: dict[int, ClassInfo] = {c.id: c for c in CLASSES}
CLASS_BY_NAME: dict[str, ClassInfo] = {c.name: c for c in CLASSES}
THING_IDS: frozenset[int] = frozenset(c.id for c in CLASSES if c.isthing)
STUFF_IDS: frozenset[int] = frozenset(c.id for c in CLASSES if not c.isthing)


def class_names() -> list[str]:
    """Class names in id order (index i is class id i + 1)."""
    return [c.name for c in CLASSES]


def palette() -> np.ndarray:
    """Colour of every label id, void (0) black: (NUM_CLASSES + 1, 3) uint8."""
    out = np.zeros((NUM_CLASSES + 1, 3), dtype=np.uint8)
    for c in CLASSES:
        out[c.id] = c.color
    return out


def class_by_name(name: str) -> ClassInfo:
    """Look a class up by name, with an error that lists the valid names."""
    try:
        return CLASS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown class {name!r}; known classes: {', '.join(class_names())}") from None
