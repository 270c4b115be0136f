"""Evaluation of panoptic predictions: PQ^scene, SQ, RQ and mIoU as Panoptic Lifting computes them, plus per-view PQ.

Array-level metrics live in `metrics` (pure numpy, no file access), folder-level scoring and output in `report`.
See design.md for the contract.
"""

from panst3r_splat.pipeline.evaluation.metrics import (
    ClassQuality,
    MeanIoUResult,
    PanopticQualityResult,
    Protocol,
    QualitySummary,
    miou,
    miou_from_overlaps,
    panoptic_quality_per_view,
    panoptic_quality_scene,
    per_view_quality_from_overlaps,
    scene_quality_from_overlaps,
)
from panst3r_splat.pipeline.evaluation.overlaps import SegmentOverlaps, concat_overlaps, count_overlaps
from panst3r_splat.pipeline.evaluation.report import (
    EvaluationReport,
    evaluate_folders,
    format_table,
    frame_overlaps,
    report_to_json,
    score_frames,
)
from panst3r_splat.pipeline.evaluation.resize import REFERENCE_SIZE, resize_nearest

__all__ = [
    "REFERENCE_SIZE",
    "ClassQuality",
    "EvaluationReport",
    "MeanIoUResult",
    "PanopticQualityResult",
    "Protocol",
    "QualitySummary",
    "SegmentOverlaps",
    "concat_overlaps",
    "count_overlaps",
    "evaluate_folders",
    "format_table",
    "frame_overlaps",
    "miou",
    "miou_from_overlaps",
    "panoptic_quality_per_view",
    "panoptic_quality_scene",
    "per_view_quality_from_overlaps",
    "report_to_json",
    "resize_nearest",
    "scene_quality_from_overlaps",
    "score_frames",
]
