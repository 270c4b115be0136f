"""`export --predictions PRED --cameras-out DIR`: the solved cameras as nerfstudio `transforms.json` and a COLMAP
text model. Checks: nerfstudio's own `nerfstudio-data` parser and COLMAP text readers give our cameras back
(OpenGL axes, +0.5 pixel centres, world-to-camera quaternions); a view without a camera is left out; the quaternion
conversion is a rotation's inverse map (property test, 180-degree rotations included); one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from panst3r_splat.core import class_table
from panst3r_splat.core.predictions import Predictions, save_predictions
from panst3r_splat.core.transforms import rotation_to_quaternion
from panst3r_splat.pipeline.datasets.conventions import opencv_to_opengl
from panst3r_splat.pipeline.frontends.cli import EXIT_USER_ERROR, main
from panst3r_splat.pipeline.stages.camera_export import COLMAP_DIR, export_cameras

V, H, W = 4, 24, 32


@pytest.fixture(scope="module")
def predictions(tmp_path_factory) -> Path:
    """Four views on a circle looking at the origin, the last one without a camera."""
    rng = np.random.default_rng(0)
    T = np.repeat(np.eye(4)[None], V, 0)
    for v in range(V):
        T[v, :3, :3] = Rotation.from_euler("xyz", rng.uniform(-1, 1, 3)).as_matrix()
        T[v, :3, 3] = rng.normal(size=3)
    K = np.array([[[30.0 + v, 0, 15.5 + 0.1 * v], [0, 31.0 + v, 11.5], [0, 0, 1]] for v in range(V)])
    local = np.concatenate([rng.uniform(-1, 1, (V, H, W, 2)), rng.uniform(1, 3, (V, H, W, 1))], axis=-1)
    pts3d = np.einsum("vij,vhwj->vhwi", T[:, :3, :3], local) + T[:, None, None, :3, 3]
    ok = np.array([True, True, True, False])
    T[~ok], pts3d[~ok] = np.nan, np.nan
    pred = Predictions(
        image_names=np.array([f"img{v}.jpg" for v in range(V)]),
        images=rng.integers(0, 256, (V, H, W, 3), dtype=np.uint8), pts3d=pts3d, pts3d_local=local,
        conf=np.full((V, H, W), 5.0), mask_logits=np.zeros((V, 1, H // 2, W // 2)),
        class_logits=np.zeros((1, class_table.NUM_CLASSES)), class_names=np.array(class_table.class_names()),
        class_ids=np.arange(1, class_table.NUM_CLASSES + 1),
        isthing=np.array([c.isthing for c in class_table.CLASSES]), orig_hw=np.tile([H, W], (V, 1)),
        to_orig=np.repeat(np.eye(3)[None], V, 0), keyframes=np.arange(V), K=K, T_world_cam=T,
        panoptic=np.zeros((V, H, W), np.int32), camera_source="matches", camera_ok=ok)
    return save_predictions(pred, tmp_path_factory.mktemp("pred") / "pred", [])


def _expected(predictions: Path):
    from panst3r_splat.core.predictions import load_predictions

    pred = load_predictions(predictions)
    return pred.K[:3].astype(np.float64), pred.T_world_cam[:3].astype(np.float64)


def test_nerfstudio_reads_our_cameras_back(predictions: Path, tmp_path: Path) -> None:
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    result = export_cameras(predictions, tmp_path / "cams")
    assert result.names == ("img0", "img1", "img2")  # the view without a camera is left out
    parser = NerfstudioDataParserConfig(data=tmp_path / "cams", orientation_method="none", center_method="none",
                                        auto_scale_poses=False, eval_mode="all",
                                        load_3D_points=True).setup()
    outputs = parser.get_dataparser_outputs("train")
    K, T = _expected(predictions)
    cams = outputs.cameras
    expected_c2w = opencv_to_opengl(torch.from_numpy(T))[:, :3, :4].float()
    torch.testing.assert_close(cams.camera_to_worlds, expected_c2w, atol=1e-5, rtol=0)
    np.testing.assert_allclose(cams.fx[:, 0].numpy(), K[:, 0, 0], atol=1e-4)
    np.testing.assert_allclose(cams.cx[:, 0].numpy(), K[:, 0, 2] + 0.5, atol=1e-4)
    np.testing.assert_allclose(cams.cy[:, 0].numpy(), K[:, 1, 2] + 0.5, atol=1e-4)
    assert [p.name for p in outputs.image_filenames] == ["img0.png", "img1.png", "img2.png"]
    from panst3r_splat.core.predictions import load_predictions

    points = load_predictions(predictions).pts3d[:3].reshape(-1, 3)  # every point passes the confidence threshold
    np.testing.assert_allclose(outputs.metadata["points3D_xyz"].numpy(), points, atol=1e-5)


def test_colmap_text_model_holds_our_cameras(predictions: Path, tmp_path: Path) -> None:
    from nerfstudio.data.utils.colmap_parsing_utils import (
        qvec2rotmat, read_cameras_text, read_images_text, read_points3D_text,
    )

    export_cameras(predictions, tmp_path / "cams")
    folder = tmp_path / "cams" / COLMAP_DIR
    cameras = read_cameras_text(folder / "cameras.txt")
    images = read_images_text(folder / "images.txt")
    K, T = _expected(predictions)
    for i in range(3):
        image = images[i + 1]
        assert image.name == f"img{i}.png" and len(image.xys) == 0
        T_cam_world = np.eye(4)
        T_cam_world[:3, :3], T_cam_world[:3, 3] = qvec2rotmat(image.qvec), image.tvec
        np.testing.assert_allclose(np.linalg.inv(T_cam_world), T[i], atol=1e-8)
        cam = cameras[image.camera_id]
        assert cam.model == "PINHOLE" and (cam.width, cam.height) == (W, H)
        np.testing.assert_allclose(cam.params, [K[i, 0, 0], K[i, 1, 1], K[i, 0, 2] + 0.5, K[i, 1, 2] + 0.5])
    assert len(read_points3D_text(folder / "points3D.txt")) == 3 * H * W


def test_quaternion_inverts_the_rotation() -> None:
    from nerfstudio.data.utils.colmap_parsing_utils import qvec2rotmat

    rotations = list(Rotation.random(200, random_state=2).as_matrix())
    rotations += [np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1]), np.eye(3)]
    for R in rotations:
        q = rotation_to_quaternion(R)
        assert q[0] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(qvec2rotmat(q), R, atol=1e-10)


def test_command_line(predictions: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", "--predictions", str(predictions), "--cameras-out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "transforms.json").is_file() and not list(tmp_path.glob(".*partial*"))
    for args in (["--predictions", str(predictions)], ["--cameras-out", str(tmp_path / "d")],
                 ["--predictions", str(predictions), "--cameras-out", str(tmp_path / "c")]):
        assert main(["export", *args]) == EXIT_USER_ERROR
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
