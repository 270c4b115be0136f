"""Writing what the user did in the viewer: the scene without its deleted segments, the selection as a PLY."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from panst3r_splat.core.predictions import write_points_ply
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.frontends.viewer.sources import PredictionsSource, SceneSource
from panst3r_splat.pipeline.frontends.viewer.state import ViewState, kept_mask
from panst3r_splat.splat.ply import write_ply
from panst3r_splat.splat.scene_io import labels_from_segments, save_scene

logger = logging.getLogger(__name__)


def save_edited_scene(source: SceneSource, state: ViewState, folder: Path) -> Path:
    """Write the scene minus its deleted segments (Gaussians and legend entries) as a new SCENE folder."""
    folder = Path(folder)
    if folder.resolve() == source.path.resolve():
        raise UserError(f"{folder} is the scene being viewed: save the edit to another folder")
    keep = kept_mask(source.segment_ids, state)
    fitted = source.fitted
    info = {**dict(fitted.info), "edited_from": str(source.path), "deleted_segments": sorted(state.deleted)}
    edited = dataclasses.replace(
        fitted, gaussians=fitted.gaussians.select(torch.from_numpy(keep)),
        segments=tuple(s for s in fitted.segments if s.id not in state.deleted), info=info)
    try:
        save_scene(folder, edited)
    except (ValueError, OSError) as err:
        raise UserError(f"cannot save the edited scene to {folder}: {err}") from None
    logger.info("saved the edited scene (%d of %d Gaussians) to %s", int(keep.sum()), len(keep), folder)
    return folder


def selection_ids(state: ViewState) -> list[int]:
    """What "export selection" writes: the selection, else the isolated segments."""
    return sorted(state.selected or state.isolated)


def export_selection(source: SceneSource | PredictionsSource, state: ViewState, folder: Path) -> Path:
    """Write the selected segments as one PLY: labelled 3DGS for a scene, coloured points for predictions."""
    ids = selection_ids(state)
    if not ids:
        raise UserError("nothing is selected: pick an object or a legend entry first")
    chosen = np.isin(source.segment_ids, ids)
    name = "selection_" + "-".join(str(i) for i in ids[:8]) + ("-etc" if len(ids) > 8 else "") + ".ply"
    path = Path(folder) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, SceneSource):
            gaussians = source.fitted.gaussians.select(torch.from_numpy(chosen))
            semantic, instance = labels_from_segments(gaussians.segment_ids, source.segments)
            write_ply(path, gaussians, semantic_ids=semantic, instance_ids=instance)
        else:
            chosen &= source.conf >= state.conf_threshold
            write_points_ply(path, source.points[chosen], source.rgb[chosen])
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}; choose a writable export folder") from None
    logger.info("exported %d elements of segments %s to %s", int(chosen.sum()), ids, path)
    return path
