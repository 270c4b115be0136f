"""Reader/writer of the Panoptic Lifting scene layout: round trip, determinism, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from panst3r_splat.pipeline.datasets.panoptic_lifting import (
    PanopticLiftingScene,
    list_frames,
    read_panoptic_lifting,
    write_panoptic_lifting,
)
from panst3r_splat.pipeline.errors import UserError

H, W = 12, 16


def _scene(n: int = 4, seed: int = 0) -> PanopticLiftingScene:
    rng = np.random.default_rng(seed)
    names = tuple(f"{i:04d}" for i in range(n))
    poses = np.stack([np.eye(4)] * n)
    poses[:, :3, 3] = rng.normal(size=(n, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    poses[:, :3, :3] = q * np.sign(np.linalg.det(q))
    return PanopticLiftingScene(
        frame_names=names, splits={"train": names[:3], "test": names[3:]},
        images=rng.integers(0, 256, size=(n, H, W, 3), dtype=np.uint8),
        depth=np.round(rng.uniform(0.0, 9.0, size=(n, H, W)), 3).astype(np.float32),
        K=np.array([[20.0, 0.0, (W - 1) / 2], [0.0, 21.0, (H - 1) / 2], [0.0, 0.0, 1.0]]),
        T_world_cam=poses,
        semantics=rng.integers(0, 22, size=(n, H, W), dtype=np.uint8),
        instances=rng.integers(0, 60000, size=(n, H, W), dtype=np.uint16))


@pytest.fixture()
def written(tmp_path: Path) -> tuple[PanopticLiftingScene, Path]:
    scene = _scene()
    write_panoptic_lifting(scene, tmp_path / "s")
    return scene, tmp_path / "s"


def test_round_trip(written: tuple[PanopticLiftingScene, Path]) -> None:
    scene, root = written
    back = read_panoptic_lifting(root)
    assert back.frame_names == scene.frame_names
    assert dict(back.splits) == dict(scene.splits)
    np.testing.assert_array_equal(back.images, scene.images)
    np.testing.assert_array_equal(back.semantics, scene.semantics)
    np.testing.assert_array_equal(back.instances, scene.instances)
    assert back.instances.dtype == np.uint16 and back.semantics.dtype == np.uint8
    np.testing.assert_allclose(back.depth, scene.depth, atol=0.5e-3 + 1e-6)  # stored in whole millimetres
    np.testing.assert_allclose(back.T_world_cam, scene.T_world_cam, atol=1e-8)
    np.testing.assert_allclose(back.K, scene.K, atol=1e-8)


def test_layout_on_disk(written: tuple[PanopticLiftingScene, Path]) -> None:
    _, root = written
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["color", "depth", "pose", "intrinsic", "rs_semantics", "rs_instance", "splits.json"])
    assert Image.open(root / "depth" / "0000.png").mode == "I;16"
    assert Image.open(root / "rs_instance" / "0000.png").mode == "I;16"
    assert Image.open(root / "rs_semantics" / "0000.png").mode == "L"
    k4 = np.loadtxt(root / "intrinsic" / "intrinsic_color.txt")
    assert k4.shape == (4, 4) and k4[3, 3] == 1.0 and k4[0, 2] == (W - 1) / 2
    assert json.loads((root / "splits.json").read_text()) == {"train": ["0000", "0001", "0002"], "test": ["0003"]}


def test_split_selects_frames_in_split_order(tmp_path: Path) -> None:
    scene = _scene(5)
    scene = PanopticLiftingScene(**{**scene.__dict__, "splits": {"train": ("0004", "0001"), "test": ("0002",)}})
    write_panoptic_lifting(scene, tmp_path)
    back = read_panoptic_lifting(tmp_path, split="train", parts=("color", "semantics"))
    assert back.frame_names == ("0004", "0001")
    np.testing.assert_array_equal(back.images, scene.images[[4, 1]])
    assert back.depth is None and back.T_world_cam is None and back.K is None
    np.testing.assert_array_equal(back.split_indices("train"), [0, 1])


def test_writer_is_deterministic(tmp_path: Path) -> None:
    scene = _scene()
    write_panoptic_lifting(scene, tmp_path / "a")
    write_panoptic_lifting(scene, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4 * 5 + 2
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_overwrite_replaces_stale_frames(tmp_path: Path) -> None:
    write_panoptic_lifting(_scene(4), tmp_path)
    with pytest.raises(UserError, match="already holds a scene"):
        write_panoptic_lifting(_scene(2), tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    write_panoptic_lifting(_scene(2), tmp_path, overwrite=True)
    assert read_panoptic_lifting(tmp_path).frame_names == ("0000", "0001")
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the layout's own files are replaced


def test_numeric_frame_names_sort_as_numbers(tmp_path: Path) -> None:
    for name in ("10", "2", "1"):
        (tmp_path / "color").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "color" / f"{name}.jpg")
    assert list(list_frames(tmp_path)) == ["1", "2", "10"]
    back = read_panoptic_lifting(tmp_path, parts=("color",))
    assert back.images.shape == (3, 4, 4, 3)


def test_low_resolution_depth_is_upsampled_nearest(written: tuple[PanopticLiftingScene, Path]) -> None:
    scene, root = written
    half = np.arange(H // 2 * W // 2, dtype=np.uint16).reshape(H // 2, W // 2) + 1000
    for name in scene.frame_names:
        Image.fromarray(half).save(root / "depth" / f"{name}.png")
    depth = read_panoptic_lifting(root, parts=("depth",)).depth
    np.testing.assert_array_equal(depth[0], np.repeat(np.repeat(half, 2, 0), 2, 1) / np.float32(1000))


def _error(root: Path, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        read_panoptic_lifting(root, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_error_missing_folder(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "nope")
    assert "no color/ folder" in _error(tmp_path)


def test_error_missing_part_folder(written: tuple[PanopticLiftingScene, Path]) -> None:
    _, root = written
    for p in (root / "depth").iterdir():
        p.unlink()
    (root / "depth").rmdir()
    assert "depth is missing" in _error(root)
    read_panoptic_lifting(root, parts=("color", "semantics"))  # parts not asked for may be absent


def test_error_missing_frames(written: tuple[PanopticLiftingScene, Path]) -> None:
    _, root = written
    (root / "rs_semantics" / "0002.png").unlink()
    message = _error(root)
    assert "rs_semantics" in message and "0002" in message and "(1 of 4)" in message
    (root / "color" / "0003.png").unlink()
    assert "0003" in _error(root, split="test")


def test_error_unreadable_image(written: tuple[PanopticLiftingScene, Path]) -> None:
    _, root = written
    (root / "color" / "0001.png").write_bytes(b"not a png at all")
    assert "cannot read" in _error(root) and "0001.png" in _error(root)


def test_error_mismatched_sizes(written: tuple[PanopticLiftingScene, Path]) -> None:
    _, root = written
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(root / "rs_semantics" / "0001.png")
    assert "colour frames are 16x12" in _error(root)
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(root / "color" / "0002.png")
    assert "one size" in _error(root)


def test_error_wrong_label_type(written: tuple[PanopticLiftingScene, Path]) -> None:
    _, root = written
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "rs_semantics" / "0001.png")
    assert "single-channel" in _error(root)


def test_error_bad_pose_and_intrinsics(written: tuple[PanopticLiftingScene, Path]) -> None:
    _, root = written
    (root / "pose" / "0001.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    assert "4x4" in _error(root)
    (root / "pose" / "0001.txt").write_text("-inf -inf -inf -inf\n" * 4)
    assert "non-finite" in _error(root)
    (root / "pose" / "0001.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    (root / "intrinsic" / "intrinsic_color.txt").write_text("a b c\n")
    assert "intrinsic_color.txt" in _error(root)


def test_error_splits(written: tuple[PanopticLiftingScene, Path]) -> None:
    _, root = written
    assert "'val' is not in" in _error(root, split="val")
    (root / "splits.json").write_text("{not json")
    assert "cannot parse" in _error(root)
    (root / "splits.json").unlink()
    assert "splits.json is missing" in _error(root, split="test")
    assert read_panoptic_lifting(root).num_views == 4  # without splits.json, all frames
