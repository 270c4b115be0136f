"""`fit --predictions P --poses dataset:SCENE` (known poses): a predictions folder whose cameras are
wrong and whose local pointmaps are the ground truth at random per-view scales is placed under the scene's own
cameras (matched by file stem, intrinsics through `to_orig`), the scales come back from image matches, the fitted
scene is in the dataset frame (identity alignment, no Sim(3) at render time); a missing pose is a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _half_resolution import half_resolution, save_half_resolution

from panst3r_splat.core.cameras.placement import pixel_rays
from panst3r_splat.pipeline.datasets.panoptic_lifting import read_panoptic_lifting
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.frontends.cli import EXIT_USER_ERROR, main
from panst3r_splat.pipeline.stages.fit import FitOptions, fit_scene, inputs_from_predictions
from panst3r_splat.pipeline.stages.known_poses import parse_poses
from panst3r_splat.pipeline.stages.render import DatasetCameras, RenderOptions, render_scene
from panst3r_splat.splat.scene_io import load_scene
from panst3r_splat.splat.train import TrainConfig

WIDTH, HEIGHT = 192, 144
FAST = FitOptions(train=TrainConfig(steps=30, progress=False), budget=1500, init_opacity=0.5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    config = SynthConfig(train_views=5, test_views=2, width=WIDTH, height=HEIGHT)
    return write_scene(generate_scene(config, seed=1000002), tmp_path_factory.mktemp("synth") / "scene")


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    return np.random.default_rng(5).uniform(0.4, 2.5, 5)


@pytest.fixture(scope="module")
def predictions(dataset: Path, factors: np.ndarray, tmp_path_factory) -> Path:
    """The train frames at half resolution as a predictions folder: local pointmaps = ground-truth depth along the
    model-resolution rays divided by `factors`; the predicted cameras are all identity (useless)."""
    half = half_resolution(dataset)
    V, h, w = half.depth.shape
    Ks = np.repeat(half.K_model[None], V, 0)
    local = pixel_rays(Ks, h, w) * (half.depth / factors[:, None, None])[..., None]
    folder = tmp_path_factory.mktemp("pred") / "pred"
    save_half_resolution(half, folder, local, local, np.repeat(np.eye(4)[None], V, 0))
    return folder


def test_predictions_are_placed_under_the_dataset_cameras(dataset: Path, predictions: Path,
                                                          factors: np.ndarray) -> None:
    inputs = inputs_from_predictions(predictions, poses=dataset)
    data = read_panoptic_lifting(dataset, split="train", parts={"pose", "intrinsics"})
    assert inputs.cameras.names == data.frame_names
    assert np.allclose(inputs.cameras.T_world_cam.numpy(), data.T_world_cam, atol=1e-6)
    K_half = data.K.copy()
    K_half[:2, :2] /= 2
    K_half[:2, 2] = (data.K[:2, 2] - 0.5) / 2
    assert np.allclose(inputs.cameras.K.numpy(), K_half, atol=1e-5)
    poses = inputs.source["poses"]
    assert all(poses["connected"]), poses["matches"]
    assert np.allclose(poses["scales"], factors, rtol=0.03), np.array(poses["scales"]) / factors
    assert inputs.alignment is not None and inputs.alignment.scale == 1.0
    # The seed points lie on the scene's surfaces: their depth in the first camera agrees with its depth map
    # wherever they project onto it (points of other views may lie behind, so compare the front-most share).
    T = data.T_world_cam[0]
    cam = (inputs.points - T[:3, 3]) @ T[:3, :3]
    front = cam[:, 2] > 0.1
    uv = cam[front] @ data.K.T
    u, v = np.rint(uv[:, 0] / uv[:, 2]).astype(int), np.rint(uv[:, 1] / uv[:, 2]).astype(int)
    inside = (u >= 0) & (v >= 0) & (u < WIDTH) & (v < HEIGHT)
    gt = read_panoptic_lifting(dataset, split="train", parts={"depth"}).depth[0][v[inside], u[inside]]
    rel = np.abs(cam[front][inside, 2] - gt) / gt
    assert np.mean(rel < 0.05) > 0.5, np.mean(rel < 0.05)


def test_fitted_scene_is_in_the_dataset_frame(dataset: Path, predictions: Path, tmp_path: Path) -> None:
    fit_scene(inputs_from_predictions(predictions, poses=dataset), tmp_path / "scene", FAST, torch.device("cpu"))
    stored = load_scene(tmp_path / "scene").alignment
    assert stored is not None and stored.scale == 1.0 and stored.dataset == str(dataset.resolve())
    render_scene(tmp_path / "scene", tmp_path / "render", DatasetCameras(dataset, "test"), RenderOptions())
    report = json.loads((tmp_path / "render" / "render.json").read_text())
    assert report["alignment"]["method"] == "stored" and report["alignment"]["scale"] == 1.0


def test_missing_pose_is_a_one_line_error(dataset: Path, predictions: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "scene"
    shutil.copytree(dataset, broken)
    (broken / "pose" / "0001.txt").unlink()
    with pytest.raises(UserError, match="has no pose for predicted frames 0001"):
        inputs_from_predictions(predictions, poses=broken)
    code = main(["fit", "--predictions", str(predictions), "--poses", f"dataset:{broken}", "--out",
                 str(tmp_path / "out"), "--steps", "2"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USER_ERROR and len(err.splitlines()) == 1 and "0001" in err


def test_poses_spec_is_checked() -> None:
    assert parse_poses("dataset:data/room") == Path("data/room")
    for bad in ("data/room", "dataset:", "colmap:x"):
        with pytest.raises(UserError, match="dataset:SCENE"):
            parse_poses(bad)


# ------------------------------------------------------------------------------- panst3r-nerfstudio-data


def _transforms_folder(dataset: Path, out: Path, **extra) -> Path:
    """The synthetic scene as ns-process-data writes it: images/, images_2/, transforms.json (OpenGL, +0.5)."""
    from panst3r_splat.pipeline.datasets.conventions import intrinsics_to_nerfstudio, opencv_to_opengl

    data = read_panoptic_lifting(dataset, parts={"color", "pose", "intrinsics"})
    (out / "images").mkdir(parents=True)
    (out / "images_2").mkdir()
    fx, fy, cx, cy = (float(v) for v in intrinsics_to_nerfstudio(torch.from_numpy(data.K)))
    frames = []
    for name, image, T in zip(data.frame_names, data.images, data.T_world_cam):
        Image.fromarray(image).save(out / "images" / f"{name}.png")
        Image.fromarray(image).resize((WIDTH // 2, HEIGHT // 2), Image.BOX).save(out / "images_2" / f"{name}.png")
        frames.append({"file_path": f"images/{name}.png",
                       "transform_matrix": opencv_to_opengl(torch.from_numpy(T)).tolist()})
    splits = json.loads((dataset / "splits.json").read_text())
    meta = {"camera_model": "OPENCV", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": WIDTH, "h": HEIGHT,
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames,
            "train_filenames": [f"images/{n}.png" for n in splits["train"]],
            "val_filenames": [f"images/{n}.png" for n in splits["test"]], **extra}
    (out / "transforms.json").write_text(json.dumps(meta))
    return out


def _parser(data: Path, predictions: Path, **options):
    from panst3r_splat.pipeline.frontends.nerfstudio_transforms import Panst3rNerfstudioDataParserConfig

    return Panst3rNerfstudioDataParserConfig(data=data, predictions=predictions, orientation_method="none",
                                             center_method="none", auto_scale_poses=False, **options).setup()


@pytest.mark.parametrize("downscale", [1, 2])
def test_transforms_json_with_predictions_placed_under_its_cameras(dataset: Path, predictions: Path,
                                                                   factors: np.ndarray, tmp_path: Path,
                                                                   downscale: int) -> None:
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import META_SCENE, META_VIEWS

    parser = _parser(_transforms_folder(dataset, tmp_path / "ns"), predictions, downscale_factor=downscale)
    outputs = parser.get_dataparser_outputs("train")
    views, scene = outputs.metadata[META_VIEWS], outputs.metadata[META_SCENE]
    data = read_panoptic_lifting(dataset, split="train", parts={"color", "pose", "intrinsics"})
    assert views.names == data.frame_names and (views.width, views.height) == (WIDTH // downscale, HEIGHT // downscale)
    np.testing.assert_allclose(views.T_world_cam, data.T_world_cam, atol=1e-5)  # OpenGL -> OpenCV, no normalisation
    K = data.K.copy()
    K[:2, :2] /= downscale
    K[:2, 2] = (data.K[:2, 2] + 0.5) / downscale - 0.5
    np.testing.assert_allclose(views.K, np.repeat(K[None], len(views.names), 0), atol=1e-4)
    assert [p.parent.name for p in outputs.image_filenames] == ["images" if downscale == 1 else "images_2"] * 5
    assert np.allclose(scene.source["poses"]["scales"], factors, rtol=0.03)
    assert views.segment_maps is not None and views.segment_maps.shape == (5, HEIGHT // downscale, WIDTH // downscale)
    assert (views.segment_maps > 0).mean() > 0.5


def test_transforms_json_eval_split_and_refusals(dataset: Path, predictions: Path, tmp_path: Path) -> None:
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import META_VIEWS

    splits = json.loads((dataset / "splits.json").read_text())
    parser = _parser(_transforms_folder(dataset, tmp_path / "ok"), predictions)
    assert parser.get_dataparser_outputs("test").metadata[META_VIEWS].names == tuple(splits["test"])
    with pytest.raises(UserError, match="lens distortion"):
        _parser(_transforms_folder(dataset, tmp_path / "distorted", k1=0.1), predictions).get_dataparser_outputs()
    with pytest.raises(UserError, match="not supported"):
        _parser(_transforms_folder(dataset, tmp_path / "fisheye", camera_model="OPENCV_FISHEYE"),
                predictions).get_dataparser_outputs()
    with pytest.raises(UserError, match="images_4"):
        _parser(tmp_path / "ok", predictions, downscale_factor=4).get_dataparser_outputs()
    # All frames train: the held-out frames have no prediction.
    meta = json.loads((tmp_path / "ok" / "transforms.json").read_text())
    del meta["train_filenames"], meta["val_filenames"]
    (tmp_path / "ok" / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="no prediction for train frames"):
        _parser(tmp_path / "ok", predictions, eval_mode="all").get_dataparser_outputs()


def test_ns_train_runs_on_a_transforms_json(dataset: Path, predictions: Path, tmp_path: Path) -> None:
    """`ns-train panst3r-splat ... panst3r-nerfstudio-data` end to end (3 iterations on the CPU)."""
    import subprocess
    import sys

    ns_train = Path(sys.executable).parent / "ns-train"
    if not ns_train.exists():
        pytest.skip("nerfstudio CLI not installed")
    data = _transforms_folder(dataset, tmp_path / "ns")
    args = [ns_train, "panst3r-splat", "--machine.device-type", "cpu", "--vis", "tensorboard",
            "--logging.local-writer.enable", "False", "--pipeline.model.max-init-gaussians", "2000",
            "--steps-per-eval-all-images", "0", "--steps-per-eval-image", "0", "--max-num-iterations", "3",
            "--output-dir", tmp_path / "out", "--timestamp", "run", "panst3r-nerfstudio-data", "--data", data,
            "--predictions", predictions]
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "out" / "ns" / "panst3r-splat" / "run"
    assert (run / "nerfstudio_models" / "step-000000002.ckpt").is_file()
