"""`panst3r-splat export`: the PLY of a fitted scene reads back to the same Gaussians and labels; per-instance files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData

from panst3r_splat.pipeline.frontends.cli import EXIT_USER_ERROR, main
from panst3r_splat.pipeline.stages.export import export_scene
from panst3r_splat.splat.gaussians import Cameras, GaussianScene
from panst3r_splat.splat.ply import read_ply
from panst3r_splat.splat.scene_io import FittedScene, make_segment, save_scene

CHAIR, WALL = 5, 1


@pytest.fixture()
def scene_dir(tmp_path: Path) -> Path:
    """A small labelled scene (SH degree 1): two chairs (segments 3, 8), the wall (segment 30), some void."""
    n = 40
    g = torch.Generator().manual_seed(0)
    segment_ids = torch.tensor([3] * 10 + [8] * 12 + [30] * 13 + [0] * 5)
    gaussians = GaussianScene(
        means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
        log_scales=torch.randn(n, 3, generator=g) - 3, opacity_logits=torch.randn(n, generator=g),
        sh=torch.randn(n, 4, 3, generator=g), reg_colors=torch.rand(n, 3, generator=g), segment_ids=segment_ids,
        label_conf=torch.rand(n, generator=g))
    legend = (make_segment(3, CHAIR - 1, CHAIR, "chair", True), make_segment(8, CHAIR - 1, CHAIR, "chair", True),
              make_segment(30, WALL - 1, WALL, "wall", False))
    cameras = Cameras(K=torch.eye(3)[None], T_world_cam=torch.eye(4)[None], width=8, height=6, names=("a",))
    return save_scene(tmp_path / "scene", FittedScene(gaussians=gaussians, cameras=cameras, segments=legend))


def test_export_round_trip_through_the_command_line(scene_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "splats.ply"
    assert main(["export", "--scene", str(scene_dir), "--out", str(out), "--per-instance", str(tmp_path / "inst")]) == 0
    back = read_ply(out)
    original = read_ply(scene_dir / "gaussians.ply").scene
    for key, value in original.tensors().items():
        assert torch.equal(getattr(back.scene, key), value), key
    expected_semantic = np.array([CHAIR] * 22 + [WALL] * 13 + [0] * 5)
    expected_instance = np.array([3] * 10 + [8] * 12 + [0] * 18)
    assert np.array_equal(back.semantic_ids, expected_semantic)
    assert np.array_equal(back.instance_ids, expected_instance)
    # Viewers read the standard 3DGS properties.
    names = PlyData.read(str(out))["vertex"].data.dtype.names
    for prop in ("x", "f_dc_0", "f_rest_8", "opacity", "scale_2", "rot_3", "semantic_id", "instance_id"):
        assert prop in names
    files = sorted(p.name for p in (tmp_path / "inst").iterdir())
    assert files == ["instance_0003_chair.ply", "instance_0008_chair.ply"]
    part = read_ply(tmp_path / "inst" / "instance_0008_chair.ply")
    assert len(part.scene) == 12 and set(part.instance_ids.tolist()) == {8}
    assert torch.equal(part.scene.means, original.means[10:22])


def test_export_without_instances_writes_one_file(scene_dir: Path, tmp_path: Path) -> None:
    result = export_scene(scene_dir, tmp_path / "a.ply")
    assert result.instances == () and result.num_gaussians == 40 and (tmp_path / "a.ply").is_file()


def test_export_errors_are_one_line(scene_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "folder.ply").mkdir()
    for args, needle in [
        (["--scene", str(scene_dir), "--out", str(tmp_path / "a.txt")], ".ply"),
        (["--scene", str(tmp_path / "missing"), "--out", str(tmp_path / "a.ply")], "does not exist"),
        (["--scene", str(tmp_path), "--out", str(tmp_path / "a.ply")], "gaussians.ply"),
        (["--scene", str(scene_dir), "--out", str(tmp_path / "folder.ply")], "is a folder"),
    ]:
        assert main(["export", *args]) == EXIT_USER_ERROR
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err, err
