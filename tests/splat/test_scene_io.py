"""The fitted SCENE folder: round trip, legend -> per-Gaussian labels, atomic and careful replacement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from panst3r_splat.core.geometry import umeyama_sim3
from panst3r_splat.splat.gaussians import Cameras, init_from_points
from panst3r_splat.splat.scene_io import (
    Alignment, FittedScene, labels_from_segments, load_scene, make_segment, save_scene,
)


def _fitted(alignment: Alignment | None = None) -> FittedScene:
    rng = np.random.default_rng(0)
    gaussians = init_from_points(rng.normal(size=(10, 3)), rng.random((10, 3)), 10)
    gaussians = gaussians.with_labels(torch.tensor([0, 1, 1, 2, 2, 2, 7, 7, 0, 1]), torch.linspace(0, 1, 10))
    cams = Cameras(K=torch.tensor([[[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]]]).repeat(2, 1, 1),
                   T_world_cam=torch.eye(4).repeat(2, 1, 1), width=16, height=12, names=("a.jpg", "b.jpg"))
    segments = (make_segment(1, 0, 1, "wall", False, 0.9), make_segment(2, 4, 5, "chair", True, 0.8),
                make_segment(7, 4, 5, "chair", True, 0.7))
    return FittedScene(gaussians=gaussians, cameras=cams, segments=segments, alignment=alignment,
                       info={"source": {"kind": "predictions", "path": "PRED"}, "settings": {"steps": 3}})


def test_labels_from_segments_hand_computed() -> None:
    segs = _fitted().segments
    sem, inst = labels_from_segments(np.array([0, 1, 2, 7, 99]), segs)
    assert sem.tolist() == [0, 1, 5, 5, 0]
    assert inst.tolist() == [0, 0, 2, 7, 0]  # stuff and unknown ids have no instance
    sem2, _ = labels_from_segments(np.array([[1, 2], [7, 0]]), segs)
    assert sem2.shape == (2, 2)


def test_round_trip(tmp_path: Path) -> None:
    fit = umeyama_sim3(torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64))
    scene = _fitted(Alignment.from_similarity(fit, rotation_error_deg=1.5, views=("a", "b"), dataset="/data/s"))
    save_scene(tmp_path / "scene", scene)
    back = load_scene(tmp_path / "scene")
    for key, value in scene.gaussians.tensors().items():
        assert torch.equal(value, getattr(back.gaussians, key)), key
    assert back.segments == scene.segments
    assert back.alignment == scene.alignment
    assert torch.allclose(back.alignment.similarity().matrix(), fit.matrix())
    assert back.cameras.names == ("a.jpg", "b.jpg") and torch.equal(back.cameras.K, scene.cameras.K)
    assert back.info["settings"] == {"steps": 3} and back.info["num_gaussians"] == 10
    assert "torch" in back.info["versions"]
    legend = json.loads((tmp_path / "scene" / "segments.json").read_text())
    assert set(legend[0]) == {"id", "category_id", "class_id", "class_name", "isthing", "color", "score"}


def test_overwrites_a_scene_but_not_another_folder(tmp_path: Path) -> None:
    save_scene(tmp_path / "scene", _fitted())
    save_scene(tmp_path / "scene", _fitted())  # an earlier scene may be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"]  # no temporary or old folder left
    other = tmp_path / "photos"
    other.mkdir()
    (other / "x.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="not a fitted scene"):
        save_scene(other, _fitted())
    assert load_scene(tmp_path / "scene").alignment is None


def test_refuses_unknown_segment_ids_and_missing_files(tmp_path: Path) -> None:
    scene = _fitted()
    bad = FittedScene(gaussians=scene.gaussians, cameras=scene.cameras, segments=scene.segments[:1])
    with pytest.raises(ValueError, match="missing from the legend"):
        save_scene(tmp_path / "s", bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="lacks gaussians.ply"):
        load_scene(tmp_path / "empty")
