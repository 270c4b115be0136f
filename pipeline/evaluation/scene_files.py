"""The few files `eval` reads: ``splits.json`` and the label PNGs of a scene and of a predictions folder.

Layout (CLI.md): ``SCENE/splits.json`` (``{"train": [...], "test": [...]}``, frame names without extension),
``SCENE/rs_semantics/<frame>.png`` (uint8 class id, 0 void), ``SCENE/rs_instance/<frame>.png`` (uint16 id),
``PRED/pred_semantics/<frame>.png`` (uint8 class id), ``PRED/pred_surrogateid/<frame>.png`` (uint16 id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Integer
from PIL import Image, UnidentifiedImageError

from panst3r_splat.pipeline.errors import UserError

GT_SEMANTICS_DIR = "rs_semantics"
GT_INSTANCES_DIR = "rs_instance"
PRED_SEMANTICS_DIR = "pred_semantics"
PRED_INSTANCES_DIR = "pred_surrogateid"
SPLITS_FILE = "splits.json"


@dataclass(frozen=True, eq=False)
class FrameLabels:
    """The four label maps of one frame, at their files' resolution (GT and prediction may differ in size)."""

    name: str
    gt_semantics: Integer[np.ndarray, "H W"]
    gt_instances: Integer[np.ndarray, "H W"]
    pred_semantics: Integer[np.ndarray, "h w"]
    pred_instances: Integer[np.ndarray, "h w"]


def read_split(scene: Path, split: str) -> list[str]:
    """Frame names of `split` in ``scene/splits.json``, in file order."""
    path = scene / SPLITS_FILE
    if not scene.is_dir():
        raise UserError(f"ground-truth scene folder {scene} does not exist; pass a Panoptic Lifting scene to --gt")
    if not path.is_file():
        raise UserError(f"{path} is missing; --gt must be a Panoptic Lifting scene with splits.json")
    try:
        splits = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); write it as "
                        "{\"train\": [...], \"test\": [...]}") from None
    if not isinstance(splits, dict) or split not in splits:
        known = sorted(splits) if isinstance(splits, dict) else []
        raise UserError(f"split {split!r} is not in {path} (it has {known}); choose one with --split")
    frames = splits[split]
    if not isinstance(frames, list) or not all(isinstance(f, (str, int)) for f in frames):
        raise UserError(f"{path}[{split!r}] must be a list of frame names")
    if not frames:
        raise UserError(f"split {split!r} of {path} is empty: nothing to score")
    return [str(f) for f in frames]


def read_label_png(path: Path) -> Integer[np.ndarray, "H W"]:
    """A single-channel label PNG as an integer array (uint8 or uint16 as stored; no colour conversion)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                raise UserError(f"{path} is a {image.mode} image; label maps must be single-channel "
                                "(uint8 class ids, uint16 instance ids)")
            labels = np.array(image)
    except (OSError, UnidentifiedImageError) as err:
        raise UserError(f"cannot read label image {path} ({err}); rewrite it as a single-channel PNG") from None
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    return labels


def check_predictions(pred: Path, frames: list[str]) -> None:
    """Raise if the predictions folder lacks a label PNG of any frame (no silent partial scoring)."""
    for sub in (PRED_SEMANTICS_DIR, PRED_INSTANCES_DIR):
        if not (pred / sub).is_dir():
            raise UserError(f"{pred / sub} is missing; --pred must hold {PRED_SEMANTICS_DIR}/ and "
                            f"{PRED_INSTANCES_DIR}/ (e.g. written by `panst3r-splat render`)")
        missing = [f for f in frames if not (pred / sub / f"{f}.png").is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise UserError(f"{pred / sub} lacks frame {shown} of the split ({len(missing)} of {len(frames)} "
                            "missing); predict every frame of the split")


def read_frame(scene: Path, pred: Path, frame: str) -> FrameLabels:
    """Read the GT and predicted label maps of one frame."""
    paths = [scene / GT_SEMANTICS_DIR / f"{frame}.png", scene / GT_INSTANCES_DIR / f"{frame}.png",
             pred / PRED_SEMANTICS_DIR / f"{frame}.png", pred / PRED_INSTANCES_DIR / f"{frame}.png"]
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path} is missing: frame {frame!r} of the split has no label map there")
    gt_sem, gt_inst, pred_sem, pred_inst = (read_label_png(p) for p in paths)
    for (a, pa), (b, pb) in (((gt_sem, paths[0]), (gt_inst, paths[1])), ((pred_sem, paths[2]), (pred_inst, paths[3]))):
        if a.shape != b.shape:
            raise UserError(f"{pa} is {a.shape[1]}x{a.shape[0]} but {pb} is {b.shape[1]}x{b.shape[0]}; "
                            "semantic and instance maps of a frame must have one size")
    return FrameLabels(frame, gt_sem, gt_inst, pred_sem, pred_inst)
