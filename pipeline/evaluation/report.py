"""Folder-level scoring for `panst3r-splat eval`: read the split's frames, score them, print a table, write JSON."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from tqdm import tqdm

from panst3r_splat.core.class_table import CLASS_BY_ID, VOID_ID
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.evaluation.metrics import (
    MeanIoUResult,
    PanopticQualityResult,
    Protocol,
    QualitySummary,
    ROBUST_FRACTION,
    miou_from_overlaps,
    per_view_quality_from_overlaps,
    scene_quality_from_overlaps,
)
from panst3r_splat.pipeline.evaluation.overlaps import SegmentOverlaps, concat_overlaps, count_overlaps
from panst3r_splat.pipeline.evaluation.resize import REFERENCE_SIZE, resize_nearest
from panst3r_splat.pipeline.evaluation.scene_files import FrameLabels, check_predictions, read_frame, read_split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationReport:
    """Scores of one predictions folder against one Panoptic Lifting scene split."""

    gt: str
    pred: str
    split: str
    frames: tuple[str, ...]
    size: Optional[int]
    """Side of the square every label map was resized to (nearest); None = scored at native resolution."""
    protocol: Protocol
    pq_scene: PanopticQualityResult
    miou: MeanIoUResult
    pq_per_view: PanopticQualityResult
    pred_void_fraction: float
    """Fraction of the scored pixels (GT class != 0) predicted as class 0."""


def frame_overlaps(labels: FrameLabels, size: Optional[int]) -> SegmentOverlaps:
    """Overlap table of one frame after the protocol's resize (GT void pixels kept, for the per-view PQ).

    Args:
        labels: the frame's GT and predicted label maps.
        size: resize every map to size x size with Pillow's nearest rule; None keeps the native size (then
            GT and prediction must have the same size).
    """
    maps = [labels.gt_semantics, labels.gt_instances, labels.pred_semantics, labels.pred_instances]
    if size is not None:
        maps = [resize_nearest(m, size, size) for m in maps]
    elif maps[0].shape != maps[2].shape:
        raise UserError(f"frame {labels.name!r}: GT is {maps[0].shape[1]}x{maps[0].shape[0]} but the prediction is "
                        f"{maps[2].shape[1]}x{maps[2].shape[0]}; render at the GT size or score with --size 512")
    gt_sem, gt_inst, pred_sem, pred_inst = maps
    return count_overlaps(pred_sem, pred_inst, gt_sem, gt_inst)


def score_frames(frames: Sequence[SegmentOverlaps], *, protocol: Protocol = Protocol.REFERENCE
                 ) -> tuple[PanopticQualityResult, MeanIoUResult, PanopticQualityResult, float]:
    """PQ^scene, mIoU, per-view PQ and the predicted-void fraction from per-frame overlap tables."""
    scene = concat_overlaps(frames).without_gt_void()
    if scene.total == 0:
        raise UserError("every ground-truth pixel of the split is void (class 0): nothing to score")
    void_fraction = float(scene.pixels[scene.pred_semantics == VOID_ID].sum() / scene.total)
    return (scene_quality_from_overlaps(scene, protocol=protocol), miou_from_overlaps(scene, protocol=protocol),
            per_view_quality_from_overlaps(frames), void_fraction)


def evaluate_folders(gt: Path, pred: Path, *, split: str = "test", size: Optional[int] = REFERENCE_SIZE,
                     protocol: Protocol = Protocol.REFERENCE) -> EvaluationReport:
    """Score ``pred/pred_semantics`` + ``pred/pred_surrogateid`` against the `split` frames of scene `gt`.

    Every frame of the split must be predicted (a missing one is an error naming it); extra predicted frames
    are ignored, as in the reference.
    """
    if size is not None and size <= 0:
        raise UserError(f"--size must be a positive number of pixels or 'native', got {size}")
    frames = read_split(gt, split)
    check_predictions(pred, frames)
    tables = [frame_overlaps(read_frame(gt, pred, f), size)
              for f in tqdm(frames, desc="reading frames", unit="frame", disable=len(frames) < 50)]
    pq_scene, miou, pq_per_view, void_fraction = score_frames(tables, protocol=protocol)
    if protocol is Protocol.REFERENCE and void_fraction >= ROBUST_FRACTION:
        logger.warning("predicted class 0 covers %.2f %% of the scored pixels: the reference protocol scores it "
                       "as an extra stuff class with PQ 0 (use --clean to treat it as void)", 100 * void_fraction)
    return EvaluationReport(str(gt), str(pred), split, tuple(frames), size, protocol, pq_scene, miou, pq_per_view,
                            void_fraction)


# --------------------------------------------------------------------------------------------------------------
# Output


def _class_name(class_id: int) -> str:
    return CLASS_BY_ID[class_id].name if class_id in CLASS_BY_ID else "void (predicted)"


def _number(x: float) -> Optional[float]:
    """JSON has no NaN: undefined scores are null."""
    return None if math.isnan(x) else float(x)


def _summary_json(s: QualitySummary) -> dict[str, Any]:
    return {"pq": _number(s.pq), "sq": _number(s.sq), "rq": _number(s.rq), "n": s.n}


def _quality_json(result: PanopticQualityResult) -> dict[str, Any]:
    return {
        "all": _summary_json(result.all),
        "things": _summary_json(result.things),
        "stuff": _summary_json(result.stuff),
        "classes": [{"id": c.class_id, "name": _class_name(c.class_id), "isthing": c.isthing, "pq": c.pq,
                     "sq": c.sq, "rq": c.rq, "tp": c.tp, "fp": c.fp, "fn": c.fn, "iou_sum": c.iou_sum}
                    for c in result.classes],
        "dropped_classes": list(result.dropped_classes),
    }


def report_to_json(report: EvaluationReport) -> dict[str, Any]:
    """The report as a JSON-ready dict (scores are fractions in [0, 1]; undefined ones are null)."""
    return {
        "gt": report.gt,
        "pred": report.pred,
        "split": report.split,
        "frames": list(report.frames),
        "num_frames": len(report.frames),
        "size": report.size if report.size is not None else "native",
        "protocol": report.protocol.value,
        "pq_scene": _quality_json(report.pq_scene),
        "miou": {"miou": _number(report.miou.miou),
                 "classes": [{"id": i, "name": _class_name(i) if i else "void", "iou": _number(x)}
                             for i, x in enumerate(report.miou.class_iou)]},
        "pq_per_view": _quality_json(report.pq_per_view),
        "pred_void_fraction": report.pred_void_fraction,
        "notes": ("SQ is the mean IoU of matched segments and RQ the recognition term (Panoptic Lifting's "
                  "evaluate.py prints the two swapped); PQ^scene = PQ over all test frames as one image."),
    }


def _cell(x: float) -> str:
    return "    -" if math.isnan(x) else f"{x:5.3f}"


def format_table(report: EvaluationReport) -> str:
    """A readable multi-line summary: the headline scores, then one line per class."""
    size = f"{report.size}x{report.size} nearest" if report.size is not None else "native size"
    lines = [
        f"scene       {report.gt}",
        f"predictions {report.pred}",
        f"split       {report.split}: {len(report.frames)} frames, {size}, {report.protocol.value} protocol",
        "",
        f"{'':14}{'all':>7}{'things':>8}{'stuff':>8}",
    ]
    for label, result in (("scene", report.pq_scene), ("per-view", report.pq_per_view)):
        for metric in ("pq", "sq", "rq"):
            name = f"{metric.upper()}^scene" if label == "scene" else f"{metric.upper()} per-view"
            row = [getattr(getattr(result, part), metric) for part in ("all", "things", "stuff")]
            lines.append(f"{name:14}" + "".join(f"{_cell(x):>{w}}" for x, w in zip(row, (7, 8, 8))))
    lines.append(f"{'mIoU':14}{_cell(report.miou.miou):>7}")
    lines.append(f"{'classes':14}{report.pq_scene.all.n:>7}{report.pq_scene.things.n:>8}"
                 f"{report.pq_scene.stuff.n:>8}   (PQ^scene categories)")
    lines.append(f"{'pred void':14}{100 * report.pred_void_fraction:>6.2f}%")
    lines += ["", f"{'id':>3} {'class':<17}{'':6}{'PQ':>6}{'SQ':>6}{'RQ':>6}{'TP':>5}{'FP':>5}{'FN':>5}"
                  f"{'IoU':>7}{'PQ/view':>8}"]
    per_view = {c.class_id: c for c in report.pq_per_view.classes}
    for c in report.pq_scene.classes:
        view_pq = per_view[c.class_id].pq if c.class_id in per_view else math.nan
        lines.append(f"{c.class_id:>3} {_class_name(c.class_id):<17}{'thing' if c.isthing else 'stuff':<6}"
                     f"{_cell(c.pq):>6}{_cell(c.sq):>6}{_cell(c.rq):>6}{c.tp:>5}{c.fp:>5}{c.fn:>5}"
                     f"{_cell(report.miou.class_iou[c.class_id]):>7}{_cell(view_pq):>8}")
    if report.pq_scene.dropped_classes:
        names = ", ".join(f"{i} {_class_name(i)}" for i in report.pq_scene.dropped_classes)
        lines.append(f"dropped by the {100 * ROBUST_FRACTION:.1f} % filter: {names}")
    return "\n".join(lines) + "\n"
