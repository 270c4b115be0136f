"""The predictions folder: round trip without pickle, atomic writes, validation, label PNGs at original size,
class-set files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panst3r_splat.core import class_table
from panst3r_splat.core import class_sets
from panst3r_splat.core import predictions as pio
from panst3r_splat.core.images import plan_resize

V, H, W, Q, K = 2, 16, 32, 4, 3


def _predictions(seed: int = 0, **overrides) -> pio.Predictions:
    rng = np.random.default_rng(seed)
    panoptic = np.zeros((V, H, W), dtype=np.int32)
    panoptic[:, :, 8:20] = 3
    panoptic[:, :, 20:] = 7
    plan = plan_resize(40, 64, 32)  # 40x64 original -> crop 32 rows... -> 16x32 model (2:1 bucket)
    fields = dict(
        image_names=np.array(["frame_0.jpg", "frame_1.jpg"]),
        images=rng.integers(0, 256, size=(V, H, W, 3), dtype=np.uint8),
        pts3d=rng.normal(size=(V, H, W, 3)).astype(np.float32),
        pts3d_local=rng.normal(size=(V, H, W, 3)).astype(np.float32),
        conf=rng.uniform(1, 6, size=(V, H, W)).astype(np.float32),
        mask_logits=rng.normal(size=(V, Q, H // 2, W // 2)).astype(np.float32),
        class_logits=rng.normal(size=(Q, K)).astype(np.float32),
        class_names=np.array(["wall", "chair", "lamp"]),
        class_ids=np.array([1, 5, 19], dtype=np.int32),
        isthing=np.array([False, True, False]),
        orig_hw=np.array([[40, 64]] * V, dtype=np.int32),
        to_orig=np.stack([plan.to_orig()] * V),
        keyframes=np.array([0, 1], dtype=np.int64),
        K=np.tile(np.eye(3, dtype=np.float32), (V, 1, 1)),
        T_world_cam=np.tile(np.eye(4, dtype=np.float32), (V, 1, 1)),
        panoptic=panoptic,
    )
    fields.update(overrides)
    return pio.Predictions(**fields)


SEGMENTS = [
    {"id": 3, "category_id": 1, "isthing": True, "score": 0.9, "query_id": 2},
    {"id": 7, "category_id": 0, "isthing": False, "score": 0.5, "query_id": 0, "area": 2 * 16 * 12},
]


def _save(tmp_path: Path, pred=None) -> Path:
    return pio.save_predictions(pred or _predictions(), tmp_path / "pred", SEGMENTS)


# ------------------------------------------------------------------------------------------------- round trip


def test_round_trip_without_pickle(tmp_path):
    pred = _predictions()
    folder = pio.save_predictions(pred, tmp_path / "pred", SEGMENTS)
    with np.load(folder / pio.PREDICTIONS_FILE, allow_pickle=False) as npz:
        assert set(npz.files) == set(pio.PREDICTION_KEYS) | set(pio.CAMERA_KEYS)
        assert npz["image_names"].dtype.kind == "U" and npz["class_names"].dtype.kind == "U"
        assert npz["class_ids"].dtype == np.int32 and npz["isthing"].dtype == bool
        assert npz["keyframes"].dtype == np.int64 and npz["panoptic"].dtype == np.int32
    loaded = pio.load_predictions(folder)
    for key in pio.PREDICTION_KEYS:
        a, b = getattr(pred, key), getattr(loaded, key)
        assert a.dtype == b.dtype, key
        np.testing.assert_array_equal(a, b, err_msg=key)


def _with_camera_record() -> pio.Predictions:
    pts3d = np.random.default_rng(1).normal(size=(V, H, W, 3)).astype(np.float32)
    pts3d[1] = np.nan
    T = np.tile(np.eye(4, dtype=np.float32), (V, 1, 1))
    T[1] = np.nan
    residuals = np.array([[1, 250, 0.4, 0.7], [np.nan] * 4], dtype=np.float32)
    return _predictions(pts3d=pts3d, T_world_cam=T, camera_source="matches", camera_ok=np.array([True, False]),
                        camera_scale=np.array([1.0, np.nan]), camera_residuals=residuals)


def test_camera_record_round_trips_and_is_listed_in_cameras_json(tmp_path):
    pred = _with_camera_record()
    folder = _save(tmp_path, pred)
    loaded = pio.load_predictions(folder)
    assert loaded.camera_source == "matches"
    np.testing.assert_array_equal(loaded.camera_ok, [True, False])
    np.testing.assert_array_equal(loaded.camera_scale, pred.camera_scale)
    np.testing.assert_array_equal(loaded.camera_residuals, pred.camera_residuals)
    import json

    cameras = json.loads((folder / pio.CAMERAS_FILE).read_text())
    assert cameras["source"] == "matches"
    first, second = cameras["views"]
    assert first == {"name": "frame_0.jpg", "source": "matches", "status": "ok", "scale": 1.0, "num_pairs": 1,
                     "num_inliers": 250, "rotation_residual_deg": pytest.approx(0.4),
                     "reprojection_px": pytest.approx(0.7)}
    assert second["status"] == "unconnected" and second["scale"] is None and second["num_pairs"] is None
    points, _ = pio.read_points_ply(folder / pio.POINTS_FILE)
    assert len(points) and np.isfinite(points).all()  # the unconnected view's NaN points are left out


def test_folders_without_camera_record_load_as_head(tmp_path):
    folder = _save(tmp_path)
    with np.load(folder / pio.PREDICTIONS_FILE) as npz:
        old = {k: npz[k] for k in pio.PREDICTION_KEYS}  # as written before the camera record existed
    np.savez(folder / pio.PREDICTIONS_FILE, **old)
    loaded = pio.load_predictions(folder)
    assert loaded.camera_source == "head" and loaded.camera_ok.all() and (loaded.camera_scale == 1).all()
    assert np.isnan(loaded.camera_residuals).all()


def test_camera_record_is_validated():
    with pytest.raises(ValueError, match="camera_source"):
        _predictions(camera_source="guess")
    with pytest.raises(ValueError, match="camera_ok"):
        _predictions(camera_ok=np.array([True]))
    with pytest.raises(ValueError, match="camera_ok must be a bool"):
        _predictions(camera_ok=np.array([1, 0]))


def test_segments_json_is_completed(tmp_path):
    folder = _save(tmp_path)
    segments = pio.read_segments(folder / pio.SEGMENTS_FILE, num_classes=K)
    assert [s["id"] for s in segments] == [3, 7]
    assert segments[0]["area"] == 2 * 16 * 12  # counted from the panoptic map
    assert segments[0]["class_name"] == "chair" and segments[0]["class_id"] == 5
    assert segments[1]["isthing"] is False and isinstance(segments[1]["score"], float)


def test_points_ply_holds_confident_points(tmp_path):
    pred = _predictions()
    folder = pio.save_predictions(pred, tmp_path / "pred", SEGMENTS, point_conf_threshold=3.0)
    points, colors = pio.read_points_ply(folder / pio.POINTS_FILE)
    keep = pred.conf >= 3.0
    np.testing.assert_array_equal(points, pred.pts3d[keep])
    np.testing.assert_array_equal(colors, pred.images[keep])


def test_predictions_accept_torch_and_wide_dtypes():
    import torch

    pred = _predictions(pts3d=torch.zeros(V, H, W, 3, dtype=torch.float64), keyframes=[1, 0])
    assert pred.pts3d.dtype == np.float32 and pred.keyframes.dtype == np.int64
    np.testing.assert_array_equal(pred.keyframes, [1, 0])


# ---------------------------------------------------------------------------------------------------- atomic


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pio, "write_label_pngs", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        _save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_folder(tmp_path, monkeypatch):
    folder = _save(tmp_path)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    old = pio.load_predictions(folder)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pio, "write_points_ply", boom)
    with pytest.raises(RuntimeError):
        pio.save_predictions(_predictions(seed=1), folder, SEGMENTS)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    np.testing.assert_array_equal(pio.load_predictions(folder).pts3d, old.pts3d)
    assert [p.name for p in tmp_path.iterdir()] == ["pred"]


def test_overwrite_replaces_a_predictions_folder(tmp_path):
    folder = _save(tmp_path)
    pio.save_predictions(_predictions(seed=5), folder, SEGMENTS)
    np.testing.assert_array_equal(pio.load_predictions(folder).pts3d, _predictions(seed=5).pts3d)
    assert [p.name for p in tmp_path.iterdir()] == ["pred"]


def test_refuses_to_replace_an_unrelated_folder(tmp_path):
    target = tmp_path / "pred"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not a predictions folder"):
        _save(tmp_path)
    assert (target / "thesis.tex").read_text() == "precious"


# ---------------------------------------------------------------------------------------------------- errors


def _rewrite_npz(folder: Path, **changes) -> None:
    path = folder / pio.PREDICTIONS_FILE
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def test_missing_key_is_named(tmp_path):
    folder = _save(tmp_path)
    _rewrite_npz(folder, conf=None)
    with pytest.raises(ValueError, match="'conf'"):
        pio.load_predictions(folder)


def test_wrong_shape_is_named(tmp_path):
    folder = _save(tmp_path)
    _rewrite_npz(folder, mask_logits=np.zeros((V, Q, H, W), dtype=np.float32))
    with pytest.raises(ValueError, match="'mask_logits'"):
        pio.load_predictions(folder)


def test_object_array_is_refused(tmp_path):
    folder = _save(tmp_path)
    _rewrite_npz(folder, image_names=np.array(["a", "b"], dtype=object))
    with pytest.raises(ValueError, match="image_names.*pickle"):
        pio.load_predictions(folder)


def test_missing_or_corrupt_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        pio.load_predictions(tmp_path)
    (tmp_path / pio.PREDICTIONS_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="cannot read"):
        pio.load_predictions(tmp_path)


def test_construction_checks_shapes_and_kinds():
    with pytest.raises(ValueError, match="'conf'"):
        _predictions(conf=np.ones((V, H, W + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="isthing"):
        _predictions(isthing=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="keyframes"):
        _predictions(keyframes=np.array([0, 5]))


def test_segment_validation():
    with pytest.raises(ValueError, match="lacks"):
        pio.normalise_segments([{"id": 1}])
    seg = dict(SEGMENTS[1])
    with pytest.raises(ValueError, match="twice"):
        pio.normalise_segments([seg, seg])
    with pytest.raises(ValueError, match="category_id"):
        pio.normalise_segments([dict(seg, category_id=9)], num_classes=K)


def test_panoptic_ids_without_segment_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\[7\]"):
        pio.save_predictions(_predictions(), tmp_path / "pred", SEGMENTS[:1])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ label PNGs


def test_map_labels_hand_computed_crop():
    # model 1x4 row; original 1x10: a 2x horizontal scale with a 1-pixel crop margin on each side.
    labels = np.array([[1, 2, 3, 4]], dtype=np.uint8)
    to_orig = np.array([[2.0, 0, 0.5 * 2 - 0.5 + 1], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    out = pio.map_labels_to_original(labels, to_orig, (1, 10))
    np.testing.assert_array_equal(out, [[0, 1, 1, 2, 2, 3, 3, 4, 4, 0]])


def test_map_labels_matches_twin_with_a_real_plan():
    rng = np.random.default_rng(3)
    for h, w, side in [(40, 64, 32), (75, 61, 48), (30, 90, 64)]:
        plan = plan_resize(h, w, side)
        labels = rng.integers(1, 9, size=(plan.out_h, plan.out_w)).astype(np.uint16)
        fast = pio.map_labels_to_original(labels, plan.to_orig(), (h, w))
        slow = pio._map_labels_to_original(labels, plan.to_orig(), (h, w))
        np.testing.assert_array_equal(fast, slow)
        assert fast.dtype == np.uint16 and fast.shape == (h, w)
        # everything inside the crop is labelled, everything outside is void
        inside = np.zeros((h, w), dtype=bool)
        inside[plan.crop_top : plan.crop_top + plan.crop_h, plan.crop_left : plan.crop_left + plan.crop_w] = True
        assert (fast[inside] > 0).all() and (fast[~inside] == 0).all()


def test_label_pngs_at_original_resolution(tmp_path):
    pred = _predictions()
    folder = pio.save_predictions(pred, tmp_path / "pred", SEGMENTS)
    plan = plan_resize(40, 64, 32)
    assert (plan.crop_top, plan.crop_h) == (4, 32)
    for stem in ("frame_0", "frame_1"):
        sem = pio.read_label_png(folder / pio.SEMANTICS_DIR / f"{stem}.png")
        sid = pio.read_label_png(folder / pio.SURROGATE_DIR / f"{stem}.png")
        assert sem.shape == sid.shape == (40, 64) and sem.dtype == np.uint8 and sid.dtype == np.uint16
        assert (sem[:4] == 0).all() and (sem[-4:] == 0).all() and (sid[:4] == 0).all()
        body_sem, body_sid = sem[4:36], sid[4:36]
        np.testing.assert_array_equal(body_sid[:, :16], 0)  # model columns 0..7 are void (x2 scale)
        np.testing.assert_array_equal(body_sid[:, 16:40], 3)
        np.testing.assert_array_equal(body_sid[:, 40:], 7)
        np.testing.assert_array_equal(body_sem[:, 16:40], 5)  # segment 3 = chair = class id 5
        np.testing.assert_array_equal(body_sem[:, 40:], 1)  # segment 7 = wall = class id 1


def test_frame_names_and_collisions(tmp_path):
    assert pio.frame_stem("clip_frame000010") == "clip_frame000010"
    assert pio.frame_stem("a.b_frame000010") == "a.b_frame000010"
    assert pio.frame_stem("0001.JPG") == "0001"
    pred = _predictions(image_names=np.array(["x.jpg", "x.png"]))
    with pytest.raises(ValueError, match="share the name"):
        pio.save_predictions(pred, tmp_path / "pred", SEGMENTS)


# ------------------------------------------------------------------------------------------------ class sets


def test_class_set_defaults(tmp_path):
    path = tmp_path / "classes.npz"
    emb = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    np.savez(path, class_names=np.array(["a", "b", "c", "d"]), class_embeddings=emb)
    cs = class_sets.load_class_set(path)
    assert cs.class_names == ("a", "b", "c", "d") and len(cs) == 4
    np.testing.assert_array_equal(cs.class_ids, [1, 2, 3, 4])
    assert cs.isthing.all() and cs.isthing.dtype == bool
    np.testing.assert_array_equal(cs.class_embeddings, emb)


def test_class_set_round_trip(tmp_path):
    cs = class_sets.builtin_class_set(16)
    class_sets.save_class_set(cs, tmp_path / "c.npz")
    back = class_sets.load_class_set(tmp_path / "c.npz")
    assert back.class_names == cs.class_names
    np.testing.assert_array_equal(back.class_ids, cs.class_ids)
    np.testing.assert_array_equal(back.isthing, cs.isthing)
    np.testing.assert_array_equal(back.class_embeddings, cs.class_embeddings)


def test_class_set_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        class_sets.load_class_set(tmp_path / "none.npz")
    np.savez(tmp_path / "a.npz", class_names=np.array(["a"]))
    with pytest.raises(ValueError, match="class_embeddings"):
        class_sets.load_class_set(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", class_names=np.array(["a", "b"], dtype=object), class_embeddings=np.ones((2, 3)))
    with pytest.raises(ValueError, match="pickle"):
        class_sets.load_class_set(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", class_names=np.array(["a", "b"]), class_embeddings=np.ones((3, 3)))
    with pytest.raises(ValueError, match="sizes disagree"):
        class_sets.load_class_set(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", class_names=np.array(["a", "b"]), class_embeddings=np.ones((2, 3)),
             class_ids=np.array([0, 1]))
    with pytest.raises(ValueError, match="1..255"):
        class_sets.load_class_set(tmp_path / "d.npz")


def test_builtin_class_set_follows_the_table():
    cs = class_sets.builtin_class_set()
    assert cs.class_names == tuple(class_table.class_names())
    np.testing.assert_array_equal(cs.class_ids, np.arange(1, 22))
    np.testing.assert_array_equal(cs.isthing, [c.isthing for c in class_table.CLASSES])
    emb = cs.class_embeddings
    assert emb.shape == (21, 768) and emb.dtype == np.float32
    np.testing.assert_allclose(emb @ emb.T, np.eye(21), atol=1e-5)  # orthonormal when D >= 21
    np.testing.assert_array_equal(emb, class_sets.builtin_class_set().class_embeddings)  # deterministic
    small = class_sets.builtin_class_embeddings(8)
    np.testing.assert_allclose(np.linalg.norm(small, axis=1), 1.0, rtol=1e-6)
    assert np.linalg.matrix_rank(small) == 8
