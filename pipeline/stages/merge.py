"""The `merge` stage: stored per-query logits -> one panoptic id map per view, without re-running the model.

`predict` calls :func:`merge_predictions` on the fresh model outputs; `panst3r-splat merge` calls
:func:`run_merge` on an existing predictions folder to try another method (rewriting ``panoptic``,
``segments.json`` and the label PNGs, in place or into ``--out``, atomically through ``save_predictions``).
The merges themselves are :func:`panst3r_splat.core.merging.merge_panoptic` (method.md section 3).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from panst3r_splat.core.merging import MERGE_NAMES, MergedPanoptic, merge_panoptic
from panst3r_splat.core.photos import read_photos
from panst3r_splat.core.predictions import Predictions, load_predictions, save_predictions
from panst3r_splat.pipeline.errors import UserError

log = logging.getLogger(__name__)

VOID_WARNING_FRACTION = 0.005
"""Void pixels count against PQ^scene under the reference protocol from 0.5 % of the pixels on (CLI.md)."""


@dataclass(frozen=True)
class MergeResult:
    """Predictions with their merged ``panoptic`` and the matching ``segments.json`` entries."""

    predictions: Predictions
    """The input predictions with ``panoptic`` replaced."""
    segments: tuple[dict, ...]
    """COCO-panoptic entries (``id``, ``category_id`` = index into ``class_names``, ``isthing``, ``score``,
    ``query_id``, ``area``, plus ``class_prob`` and ``mask_conf``)."""
    void_fraction: float
    """Share of all pixels left void."""


def merge_predictions(pred: Predictions, name: str, *, device: torch.device = torch.device("cpu"),
                      seed: int = 0) -> MergeResult:
    """Merge ``pred``'s mask and class logits with the method ``name`` over all views jointly.

    Runs on ``device``; a CUDA device that runs out of memory falls back to the CPU (the merges stream over views,
    but the logits of hundreds of views at 512 px still take gigabytes).
    """
    if name not in MERGE_NAMES:
        raise UserError(f"unknown --merge {name!r}; choose one of {', '.join(MERGE_NAMES)}")
    start = time.perf_counter()
    try:
        merged = _merge_on(pred, name, device, seed)
    except torch.cuda.OutOfMemoryError:
        log.warning("merge: out of GPU memory, merging on the CPU instead")
        torch.cuda.empty_cache()
        merged = _merge_on(pred, name, torch.device("cpu"), seed)
    panoptic = merged.panoptic.cpu().numpy().astype("int32")
    segments = tuple(dataclasses.asdict(s) for s in merged.segments)
    void = float((panoptic == 0).mean())
    log.info("merge %s: %d segments over %d views in %.1f s, %.1f %% of pixels void", name, len(segments),
             pred.num_views, time.perf_counter() - start, 100.0 * void)
    if void >= VOID_WARNING_FRACTION:
        log.warning("%.1f %% of the pixels are unassigned (void); they count against PQ^scene under the reference "
                    "protocol. Another --merge (e.g. standard_v2) may cover more.", 100.0 * void)
    return MergeResult(dataclasses.replace(pred, panoptic=panoptic), segments, void)


def _merge_on(pred: Predictions, name: str, device: torch.device, seed: int) -> MergedPanoptic:
    H, W = pred.images.shape[1:3]
    return merge_panoptic(
        name,  # type: ignore[arg-type]  # checked against MERGE_NAMES by the caller
        torch.from_numpy(pred.class_logits).to(device),
        torch.from_numpy(pred.mask_logits).to(device),
        (int(H), int(W)),
        isthing=torch.from_numpy(pred.isthing),
        seed=seed,
    )


def run_merge(predictions: Path, name: str, out: Path | None = None, *,
              device: torch.device = torch.device("cpu"), seed: int = 0) -> MergeResult:
    """Re-merge the predictions folder ``predictions`` and write it back (or to ``out``)."""
    predictions = Path(predictions)
    if not predictions.is_dir():
        raise UserError(f"--predictions {predictions} is not a folder; give a folder written by "
                        "`panst3r-splat predict`")
    try:
        pred = load_predictions(predictions)
    except ValueError as err:
        raise UserError(str(err)) from None
    result = merge_predictions(pred, name, device=device, seed=seed)
    target = predictions if out is None else Path(out)
    try:
        photos = read_photos(predictions)  # the photos' record travels with the folder
        save_predictions(result.predictions, target, result.segments, photos=photos)
    except ValueError as err:
        raise UserError(str(err)) from None
    log.info("merge: wrote %s%s", target, " (in place)" if out is None else "")
    return result


__all__ = ["MergeResult", "VOID_WARNING_FRACTION", "merge_predictions", "run_merge"]
