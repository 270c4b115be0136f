"""`panst3r-splat eval`: PQ^scene / mIoU as Panoptic Lifting computes them, per-view PQ as panopticapi does.

Hand-computed cases write their arithmetic next to the expected values. IoUs of PQ^scene are float32 in the
reference (torch divides int64 counts in float32), hence the relative tolerance of 1e-6 on those.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _typecheck import rejects
from panst3r_splat.core.class_table import STUFF_IDS, THING_IDS
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.evaluation import (
    Protocol,
    count_overlaps,
    evaluate_folders,
    miou,
    panoptic_quality_per_view,
    panoptic_quality_scene,
    resize_nearest,
)
from panst3r_splat.pipeline.evaluation.metrics import _miou, _panoptic_quality_per_view, _panoptic_quality_scene
from panst3r_splat.pipeline.evaluation.resize import pil_nearest_indices
from panst3r_splat.pipeline.frontends.cli import EXIT_USER_ERROR, main

F32 = 1e-6  # relative tolerance for float32 IoUs
WALL, FLOOR, CABINET, CHAIR, SOFA = 1, 2, 3, 5, 6


def _scene_scores(pred_sem, pred_inst, gt_sem, gt_inst, protocol=Protocol.REFERENCE):
    return panoptic_quality_scene(*(np.asarray(a) for a in (pred_sem, pred_inst, gt_sem, gt_inst)), protocol=protocol)


# ---------------------------------------------------------------------------------------------------------------
# Random scenes for laws and twin comparisons


def _random_scene(seed: int, views: int = 3, height: int = 16, width: int = 20):
    """GT made of 4x4 blocks of a few classes (with void and a rare class), and a perturbed prediction.

    Seeds cycle through three regimes of predicted class 0: none, under the 0.5 % filter, and plentiful with a
    whole GT segment predicted void and a predicted segment lying on a GT-void block (the mostly-void rules).
    """
    rng = np.random.default_rng(seed)
    classes = np.array([WALL, FLOOR, CABINET, CHAIR, SOFA, 4, 15])
    block = rng.integers(0, len(classes), size=(views, height // 4, width // 4))
    ones = np.ones((1, 4, 4), dtype=np.int64)
    gt_sem = np.kron(classes[block], ones).astype(np.uint8)
    gt_inst = np.kron(rng.integers(1, 4, size=block.shape), ones).astype(np.uint16)
    gt_inst[np.isin(gt_sem, list(STUFF_IDS))] = 0
    gt_sem[rng.random(gt_sem.shape) < 0.05] = 0  # scattered void
    gt_sem[rng.random(gt_sem.shape) < 0.004] = 18  # a class under the 0.5 % threshold most of the time
    pred_sem = gt_sem.copy()
    flip = rng.random(gt_sem.shape) < 0.15
    pred_sem[flip] = rng.choice([WALL, FLOOR, CHAIR, 4, 25], size=int(flip.sum()))  # 25 is outside the table
    pred_sem[rng.random(gt_sem.shape) < [0.0, 0.002, 0.1][seed % 3]] = 0
    pred_inst = rng.permutation(50)[:4][gt_inst].astype(np.uint16)
    split = rng.random(gt_sem.shape) < 0.1
    pred_inst[split] = rng.integers(0, 40, size=int(split.sum()))
    if seed % 3 == 2:
        target = (gt_sem == gt_sem[0, 0, 0]) & (gt_inst == gt_inst[0, 0, 0])
        pred_sem[target] = 0  # a GT segment predicted void
        pred_sem[0, -4:, -4:], pred_inst[0, -4:, -4:], gt_sem[0, -4:, -4:] = CHAIR, 33, 0  # a pred segment on void
    return pred_sem, pred_inst, gt_sem, gt_inst


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("protocol", list(Protocol))
def test_scene_pq_matches_its_twin(seed: int, protocol: Protocol) -> None:
    scene = _random_scene(seed)
    fast, slow = panoptic_quality_scene(*scene, protocol=protocol), _panoptic_quality_scene(*scene, protocol=protocol)
    assert fast.classes == slow.classes  # identical TP/FP/FN and IoU sums (float32 IoUs summed exactly)
    assert fast.dropped_classes == slow.dropped_classes
    for part in ("all", "things", "stuff"):
        a, b = getattr(fast, part), getattr(slow, part)
        assert a.n == b.n
        np.testing.assert_allclose([a.pq, a.sq, a.rq], [b.pq, b.sq, b.rq], rtol=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_per_view_pq_and_miou_match_their_twins(seed: int) -> None:
    scene = _random_scene(seed)
    fast, slow = panoptic_quality_per_view(*scene), _panoptic_quality_per_view(*scene)
    assert [(c.class_id, c.tp, c.fp, c.fn) for c in fast.classes] == [(c.class_id, c.tp, c.fp, c.fn)
                                                                      for c in slow.classes]
    np.testing.assert_allclose([fast.all.pq, fast.all.sq, fast.all.rq], [slow.all.pq, slow.all.sq, slow.all.rq],
                               rtol=1e-12)
    for protocol in Protocol:
        a, b = miou(scene[0], scene[2], protocol=protocol), _miou(scene[0], scene[2], protocol=protocol)
        np.testing.assert_allclose(a.class_iou, b.class_iou, rtol=1e-12)
        assert a.miou == pytest.approx(b.miou, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_ground_truth_as_prediction_scores_one(seed: int) -> None:
    _, _, gt_sem, gt_inst = _random_scene(seed)
    for protocol in Protocol:
        scene = panoptic_quality_scene(gt_sem, gt_inst, gt_sem, gt_inst, protocol=protocol)
        assert (scene.all.pq, scene.all.sq, scene.all.rq) == (1.0, 1.0, 1.0)
        assert miou(gt_sem, gt_sem, protocol=protocol).miou == 1.0
    view = panoptic_quality_per_view(gt_sem, gt_inst, gt_sem, gt_inst)
    assert (view.all.pq, view.things.pq, view.stuff.pq) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("seed", range(4))
def test_invariant_to_permuting_predicted_ids(seed: int) -> None:
    pred_sem, pred_inst, gt_sem, gt_inst = _random_scene(seed)
    rng = np.random.default_rng(100 + seed)
    table = rng.permutation(60000).astype(np.uint16)  # a bijection of the ids onto arbitrary large ids
    scene = _scene_scores(pred_sem, pred_inst, gt_sem, gt_inst)
    view = panoptic_quality_per_view(pred_sem, pred_inst, gt_sem, gt_inst)
    assert _scene_scores(pred_sem, table[pred_inst], gt_sem, gt_inst) == scene
    assert panoptic_quality_per_view(pred_sem, table[pred_inst], gt_sem, gt_inst) == view
    # Per-view PQ only needs ids consistent within a frame: an independent bijection per frame changes nothing.
    per_frame = np.stack([rng.permutation(60000).astype(np.uint16)[pred_inst[v]] for v in range(len(pred_inst))])
    assert panoptic_quality_per_view(pred_sem, per_frame, gt_sem, gt_inst) == view


def test_splitting_an_object_across_views_lowers_scene_pq_only() -> None:
    _, _, gt_sem, gt_inst = _random_scene(3, views=4)
    chair = (gt_sem == CHAIR) & (gt_inst == gt_inst[gt_sem == CHAIR].max())
    pred_inst = gt_inst.copy()
    pred_inst[2:][chair[2:]] = 999  # the same chair gets another id in the last two views
    scene = _scene_scores(gt_sem, pred_inst, gt_sem, gt_inst)
    view = panoptic_quality_per_view(gt_sem, pred_inst, gt_sem, gt_inst)
    assert scene.all.pq < 1.0 and scene.things.pq < 1.0
    assert view.all.pq == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Hand-computed cases

# One 2x6 frame. GT: wall (stuff, ids 3/4 forced to 0) on 5 px, void on 1 px, chair #1 and chair #2 (3 px each).
GT_SEM = np.array([[[WALL, WALL, WALL, CHAIR, CHAIR, CHAIR], [WALL, WALL, 0, CHAIR, CHAIR, CHAIR]]])
GT_INST = np.array([[[3, 3, 4, 1, 1, 1], [4, 4, 0, 2, 2, 2]]])


def test_hand_case_things_and_stuff() -> None:
    pred_sem = [[[WALL, WALL, CHAIR, CHAIR, CHAIR, CHAIR], [WALL, WALL, WALL, CHAIR, CHAIR, CHAIR]]]
    pred_inst = [[[9, 8, 7, 7, 7, 7], [1, 1, 1, 8, 8, 8]]]
    r = _scene_scores(pred_sem, pred_inst, GT_SEM, GT_INST)
    # GT-void pixel (row 1, col 2) dropped: 11 px. wall: pred 4, GT 5, inter 4 -> IoU 4/5 = 0.8 (TP).
    # chair 7 (4 px) vs chair 1 (3 px): inter 3, union 4 -> 0.75 (TP); chair 8 vs chair 2: 1.0 (TP).
    # PQ_wall = 0.8 / 1; PQ_chair = (0.75 + 1) / 2 = 0.875; all = (0.8 + 0.875) / 2 = 0.8375.
    assert r.all.pq == pytest.approx(0.8375, rel=F32)
    assert r.all.sq == pytest.approx(0.8375, rel=F32) and r.all.rq == 1.0
    assert r.things.pq == pytest.approx(0.875, rel=F32) and r.stuff.pq == pytest.approx(0.8, rel=F32)
    assert [(c.class_id, c.tp, c.fp, c.fn) for c in r.classes] == [(WALL, 1, 0, 0), (CHAIR, 2, 0, 0)]


# The same GT, predicted class 0 (void) on row 1, col 0 instead of wall.
PRED_SEM_VOID = np.array([[[WALL, WALL, CHAIR, CHAIR, CHAIR, CHAIR], [0, WALL, WALL, CHAIR, CHAIR, CHAIR]]])
PRED_INST_VOID = np.array([[[9, 8, 7, 7, 7, 7], [0, 1, 1, 8, 8, 8]]])


def test_hand_case_predicted_void_reference_quirk() -> None:
    r = _scene_scores(PRED_SEM_VOID, PRED_INST_VOID, GT_SEM, GT_INST, Protocol.REFERENCE)
    # Class 0 covers 1/11 >= 0.5 % of the scored pixels: a stuff category with one FP -> PQ_0 = 0, RQ_0 = 0.
    # wall: pred 3, GT 5, inter 3, nothing void -> IoU 3/5 = 0.6. chair 0.875 as above.
    # all = (0.6 + 0 + 0.875) / 3 = 0.491666..; stuff = (0.6 + 0) / 2 = 0.3; RQ all = (1 + 0 + 1) / 3.
    assert r.all.n == 3 and [c.class_id for c in r.classes] == [0, WALL, CHAIR]
    assert r.all.pq == pytest.approx(1.475 / 3, rel=F32)
    assert r.stuff.pq == pytest.approx(0.3, rel=F32) and r.things.pq == pytest.approx(0.875, rel=F32)
    assert r.all.sq == pytest.approx(1.475 / 3, rel=F32)  # SQ_0 = 0 (no TP) counts in the mean too
    assert r.all.rq == pytest.approx(2 / 3, rel=1e-12)
    # mIoU: wall 3 / (3 + 5 - 3) = 0.6, chair 6 / 7, class 0: 0 / 1 = 0 -> (0.6 + 6/7 + 0) / 3.
    m = miou(PRED_SEM_VOID, GT_SEM)
    assert m.miou == pytest.approx((0.6 + 6 / 7) / 3, rel=1e-12)
    assert m.class_iou[0] == 0.0 and math.isnan(m.class_iou[2])


def test_hand_case_predicted_void_clean() -> None:
    r = _scene_scores(PRED_SEM_VOID, PRED_INST_VOID, GT_SEM, GT_INST, Protocol.CLEAN)
    # Class 0 is void: wall union = |P| - |P n GT void| + |G| - |G n pred void| - |P n G| = 3 - 0 + 5 - 1 - 3 = 4,
    # IoU 3/4 = 0.75. all = (0.75 + 0.875) / 2 = 0.8125.
    assert r.all.n == 2
    assert r.all.pq == pytest.approx(0.8125, rel=F32) and r.stuff.pq == pytest.approx(0.75, rel=F32)
    # mIoU drops class 0 from the mean; the void pixel still misses the wall: (0.6 + 6/7) / 2.
    assert miou(PRED_SEM_VOID, GT_SEM, protocol=Protocol.CLEAN).miou == pytest.approx((0.6 + 6 / 7) / 2, rel=1e-12)


def test_hand_case_per_view_keeps_gt_void_and_ignores_predicted_void() -> None:
    r = panoptic_quality_per_view(*(np.asarray(a) for a in (PRED_SEM_VOID, PRED_INST_VOID, GT_SEM, GT_INST)))
    # panopticapi on the full frame (12 px): pred wall = 4 px incl. the GT-void pixel, GT wall 5, inter 3.
    # union = 4 + 5 - 3 - |P n GT void| (1) = 5 -> IoU 0.6 (TP); the pred-void pixel is no segment.
    # chair 0.75 and 1.0 -> 0.875; all = (0.6 + 0.875) / 2 = 0.7375.
    assert r.all.pq == pytest.approx(0.7375, rel=1e-12)
    assert r.stuff.pq == pytest.approx(0.6, rel=1e-12) and r.things.pq == pytest.approx(0.875, rel=1e-12)


def test_hand_case_half_percent_filter() -> None:
    # One 10x40 frame (400 px): GT wall on the left half, sofa #1 on the right half.
    gt_sem = np.zeros((1, 10, 40), np.uint8)
    gt_sem[:, :, :20], gt_sem[:, :, 20:] = WALL, SOFA
    gt_inst = np.where(gt_sem == SOFA, 1, 0).astype(np.uint16)
    # Prediction: wall on the left half except 1 px of cabinet (1/400 = 0.25 % < 0.5 %), floor on the right half.
    pred_sem = np.where(gt_sem == WALL, WALL, FLOOR).astype(np.uint8)
    pred_sem[0, 0, 0] = CABINET
    pred_inst = np.zeros_like(gt_inst)
    r = _scene_scores(pred_sem, pred_inst, gt_sem, gt_inst)
    # Cabinet is dropped, its pixel becomes predicted void: wall union = 199 - 0 + 200 - 1 - 199 = 199 -> IoU 1.
    # Sofa is absent from the prediction, so not dropped (the filter only looks at classes present): an FN, PQ 0.
    # Floor is absent from the GT: an FP, PQ 0. PQ = (1 + 0 + 0) / 3; things (sofa) 0; stuff (wall, floor) 0.5.
    assert r.dropped_classes == (CABINET,)
    assert [(c.class_id, c.tp, c.fp, c.fn) for c in r.classes] == [(WALL, 1, 0, 0), (FLOOR, 0, 1, 0), (SOFA, 0, 0, 1)]
    assert r.all.pq == pytest.approx(1 / 3, rel=1e-12) and r.things.pq == 0.0 and r.stuff.pq == 0.5
    # mIoU ignores cabinet (< 0.5 % in both): wall 199/200, sofa 0, floor 0 -> 0.995 / 3.
    assert miou(pred_sem, gt_sem).miou == pytest.approx(0.995 / 3, rel=1e-12)


def test_hand_case_id_switch_across_views() -> None:
    # Three 1x4 frames: GT wall, wall, chair #1, chair #1 in each. The prediction calls the chair 7 in the first
    # two frames and 8 in the third.
    gt_sem = np.array([[[WALL, WALL, CHAIR, CHAIR]]] * 3)  # [3, 1, 4]
    gt_inst = np.array([[[0, 0, 1, 1]]] * 3)
    pred_inst = np.array([[[0, 0, 7, 7]], [[0, 0, 7, 7]], [[0, 0, 8, 8]]])
    r = _scene_scores(gt_sem, pred_inst, gt_sem, gt_inst)
    # Scene: GT chair = 6 px; pred 7 = 4 px inside it -> IoU 4/6 (TP); pred 8 = 2 px -> FP.
    # PQ_chair = (2/3) / (1 + 0.5) = 4/9, SQ 2/3, RQ 2/3; PQ_wall = 1; PQ = (1 + 4/9) / 2 = 13/18.
    assert r.all.pq == pytest.approx(13 / 18, rel=F32) and r.things.sq == pytest.approx(2 / 3, rel=F32)
    assert r.things.rq == pytest.approx(2 / 3, rel=1e-12)
    # Per view every frame is perfect.
    assert panoptic_quality_per_view(gt_sem, pred_inst, gt_sem, gt_inst).all.pq == 1.0
    # Four frames with the chair called 7 twice and 8 twice: IoU 4/8 = 0.5 exactly, which is no match (> 0.5).
    gt4, inst4 = np.concatenate([gt_sem, gt_sem[:1]]), np.concatenate([gt_inst, gt_inst[:1]])
    pred4 = np.array([[[0, 0, 7, 7]], [[0, 0, 7, 7]], [[0, 0, 8, 8]], [[0, 0, 8, 8]]])
    r4 = _scene_scores(gt4, pred4, gt4, inst4)
    assert [(c.class_id, c.tp, c.fp, c.fn) for c in r4.classes] == [(WALL, 1, 0, 0), (CHAIR, 0, 2, 1)]
    assert r4.all.pq == 0.5


# ---------------------------------------------------------------------------------------------------------------
# Cross-check against torchmetrics where the definitions coincide


def _blocky(seed: int, views: int, void: bool):
    """Scenes where every present class covers whole 4x4 blocks of an 8x8-block frame (>= 1/64 of the pixels,
    well over 0.5 %), and the prediction uses table classes only (no predicted void)."""
    rng = np.random.default_rng(seed)
    classes = np.array([WALL, FLOOR, CABINET, CHAIR, SOFA, 4])
    gt_block = rng.integers(0, len(classes), size=(views, 8, 8))
    ones = np.ones((1, 4, 4), dtype=np.int64)
    gt_sem = np.kron(classes[gt_block], ones)
    gt_inst = np.kron(rng.integers(1, 3, size=gt_block.shape), ones)
    pred_block = np.where(rng.random(gt_block.shape) < 0.25, rng.integers(0, len(classes), gt_block.shape), gt_block)
    pred_sem = np.kron(classes[pred_block], ones)
    pred_inst = np.kron(np.where(rng.random(gt_block.shape) < 0.2, 5, rng.integers(1, 3, gt_block.shape)), ones)
    if void:
        gt_sem[np.kron(rng.random(gt_block.shape) < 0.1, ones).astype(bool)] = 0
    return pred_sem, pred_inst, gt_sem, gt_inst


def _torchmetrics_pq(pred_sem, pred_inst, gt_sem, gt_inst) -> list[float]:
    from torchmetrics.detection import PanopticQuality

    metric = PanopticQuality(things=set(THING_IDS), stuffs=set(STUFF_IDS), allow_unknown_preds_category=True,
                             return_sq_and_rq=True)
    preds = torch.from_numpy(np.stack([pred_sem, pred_inst], axis=-1).astype(np.int64))
    target = torch.from_numpy(np.stack([gt_sem, gt_inst], axis=-1).astype(np.int64))
    metric.update(preds, target)
    return [float(x) for x in metric.compute()]


@pytest.mark.parametrize("seed", range(3))
def test_scene_pq_equals_torchmetrics_on_the_concatenated_scene(seed: int) -> None:
    # No predicted void and no class under 0.5 %: the reference's filters do nothing, every kept class has a
    # TP, FP or FN, and torchmetrics on the scene as one image (batch of 1) uses the same void-aware union.
    pred_sem, pred_inst, gt_sem, gt_inst = _blocky(seed, views=4, void=True)
    valid = gt_sem != 0
    ours = _scene_scores(pred_sem, pred_inst, gt_sem, gt_inst)
    flat = [a[valid][None] for a in (pred_sem, pred_inst, gt_sem, gt_inst)]  # [1, P]
    np.testing.assert_allclose([ours.all.pq, ours.all.sq, ours.all.rq], _torchmetrics_pq(*flat), rtol=F32)


@pytest.mark.parametrize("seed", range(3))
def test_per_view_pq_equals_torchmetrics_per_image(seed: int) -> None:
    # torchmetrics scores each batch element as its own image and sums per class, as panopticapi does; without
    # predicted void its extra void terms vanish, and GT void (class 0, unknown to it) is void on both sides.
    scene = _blocky(seed, views=3, void=True)
    ours = panoptic_quality_per_view(*scene)
    np.testing.assert_allclose([ours.all.pq, ours.all.sq, ours.all.rq], _torchmetrics_pq(*scene), rtol=F32)


# ---------------------------------------------------------------------------------------------------------------
# Resize


@pytest.mark.parametrize("mode,dtype", [("L", np.uint8), ("I", np.int32), ("I;16", np.uint16)])
def test_resize_to_512_matches_pillow(mode: str, dtype: type) -> None:
    rng = np.random.default_rng(0)
    for height, width in [(144, 192), (480, 640), (968, 1296), (37, 1001), (512, 512), (700, 300)]:
        labels = rng.integers(0, 200, size=(height, width)).astype(dtype)
        image = Image.fromarray(labels)
        assert image.mode == mode
        expected = np.array(image.resize((512, 512), Image.NEAREST))
        np.testing.assert_array_equal(resize_nearest(labels, 512, 512), expected)


def test_resize_to_any_size_matches_pillow_8_bit() -> None:
    # Pillow's 8/32-bit path accumulates the sampling position by repeated addition; we follow it exactly.
    rng = np.random.default_rng(1)
    for _ in range(200):
        n_in, n_out = (int(x) for x in rng.integers(1, 1200, size=2))
        image = Image.fromarray((np.arange(n_in) % 251).astype(np.uint8)[None])
        expected = np.array(image.resize((n_out, 1), Image.NEAREST))[0]
        np.testing.assert_array_equal(pil_nearest_indices(n_in, n_out) % 251, expected)


# ---------------------------------------------------------------------------------------------------------------
# Folders and the command line


def _write_scene(root: Path, frames: dict[str, tuple[np.ndarray, np.ndarray]], split: dict[str, list[str]],
                 sem_dir: str, inst_dir: str) -> None:
    (root / sem_dir).mkdir(parents=True, exist_ok=True)
    (root / inst_dir).mkdir(parents=True, exist_ok=True)
    for name, (sem, inst) in frames.items():
        Image.fromarray(sem.astype(np.uint8)).save(root / sem_dir / f"{name}.png")
        Image.fromarray(inst.astype(np.uint16)).save(root / inst_dir / f"{name}.png")
    if split:
        (root / "splits.json").write_text(json.dumps(split))


@pytest.fixture()
def tiny_scene(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A 4-frame 36x48 scene (frames 0..3, test = 1 and 3) written as PNGs."""
    pred_sem, pred_inst, gt_sem, gt_inst = _random_scene(7, views=4, height=36, width=48)
    frames = {str(v): (gt_sem[v], gt_inst[v]) for v in range(4)}
    _write_scene(tmp_path / "scene", frames, {"train": ["0", "2"], "test": ["1", "3"]}, "rs_semantics", "rs_instance")
    return tmp_path / "scene", {str(v): (pred_sem[v], pred_inst[v]) for v in range(4)}


def test_folder_scores_equal_array_scores_after_pillow_resize(tiny_scene, tmp_path: Path) -> None:
    scene, preds = tiny_scene
    _write_scene(tmp_path / "pred", preds, {}, "pred_semantics", "pred_surrogateid")
    report = evaluate_folders(scene, tmp_path / "pred")

    def load(path: Path) -> np.ndarray:  # the reference's read_and_resize_labels
        return np.array(Image.open(path).resize((512, 512), Image.NEAREST))

    arrays = [np.stack([load(root / sub / f"{f}.png") for f in ("1", "3")])
              for root, sub in [(tmp_path / "pred", "pred_semantics"), (tmp_path / "pred", "pred_surrogateid"),
                                (scene, "rs_semantics"), (scene, "rs_instance")]]
    assert report.frames == ("1", "3")
    assert report.pq_scene == panoptic_quality_scene(*arrays)
    assert report.pq_per_view == panoptic_quality_per_view(*arrays)
    assert report.miou.miou == miou(arrays[0], arrays[2]).miou


def test_cli_end_to_end(tiny_scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene, _ = tiny_scene
    # Ground truth copied as prediction scores 1.0 everywhere.
    gt = {f: (np.array(Image.open(scene / "rs_semantics" / f"{f}.png")),
              np.array(Image.open(scene / "rs_instance" / f"{f}.png"))) for f in ("0", "1", "2", "3")}
    _write_scene(tmp_path / "pred", gt, {}, "pred_semantics", "pred_surrogateid")
    out_json = tmp_path / "scores" / "eval.json"
    code = main(["eval", "--gt", str(scene), "--pred", str(tmp_path / "pred"), "--json", str(out_json)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "PQ^scene        1.000   1.000   1.000" in stdout and "mIoU" in stdout
    scores = json.loads(out_json.read_text())
    assert scores["pq_scene"]["all"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": scores["pq_scene"]["all"]["n"]}
    assert scores["miou"]["miou"] == 1.0 and scores["pq_per_view"]["all"]["pq"] == 1.0
    assert scores["frames"] == ["1", "3"] and scores["size"] == 512 and scores["protocol"] == "reference"

    clean_json = tmp_path / "clean.json"
    code = main(["eval", "--gt", str(scene), "--pred", str(tmp_path / "pred"), "--clean", "--size", "native",
                 "--json", str(clean_json)])
    capsys.readouterr()
    clean = json.loads(clean_json.read_text())
    assert code == 0 and clean["protocol"] == "clean" and clean["size"] == "native"
    assert clean["pq_scene"]["all"]["pq"] == 1.0

    # A frame of the split missing from the predictions is a one-line error naming it.
    (tmp_path / "pred" / "pred_surrogateid" / "3.png").unlink()
    code = main(["eval", "--gt", str(scene), "--pred", str(tmp_path / "pred"), "--clean"])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert "lacks frame 3" in err and len(err.strip().splitlines()) == 1


def test_bad_inputs_are_user_errors(tiny_scene, tmp_path: Path) -> None:
    scene, preds = tiny_scene
    _write_scene(tmp_path / "pred", preds, {}, "pred_semantics", "pred_surrogateid")
    with pytest.raises(UserError, match="split 'val'"):
        evaluate_folders(scene, tmp_path / "pred", split="val")
    with pytest.raises(UserError, match="pred_semantics is missing"):
        evaluate_folders(scene, tmp_path)
    Image.fromarray(np.zeros((36, 48, 3), np.uint8)).save(tmp_path / "pred" / "pred_semantics" / "1.png")
    with pytest.raises(UserError, match="single-channel"):
        evaluate_folders(scene, tmp_path / "pred")
    with pytest.raises(UserError, match="outside the class table"):
        panoptic_quality_scene(*(np.full((1, 2, 2), 30) for _ in range(4)))
    with rejects(UserError, match="one shape"):
        panoptic_quality_scene(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)), np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    half = {"0": tuple(a[::2, ::2] for a in preds["0"])}  # frame 0 predicted at half resolution
    _write_scene(tmp_path / "pred", half, {}, "pred_semantics", "pred_surrogateid")
    assert evaluate_folders(scene, tmp_path / "pred", split="train").frames == ("0", "2")  # both go to 512x512
    with pytest.raises(UserError, match="--size 512"):
        evaluate_folders(scene, tmp_path / "pred", size=None, split="train")
    with pytest.raises(UserError, match="negative"):
        count_overlaps(*(np.full((2, 2), -1) for _ in range(4)))
