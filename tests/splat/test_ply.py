"""3DGS PLY: exact round trip, the property names and layout other viewers read, per-instance export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData

from panst3r_splat.splat.gaussians import GaussianScene
from panst3r_splat.splat.ply import property_names, read_ply, write_instance_plys, write_ply


def _scene(n: int = 6, degree: int = 2) -> GaussianScene:
    g = torch.Generator().manual_seed(0)
    return GaussianScene(
        means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
        log_scales=torch.randn(n, 3, generator=g), opacity_logits=torch.randn(n, generator=g),
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g), reg_colors=torch.rand(n, 3, generator=g),
        segment_ids=torch.arange(n) * 3, label_conf=torch.rand(n, generator=g),
    )


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_round_trip_is_exact(tmp_path: Path, degree: int) -> None:
    scene = _scene(degree=degree)
    sem = np.arange(6, dtype=np.int32) % 3
    inst = np.array([0, 4, 4, 0, 9, 9], dtype=np.int32)
    path = write_ply(tmp_path / "g.ply", scene, semantic_ids=sem, instance_ids=inst)
    back = read_ply(path)
    for key, value in scene.tensors().items():
        assert torch.equal(value, getattr(back.scene, key)), key
    assert np.array_equal(back.semantic_ids, sem) and np.array_equal(back.instance_ids, inst)
    assert not list(tmp_path.glob(".*"))  # atomic write cleaned up


def test_property_names_and_layout_follow_3dgs(tmp_path: Path) -> None:
    scene = _scene(n=3, degree=1)
    write_ply(tmp_path / "g.ply", scene)
    ply = PlyData.read(str(tmp_path / "g.ply"))
    names = [p.name for p in ply["vertex"].properties]
    standard = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *[f"f_rest_{i}" for i in range(9)],
                "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert names[: len(standard)] == standard
    assert {"semantic_id", "instance_id", "segment_id", "label_conf"} <= set(names)
    assert names == property_names(1)
    assert ply.elements[0].name == "vertex" and not ply.text and ply.byte_order == "<"
    v = ply["vertex"]
    # Pre-activation values, and f_rest channel-major: f_rest_0..2 are red's three first-order coefficients.
    assert np.allclose(v["opacity"], scene.opacity_logits.numpy())
    assert np.allclose(v["scale_1"], scene.log_scales[:, 1].numpy())
    assert np.allclose(v["rot_0"], scene.quats[:, 0].numpy())  # w first
    assert np.allclose(v["f_rest_1"], scene.sh[:, 2, 0].numpy())
    assert np.allclose(v["f_rest_3"], scene.sh[:, 1, 1].numpy())
    assert np.allclose(v["f_dc_2"], scene.sh[:, 0, 2].numpy())


def test_reads_a_plain_3dgs_ply_without_labels(tmp_path: Path) -> None:
    from plyfile import PlyElement

    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    vertex = np.zeros(2, dtype=[(n, "f4") for n in names])
    vertex["rot_0"] = 1.0
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "plain.ply"))
    back = read_ply(tmp_path / "plain.ply")
    assert back.scene.sh_degree == 0 and len(back.scene) == 2
    assert back.semantic_ids.tolist() == [0, 0] and back.scene.segment_ids.tolist() == [0, 0]


def test_rejects_files_that_are_not_3dgs(tmp_path: Path) -> None:
    from plyfile import PlyElement

    vertex = np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(ValueError, match="missing vertex properties"):
        read_ply(tmp_path / "points.ply")
    with pytest.raises(ValueError, match="not found"):
        read_ply(tmp_path / "nothing.ply")


def test_rejects_labels_of_the_wrong_length(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one entry per Gaussian"):
        write_ply(tmp_path / "g.ply", _scene(), semantic_ids=np.zeros(3))


def test_per_instance_export_partitions_the_things(tmp_path: Path) -> None:
    scene = _scene(n=6, degree=0)
    sem = np.array([1, 5, 5, 2, 4, 4], dtype=np.int32)
    inst = np.array([0, 7, 7, 0, 12, 12], dtype=np.int32)
    paths = write_instance_plys(tmp_path, scene, sem, inst, class_names={5: "chair", 4: "bed"})
    assert [p.name for p in paths] == ["instance_0007_chair.ply", "instance_0012_bed.ply"]
    part = read_ply(paths[0])
    assert torch.equal(part.scene.means, scene.means[1:3])
    assert part.instance_ids.tolist() == [7, 7] and part.semantic_ids.tolist() == [5, 5]
