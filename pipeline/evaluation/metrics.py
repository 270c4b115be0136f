"""PQ^scene, mIoU and per-view PQ on label arrays, the way the field computes them.

PQ^scene and mIoU follow Panoptic Lifting's evaluation code (nihalsid/panoptic-lifting
``util/panoptic_quality.py`` and ``dataset/preprocessing/preprocess_scannet.py::calculate_panoptic_quality_folders``,
``calculate_iou_folders``; ``util/metrics.py::ConfusionMatrix``), quirks included, so our numbers compare with the
published ones (Panoptic Lifting, Contrastive Lift, PCF-Lift and PanSt3R all score with that code):

- pixels whose GT class is 0 are dropped, all frames are scored as one image (a segment is a (class, id) pair
  across the whole scene), stuff ids are forced to 0;
- a class is dropped when it is *present* in the prediction on < 0.5 % of the pixels, or *present* in the GT on
  < 0.5 % (a class absent from one side is not dropped for that side); pixels of dropped or unknown classes are void;
- the reference's class table starts with ``void`` (id 0) as a stuff entry, so a predicted class 0 covering
  >= 0.5 % of the scored pixels is a stuff class with one false positive and PQ 0 that lowers the mean;
- matching is IoU > 0.5 with void excluded from the union on both sides; unmatched segments mostly covered by
  void on the other side are neither FN nor FP; a category with no TP/FP/FN still counts (with PQ 0) in the mean;
- IoUs and the 0.5 % fractions are computed in float32 (torch divides int64 counts in float32), per-class sums
  and means in float64;
- the reference's driver prints SQ and RQ swapped (``pq, rq, sq = ...`` of a function returning pq, sq, rq);
  here SQ is the mean IoU of the matches and RQ the F1-like recognition term, as in Kirillov et al.

``Protocol.CLEAN`` changes only the predicted-class-0 quirk: class 0 is void in the prediction.

Per-view PQ follows ``cocodataset/panopticapi`` (``pq_compute_single_core``, ``PQStat.pq_average``): each frame is
its own image (ids need only be consistent within a frame, so it does not reward cross-view consistency), stats
are summed per category over frames, IoU > 0.5 with ``union = |P| + |G| - |P n G| - |P n GT void|``, every
unmatched GT segment is an FN, and the mean runs over categories with TP + FP + FN > 0. Predicted class 0 and
classes outside the table are void; there is no 0.5 % filter.

Every fast routine has a slow pixel-loop twin (``_name``) transcribing the reference; the tests compare them.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from jaxtyping import Float, Int, Integer

from panst3r_splat.core.class_table import NUM_CLASSES, STUFF_IDS, THING_IDS, VOID_ID
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.evaluation.overlaps import SegmentOverlaps, count_overlaps

ROBUST_FRACTION = 0.005
"""A class covering less than this fraction of the scored pixels is dropped (Panoptic Lifting's `robust`)."""
MATCH_IOU = 0.5
"""A predicted and a GT segment of one class match when their IoU exceeds this."""
NUM_LABELS = NUM_CLASSES + 1
"""Label values 0..21: void plus the 21 classes (the reference's 22-row confusion matrix)."""
_VOID_CLASS = -1
"""Internal class of void segments (the reference uses 1 + the largest kept class id; any non-class value works)."""


class Protocol(enum.Enum):
    """How predicted class 0 is scored in PQ^scene and mIoU (per-view PQ always treats it as void)."""

    REFERENCE = "reference"
    """Panoptic Lifting's code exactly: predicted class 0 is an extra stuff class once it covers >= 0.5 % of the
    scored pixels (FP only, PQ 0), and an ordinary row of the mIoU confusion matrix. Published numbers use this."""
    CLEAN = "clean"
    """Predicted class 0 is void: no PQ category, and no mIoU class (its pixels still count as misses of their GT
    class in mIoU; in PQ they are void, i.e. left out of unions and of FN counts as the reference treats void)."""


@dataclass(frozen=True)
class ClassQuality:
    """Matching statistics of one category."""

    class_id: int
    """Label id (0 only for the reference's predicted-void class)."""
    isthing: bool
    tp: int
    fp: int
    fn: int
    iou_sum: float
    """Sum of the IoUs of the matched (TP) pairs."""

    @property
    def pq(self) -> float:
        """Panoptic quality: iou_sum / (TP + FP/2 + FN/2), 0 when the denominator is 0."""
        denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
        return self.iou_sum / denominator if denominator > 0 else 0.0

    @property
    def sq(self) -> float:
        """Segmentation quality: mean IoU of the matches, 0 without matches."""
        return self.iou_sum / self.tp if self.tp > 0 else 0.0

    @property
    def rq(self) -> float:
        """Recognition quality: TP / (TP + FP/2 + FN/2), 0 when the denominator is 0."""
        denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
        return self.tp / denominator if denominator > 0 else 0.0


@dataclass(frozen=True)
class QualitySummary:
    """Mean PQ, SQ, RQ over a set of categories (NaN when the set is empty)."""

    pq: float
    sq: float
    rq: float
    n: int
    """Number of categories averaged."""


@dataclass(frozen=True)
class PanopticQualityResult:
    """PQ, SQ, RQ over all categories, things and stuff, with the per-category statistics behind them."""

    all: QualitySummary
    things: QualitySummary
    stuff: QualitySummary
    classes: tuple[ClassQuality, ...]
    """The categories averaged, in id order."""
    dropped_classes: tuple[int, ...] = ()
    """Classes present in the input but removed by the 0.5 % filter (PQ^scene only)."""


@dataclass(frozen=True)
class MeanIoUResult:
    """Mean IoU over the kept classes and the IoU of every label value."""

    miou: float
    class_iou: tuple[float, ...]
    """IoU of label values 0..21 (index = id); NaN where the class is ignored or absent from both sides."""


# --------------------------------------------------------------------------------------------------------------
# Shared matching engine on overlap tables


@dataclass(frozen=True)
class _MatchRules:
    """The points where Panoptic Lifting's PQ and panopticapi's PQ differ."""

    subtract_gt_under_pred_void: bool
    """Union also excludes GT pixels predicted void (PanLi), not only predicted pixels on GT void (both)."""
    skip_fn_mostly_pred_void: bool
    """An unmatched GT segment mostly predicted void is no FN (PanLi); panopticapi counts every one."""
    float32: bool
    """Ratios in float32 (PanLi's torch int64 division) or float64 (panopticapi's Python division)."""


_PANOPTIC_LIFTING = _MatchRules(subtract_gt_under_pred_void=True, skip_fn_mostly_pred_void=True, float32=True)
_PANOPTICAPI = _MatchRules(subtract_gt_under_pred_void=False, skip_fn_mostly_pred_void=False, float32=False)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, float32: bool) -> np.ndarray:
    """Elementwise numerator / denominator, both cast first (as torch casts int64 to float32 before dividing)."""
    dtype = np.float32 if float32 else np.float64
    return numerator.astype(dtype) / denominator.astype(dtype)


def _match(pred_keys: Int[np.ndarray, "R k"], gt_keys: Int[np.ndarray, "R k"], pred_class: Int[np.ndarray, " R"],
           gt_class: Int[np.ndarray, " R"], pixels: Int[np.ndarray, " R"], rules: _MatchRules
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Match predicted and GT segments given per-row segment keys; per-class (TP, FP, FN, IoU sum) over 0..21.

    A segment is a distinct key row; rows whose class is ``_VOID_CLASS`` are void. Returns four arrays indexed by
    class id (length NUM_LABELS).
    """
    _, p_first, p_index = np.unique(pred_keys, axis=0, return_index=True, return_inverse=True)
    _, g_first, g_index = np.unique(gt_keys, axis=0, return_index=True, return_inverse=True)
    p_index, g_index = p_index.reshape(-1), g_index.reshape(-1)
    p_cls, g_cls = pred_class[p_first], gt_class[g_first]  # class of each segment
    p_void, g_void = p_cls == _VOID_CLASS, g_cls == _VOID_CLASS
    weights = pixels.astype(np.float64)
    p_area = np.bincount(p_index, weights, minlength=len(p_cls)).astype(np.int64)
    g_area = np.bincount(g_index, weights, minlength=len(g_cls)).astype(np.int64)

    pairs, pair_index = np.unique(np.stack([p_index, g_index], axis=1), axis=0, return_inverse=True)
    inter = np.bincount(pair_index.reshape(-1), weights, minlength=len(pairs)).astype(np.int64)
    pp, gg = pairs[:, 0], pairs[:, 1]
    on_gt_void = g_void[gg]
    under_pred_void = p_void[pp]
    pred_on_gt_void = np.bincount(pp[on_gt_void], inter[on_gt_void], minlength=len(p_cls)).astype(np.int64)
    gt_under_pred_void = np.bincount(gg[under_pred_void], inter[under_pred_void],
                                     minlength=len(g_cls)).astype(np.int64)

    candidate = ~on_gt_void & ~under_pred_void & (p_cls[pp] == g_cls[gg])
    cp, cg, ci = pp[candidate], gg[candidate], inter[candidate]
    union = p_area[cp] - pred_on_gt_void[cp] + g_area[cg] - ci
    if rules.subtract_gt_under_pred_void:
        union = union - gt_under_pred_void[cg]
    iou = _ratio(ci, union, rules.float32)
    matched = iou > MATCH_IOU
    mp, mg = cp[matched], cg[matched]
    tp = np.bincount(p_cls[mp], minlength=NUM_LABELS)
    # Correctly rounded per-class sums: independent of segment order, so relabelling ids cannot move a bit.
    matched_cls, matched_iou = p_cls[mp], iou[matched].astype(np.float64)
    iou_sum = np.array([math.fsum(matched_iou[matched_cls == c]) for c in range(NUM_LABELS)])

    p_matched = np.zeros(len(p_cls), dtype=bool)
    p_matched[mp] = True
    g_matched = np.zeros(len(g_cls), dtype=bool)
    g_matched[mg] = True
    fn_segments = ~g_matched & ~g_void
    if rules.skip_fn_mostly_pred_void:
        fn_segments &= ~(_ratio(gt_under_pred_void, g_area, rules.float32) > 0.5)
    fp_segments = ~p_matched & ~p_void & ~(_ratio(pred_on_gt_void, p_area, rules.float32) > 0.5)
    fn = np.bincount(g_cls[fn_segments], minlength=NUM_LABELS)
    fp = np.bincount(p_cls[fp_segments], minlength=NUM_LABELS)
    return tp[:NUM_LABELS], fp[:NUM_LABELS], fn[:NUM_LABELS], iou_sum[:NUM_LABELS]


def _summaries(classes: Sequence[ClassQuality], dropped: Sequence[int] = ()) -> PanopticQualityResult:
    """Means over all, thing and stuff categories (NaN for an empty set)."""

    def summary(subset: Sequence[ClassQuality]) -> QualitySummary:
        if not subset:
            return QualitySummary(math.nan, math.nan, math.nan, 0)
        return QualitySummary(float(np.mean([c.pq for c in subset])), float(np.mean([c.sq for c in subset])),
                              float(np.mean([c.rq for c in subset])), len(subset))

    classes = tuple(sorted(classes, key=lambda c: c.class_id))
    return PanopticQualityResult(summary(classes), summary([c for c in classes if c.isthing]),
                                 summary([c for c in classes if not c.isthing]), classes, tuple(sorted(dropped)))


def _as_views(*arrays: Integer[np.ndarray, "V H W"]) -> list[np.ndarray]:
    """Numpy views of [V, H, W] label arrays of one shape."""
    out = [np.asarray(a) for a in arrays]
    if len({a.shape for a in out}) != 1 or out[0].ndim != 3:
        raise UserError(f"label arrays must all be [V, H, W] of one shape, got {[a.shape for a in out]}")
    return out


def _check_gt_classes(gt_semantics: np.ndarray) -> None:
    """GT class ids must be in the class table (the reference's confusion matrix has no row for others)."""
    if gt_semantics.size and int(gt_semantics.max()) >= NUM_LABELS:
        raise UserError(f"ground-truth class id {int(gt_semantics.max())} is outside the class table "
                        f"(0..{NUM_CLASSES}); rs_semantics must hold the reduced ScanNet classes of Panoptic Lifting")


# --------------------------------------------------------------------------------------------------------------
# PQ^scene


def _scene_categories(overlaps: SegmentOverlaps, protocol: Protocol) -> tuple[list[int], list[int]]:
    """Categories kept by the reference's filters, and the present classes the 0.5 % filter drops."""
    table = set(THING_IDS) | set(STUFF_IDS) | ({VOID_ID} if protocol is Protocol.REFERENCE else set())
    total = np.float32(overlaps.total)
    small: set[int] = set()
    present: set[int] = set()
    for labels in (overlaps.pred_semantics, overlaps.gt_semantics):
        ids, index = np.unique(labels, return_inverse=True)
        counts = np.bincount(index.reshape(-1), overlaps.pixels.astype(np.float64)).astype(np.int64)
        present |= set(ids.tolist())
        small |= set(ids[counts.astype(np.float32) / total < np.float32(ROBUST_FRACTION)].tolist())
    kept = sorted((table & present) - small)
    dropped = sorted(table & present & small)
    return kept, dropped


def scene_quality_from_overlaps(overlaps: SegmentOverlaps, *, protocol: Protocol = Protocol.REFERENCE
                                ) -> PanopticQualityResult:
    """PQ^scene of a whole scene's overlap table (all frames summed), Panoptic Lifting's protocol.

    Args:
        overlaps: table of the scene's pixels; rows with GT class 0 are dropped here.
        protocol: how predicted class 0 is scored.
    """
    _check_gt_classes(overlaps.gt_semantics)
    overlaps = overlaps.without_gt_void()
    if overlaps.total == 0:
        raise UserError("no pixel with a ground-truth class: every GT pixel is void (class 0), nothing to score")
    kept, dropped = _scene_categories(overlaps, protocol)
    kept_arr = np.asarray(kept, dtype=np.int64)
    stuff = np.asarray(sorted(STUFF_IDS | {VOID_ID}), dtype=np.int64)

    def segment_keys(classes: np.ndarray, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        is_category = np.isin(classes, kept_arr)
        seg_class = np.where(is_category, classes, _VOID_CLASS)
        seg_instance = np.where(is_category & ~np.isin(classes, stuff), instances, 0)  # stuff ids forced to 0
        return np.stack([seg_class, seg_instance], axis=1), seg_class

    pred_keys, pred_class = segment_keys(overlaps.pred_semantics, overlaps.pred_instances)
    gt_keys, gt_class = segment_keys(overlaps.gt_semantics, overlaps.gt_instances)
    tp, fp, fn, iou_sum = _match(pred_keys, gt_keys, pred_class, gt_class, overlaps.pixels, _PANOPTIC_LIFTING)
    classes = [ClassQuality(c, c in THING_IDS, int(tp[c]), int(fp[c]), int(fn[c]), float(iou_sum[c])) for c in kept]
    return _summaries(classes, dropped)


def panoptic_quality_scene(
    pred_semantics: Integer[np.ndarray, "V H W"],
    pred_instances: Integer[np.ndarray, "V H W"],
    gt_semantics: Integer[np.ndarray, "V H W"],
    gt_instances: Integer[np.ndarray, "V H W"],
    *,
    protocol: Protocol = Protocol.REFERENCE,
) -> PanopticQualityResult:
    """PQ^scene (Panoptic Lifting): all frames scored as one image, segments are (class, id) pairs of the scene.

    Resize first (``resize_nearest`` to 512x512) to reproduce published numbers; this function scores the
    arrays as given.

    Args:
        pred_semantics: [V, H, W] predicted class ids.
        pred_instances: [V, H, W] predicted instance ids (any integers, consistent across views).
        gt_semantics: [V, H, W] GT class ids, 0 = void.
        gt_instances: [V, H, W] GT instance ids, consistent across views.
        protocol: how predicted class 0 is scored.
    """
    arrays = _as_views(pred_semantics, pred_instances, gt_semantics, gt_instances)
    valid = arrays[2] != VOID_ID
    return scene_quality_from_overlaps(count_overlaps(*(a[valid] for a in arrays)), protocol=protocol)


def _panoptic_quality_scene(
    pred_semantics: Integer[np.ndarray, "V H W"],
    pred_instances: Integer[np.ndarray, "V H W"],
    gt_semantics: Integer[np.ndarray, "V H W"],
    gt_instances: Integer[np.ndarray, "V H W"],
    *,
    protocol: Protocol = Protocol.REFERENCE,
) -> PanopticQualityResult:
    """Slow twin of `panoptic_quality_scene`: the reference's per-pixel dictionary loops, transcribed."""
    valid = np.asarray(gt_semantics) != VOID_ID
    pred = list(zip(np.asarray(pred_semantics)[valid].tolist(), np.asarray(pred_instances)[valid].tolist()))
    target = list(zip(np.asarray(gt_semantics)[valid].tolist(), np.asarray(gt_instances)[valid].tolist()))
    _check_gt_classes(np.asarray(gt_semantics))
    things = set(THING_IDS)
    stuff = set(STUFF_IDS) | ({VOID_ID} if protocol is Protocol.REFERENCE else set())
    present = {c for c, _ in pred} | {c for c, _ in target}
    non_robust: set[int] = set()
    for side in (pred, target):
        counts = Counter(c for c, _ in side)
        total = sum(counts.values())
        non_robust |= {c for c, k in counts.items() if np.float32(k) / np.float32(total) < np.float32(0.005)}
    dropped = (things | stuff) & present & non_robust
    things = things & present - non_robust
    stuff = stuff & present - non_robust
    void = (1 + max([0, *things, *stuff]), 0)

    def preprocess(color: tuple[int, int]) -> tuple[int, int]:
        if color[0] in stuff:
            return (color[0], 0)
        return color if color[0] in things else void

    pred = [preprocess(c) for c in pred]
    target = [preprocess(c) for c in target]
    pred_areas, target_areas, inter = Counter(pred), Counter(target), Counter(zip(pred, target))
    stats = {c: [0, 0, 0, 0.0] for c in things | stuff}  # tp, fp, fn, iou_sum
    pred_matched, target_matched = set(), set()
    for (pred_color, target_color), intersection in inter.items():
        if target_color == void or pred_color[0] != target_color[0]:
            continue
        union = (pred_areas[pred_color] - inter.get((pred_color, void), 0) + target_areas[target_color]
                 - inter.get((void, target_color), 0) - intersection)
        iou = np.float32(intersection) / np.float32(union)
        if iou > 0.5:
            pred_matched.add(pred_color)
            target_matched.add(target_color)
            stats[pred_color[0]][0] += 1
            stats[pred_color[0]][3] += float(iou)
    for target_color in set(target_areas) - target_matched - {void}:
        if np.float32(inter.get((void, target_color), 0)) / np.float32(target_areas[target_color]) > 0.5:
            continue
        stats[target_color[0]][2] += 1
    for pred_color in set(pred_areas) - pred_matched - {void}:
        if np.float32(inter.get((pred_color, void), 0)) / np.float32(pred_areas[pred_color]) > 0.5:
            continue
        stats[pred_color[0]][1] += 1
    classes = [ClassQuality(c, c in THING_IDS, s[0], s[1], s[2], s[3]) for c, s in stats.items()]
    return _summaries(classes, sorted(dropped))


# --------------------------------------------------------------------------------------------------------------
# Per-view PQ (panopticapi)


def per_view_quality_from_overlaps(frames: Sequence[SegmentOverlaps]) -> PanopticQualityResult:
    """Per-view PQ (panopticapi convention) from one overlap table per frame, GT void rows included."""
    if not frames:
        raise UserError("no frame to score")
    table_ids = np.asarray(sorted(THING_IDS | STUFF_IDS), dtype=np.int64)
    things = np.asarray(sorted(THING_IDS), dtype=np.int64)
    keys_p, keys_g, cls_p, cls_g, pixels = [], [], [], [], []
    for index, frame in enumerate(frames):
        _check_gt_classes(frame.gt_semantics)
        for classes, instances, keys, cls in ((frame.pred_semantics, frame.pred_instances, keys_p, cls_p),
                                              (frame.gt_semantics, frame.gt_instances, keys_g, cls_g)):
            is_category = np.isin(classes, table_ids)
            seg_class = np.where(is_category, classes, _VOID_CLASS)
            seg_instance = np.where(np.isin(classes, things), instances, 0)
            keys.append(np.stack([np.full_like(seg_class, index), seg_class, seg_instance], axis=1))
            cls.append(seg_class)
        pixels.append(frame.pixels)
    tp, fp, fn, iou_sum = _match(np.concatenate(keys_p), np.concatenate(keys_g), np.concatenate(cls_p),
                                 np.concatenate(cls_g), np.concatenate(pixels), _PANOPTICAPI)
    classes = [ClassQuality(int(c), int(c) in THING_IDS, int(tp[c]), int(fp[c]), int(fn[c]), float(iou_sum[c]))
               for c in table_ids if tp[c] + fp[c] + fn[c] > 0]
    return _summaries(classes)


def panoptic_quality_per_view(
    pred_semantics: Integer[np.ndarray, "V H W"],
    pred_instances: Integer[np.ndarray, "V H W"],
    gt_semantics: Integer[np.ndarray, "V H W"],
    gt_instances: Integer[np.ndarray, "V H W"],
) -> PanopticQualityResult:
    """Per-view PQ: every frame its own image (panopticapi), statistics summed per category over the frames.

    Args:
        pred_semantics: [V, H, W] predicted class ids (0 and ids outside the table are void).
        pred_instances: [V, H, W] predicted instance ids (need only be consistent within a frame).
        gt_semantics: [V, H, W] GT class ids, 0 = void.
        gt_instances: [V, H, W] GT instance ids.
    """
    arrays = _as_views(pred_semantics, pred_instances, gt_semantics, gt_instances)
    return per_view_quality_from_overlaps([count_overlaps(*(a[v] for a in arrays)) for v in range(len(arrays[0]))])


def _panoptic_quality_per_view(
    pred_semantics: Integer[np.ndarray, "V H W"],
    pred_instances: Integer[np.ndarray, "V H W"],
    gt_semantics: Integer[np.ndarray, "V H W"],
    gt_instances: Integer[np.ndarray, "V H W"],
) -> PanopticQualityResult:
    """Slow twin of `panoptic_quality_per_view`: panopticapi's per-image loops, transcribed."""
    categories = THING_IDS | STUFF_IDS
    stats = {c: [0, 0, 0, 0.0] for c in categories}  # tp, fp, fn, iou_sum
    void = (VOID_ID, 0)
    for v in range(len(pred_semantics)):
        _check_gt_classes(np.asarray(gt_semantics[v]))

        def segment(c: int, i: int) -> tuple[int, int]:
            if c not in categories:
                return void
            return (c, i if c in THING_IDS else 0)

        pred = [segment(c, i) for c, i in zip(np.ravel(pred_semantics[v]).tolist(),
                                               np.ravel(pred_instances[v]).tolist())]
        gt = [segment(c, i) for c, i in zip(np.ravel(gt_semantics[v]).tolist(), np.ravel(gt_instances[v]).tolist())]
        pred_areas, gt_areas, inter = Counter(pred), Counter(gt), Counter(zip(gt, pred))
        gt_matched, pred_matched = set(), set()
        for (gt_label, pred_label), intersection in inter.items():
            if gt_label == void or pred_label == void or gt_label[0] != pred_label[0]:
                continue
            union = pred_areas[pred_label] + gt_areas[gt_label] - intersection - inter.get((void, pred_label), 0)
            iou = intersection / union
            if iou > 0.5:
                stats[gt_label[0]][0] += 1
                stats[gt_label[0]][3] += iou
                gt_matched.add(gt_label)
                pred_matched.add(pred_label)
        for gt_label in set(gt_areas) - gt_matched - {void}:
            stats[gt_label[0]][2] += 1
        for pred_label in set(pred_areas) - pred_matched - {void}:
            if inter.get((void, pred_label), 0) / pred_areas[pred_label] > 0.5:
                continue
            stats[pred_label[0]][1] += 1
    classes = [ClassQuality(c, c in THING_IDS, s[0], s[1], s[2], s[3]) for c, s in stats.items() if sum(s[:3]) > 0]
    return _summaries(classes)


# --------------------------------------------------------------------------------------------------------------
# mIoU


def _confusion_from_overlaps(overlaps: SegmentOverlaps) -> Float[np.ndarray, "22 22"]:
    """Confusion matrix [pred class, GT class] of the pixels with a GT class; predicted ids >= 22 are dropped."""
    _check_gt_classes(overlaps.gt_semantics)
    overlaps = overlaps.without_gt_void()
    keep = overlaps.pred_semantics < NUM_LABELS
    confusion = np.zeros((NUM_LABELS, NUM_LABELS), dtype=np.float64)
    np.add.at(confusion, (overlaps.pred_semantics[keep], overlaps.gt_semantics[keep]), overlaps.pixels[keep])
    return confusion


def _miou_from_confusion(confusion: Float[np.ndarray, "22 22"], protocol: Protocol) -> MeanIoUResult:
    """Per-class IoU with the reference's filter (< 0.5 % in both pred and GT -> ignored) and its NaN-mean."""
    diag = np.diag(confusion)
    pred_counts, gt_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    total = gt_counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = diag / (pred_counts + gt_counts - diag)
        ignored = (gt_counts / total < ROBUST_FRACTION) & (pred_counts / total < ROBUST_FRACTION)
    iou[ignored] = np.nan
    if protocol is Protocol.CLEAN:
        iou[VOID_ID] = np.nan
    miou = float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else math.nan
    return MeanIoUResult(miou, tuple(float(x) for x in iou))


def miou_from_overlaps(overlaps: SegmentOverlaps, *, protocol: Protocol = Protocol.REFERENCE) -> MeanIoUResult:
    """mIoU of a scene's overlap table (Panoptic Lifting's ``calculate_iou_folders``)."""
    return _miou_from_confusion(_confusion_from_overlaps(overlaps), protocol)


def miou(pred_semantics: Integer[np.ndarray, "*shape"], gt_semantics: Integer[np.ndarray, "*shape"], *,
         protocol: Protocol = Protocol.REFERENCE) -> MeanIoUResult:
    """Semantic mIoU over all pixels with a GT class, one confusion matrix for the whole scene.

    Args:
        pred_semantics: predicted class ids (ids >= 22 are left out of the matrix, as in the reference).
        gt_semantics: GT class ids, 0 = void (dropped).
        protocol: whether predicted class 0 is an ordinary class (reference) or no class (clean).
    """
    pred, gt = np.asarray(pred_semantics), np.asarray(gt_semantics)
    zeros = np.zeros_like(pred)
    return miou_from_overlaps(count_overlaps(pred, zeros, gt, zeros), protocol=protocol)


def _miou(pred_semantics: Integer[np.ndarray, "*shape"], gt_semantics: Integer[np.ndarray, "*shape"], *,
          protocol: Protocol = Protocol.REFERENCE) -> MeanIoUResult:
    """Slow twin of `miou`: per-class pixel counting in plain Python."""
    _check_gt_classes(np.asarray(gt_semantics))
    pairs = [(p, g) for p, g in zip(np.ravel(pred_semantics).tolist(), np.ravel(gt_semantics).tolist())
             if g != VOID_ID and 0 <= p < NUM_LABELS]
    total = len(pairs)
    ious = []
    for c in range(NUM_LABELS):
        inter = sum(1 for p, g in pairs if p == c and g == c)
        n_pred = sum(1 for p, _ in pairs if p == c)
        n_gt = sum(1 for _, g in pairs if g == c)
        union = n_pred + n_gt - inter
        ignored = total == 0 or (n_pred / total < 0.005 and n_gt / total < 0.005)
        if ignored or union == 0 or (protocol is Protocol.CLEAN and c == VOID_ID):
            ious.append(math.nan)
        else:
            ious.append(inter / union)
    kept = [x for x in ious if not math.isnan(x)]
    return MeanIoUResult(sum(kept) / len(kept) if kept else math.nan, tuple(ious))

