"""`predict --cameras`: choosing the source, the solver on the model's descriptors, the record it leaves, and fit
leaving out views without a camera."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from test_predict import CLASS_NAMES, ORIG_H, ORIG_W, _cli_error, _smooth_image, tiny_config

from panst3r_splat.core.cameras.metrics import pair_errors
from panst3r_splat.core.cameras.oracle import local_pointmaps, synthetic_descriptors, world_points
from panst3r_splat.core.checkpoint import LoadedCheckpoint, save_checkpoint
from panst3r_splat.core.geometry import PrincipalPoint
from panst3r_splat.core.model import InferenceOutput, PanSt3R
from panst3r_splat.core.model.config import DescriptorHeadConfig
from panst3r_splat.core.predictions import CAMERAS_FILE, Predictions, load_predictions, save_predictions
from panst3r_splat.pipeline.datasets.synth import HELD_OUT_SEED_START, SynthConfig, generate_scene, with_views
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.frontends import cli, commands
from panst3r_splat.pipeline.frontends.commands import MergeArgs, PredictArgs
from panst3r_splat.pipeline.stages.fit import inputs_from_predictions
from panst3r_splat.pipeline.stages.predict import cameras_from_matches, resolve_camera_source


def _checkpoint(metadata: dict[str, str] | None = None) -> LoadedCheckpoint:
    """A loaded checkpoint with this metadata (the model on the meta device: only the metadata is read)."""
    with torch.device("meta"):
        model = PanSt3R(tiny_config())
    return LoadedCheckpoint(model=model, config=model.config, format="panst3r_splat", class_names=None,
                            class_embeddings=None, metadata=metadata or {})


def test_auto_follows_metadata_then_descriptor_head_then_head() -> None:
    assert resolve_camera_source("auto", _checkpoint(), has_descriptors=False) == "head"
    assert resolve_camera_source("auto", _checkpoint(), has_descriptors=True) == "matches"
    assert resolve_camera_source("auto", _checkpoint({"camera_source": "head"}), has_descriptors=True) == "head"
    assert resolve_camera_source("auto", _checkpoint({"camera_source": "matches"}), has_descriptors=True) == "matches"
    assert resolve_camera_source("head", _checkpoint(), has_descriptors=True) == "head"


def test_explicit_sources_are_checked_against_the_model() -> None:
    with pytest.raises(UserError, match="descriptor head"):
        resolve_camera_source("matches", _checkpoint(), has_descriptors=False)
    assert resolve_camera_source("sfm", _checkpoint(), has_descriptors=False) == "sfm"
    with pytest.raises(UserError, match="camera_source metadata"):
        resolve_camera_source("auto", _checkpoint({"camera_source": "lidar"}), has_descriptors=True)


def _room_output(views: int = 6):
    config = with_views(SynthConfig(width=128, height=96), train_views=views, test_views=0)
    scene = generate_scene(config, seed=HELD_OUT_SEED_START + 3)
    K = np.repeat(scene.K[None], views, axis=0)
    descriptors, conf = synthetic_descriptors(world_points(scene.depth, K, scene.T_world_cam))
    empty = tuple(torch.zeros(1) for _ in range(views))
    output = InferenceOutput(pointmaps_raw=empty, mask_logits=empty, class_logits=torch.zeros(1, 1),
                             queries=torch.zeros(1, 1), keyframes=(0,), descriptors=tuple(descriptors),
                             descriptor_conf=tuple(conf))
    local = torch.from_numpy(np.nan_to_num(local_pointmaps(scene.depth, K))).float()
    return scene, output, local


def test_cameras_from_matches_places_every_view() -> None:
    scene, output, local = _room_output()
    solved = cameras_from_matches(output, local, PrincipalPoint.CENTER)
    assert solved.source == "matches" and solved.camera_ok.all()
    assert pair_errors(solved.T_world_cam.double().numpy(), scene.T_world_cam).median_rotation_deg < 3.0
    assert torch.isfinite(solved.pts3d).all() and np.isfinite(solved.residuals).all()


def test_unconnected_view_gets_nan_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    _, output, local = _room_output()
    descriptors = list(output.descriptors)
    descriptors[4] = torch.nn.functional.one_hot(torch.zeros(descriptors[4].shape[:2], dtype=torch.long),
                                                 descriptors[4].shape[2]).float()  # one descriptor: untextured
    output = InferenceOutput(**{**output.__dict__, "descriptors": tuple(descriptors)})
    with caplog.at_level(logging.WARNING):
        solved = cameras_from_matches(output, local, PrincipalPoint.CENTER)
    assert solved.camera_ok.tolist() == [True, True, True, True, False, True]
    assert torch.isnan(solved.T_world_cam[4]).all() and torch.isnan(solved.pts3d[4]).all()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "views 4" in warnings[0].getMessage()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    emb = torch.nn.functional.normalize(torch.randn(len(CLASS_NAMES), 768), dim=-1)
    save_checkpoint(path, PanSt3R(tiny_config()), class_names=CLASS_NAMES, class_embeddings=emb)
    photos = tmp_path_factory.mktemp("photos")
    for i in range(3):
        PIL.Image.fromarray(_smooth_image(i, ORIG_H, ORIG_W)).save(photos / f"img{i}.png")
    return path, photos


def test_predict_records_head_cameras_for_a_model_without_descriptors(tiny_run, tmp_path: Path) -> None:
    checkpoint, photos = tiny_run
    commands.predict(PredictArgs(images=photos, out=tmp_path / "p", checkpoint=checkpoint, device="cpu",
                                 merge="standard_v2"))
    pred = load_predictions(tmp_path / "p")
    assert pred.camera_source == "head" and pred.camera_ok.all()
    record = json.loads((tmp_path / "p" / CAMERAS_FILE).read_text())
    assert [v["status"] for v in record["views"]] == ["ok"] * 3 and record["source"] == "head"
    commands.merge(MergeArgs(predictions=tmp_path / "p", merge="qubo"))  # re-merging keeps the record
    assert load_predictions(tmp_path / "p").camera_source == "head"
    assert json.loads((tmp_path / "p" / CAMERAS_FILE).read_text()) == record


@pytest.mark.parametrize(("cameras", "needle"), [
    ("matches", "descriptor head"),
    ("sfm", "--cameras sfm: COLMAP registered none of the 3 photos"),  # smooth random pictures: no SIFT features
])
def test_predict_camera_errors_are_one_line(capsys, tiny_run, tmp_path: Path, cameras: str, needle: str) -> None:
    checkpoint, photos = tiny_run
    argv = ["predict", "--images", str(photos), "--out", str(tmp_path / "p"), "--checkpoint", str(checkpoint),
            "--device", "cpu", "--cameras", cameras]
    assert needle in _cli_error(capsys, argv)
    assert not (tmp_path / "p").exists()


@pytest.fixture(scope="module")
def descriptor_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a (random) descriptor head: its descriptors match nothing reliably."""
    config = tiny_config()
    config = dataclasses.replace(config, descriptor_head=DescriptorHeadConfig(
        input_dim=config.encoder.embed_dim + config.decoder.embed_dim, patch_size=config.patch_size))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt_desc") / "tiny_desc.safetensors"
    emb = torch.nn.functional.normalize(torch.randn(len(CLASS_NAMES), 768), dim=-1)
    save_checkpoint(path, PanSt3R(config), class_names=CLASS_NAMES, class_embeddings=emb)
    return path


def test_matches_that_fail_are_an_error_when_asked_for_and_a_fallback_under_auto(
        capsys, caplog: pytest.LogCaptureFixture, tiny_run, descriptor_checkpoint: Path, tmp_path: Path) -> None:
    _, photos = tiny_run
    argv = ["predict", "--images", str(photos), "--out", str(tmp_path / "p"), "--checkpoint",
            str(descriptor_checkpoint), "--device", "cpu", "--cameras", "matches"]
    assert "too few reliable matches" in _cli_error(capsys, argv)
    with caplog.at_level(logging.WARNING):
        commands.predict(PredictArgs(images=photos, out=tmp_path / "auto", checkpoint=descriptor_checkpoint,
                                     device="cpu", merge="standard_v2"))
    assert load_predictions(tmp_path / "auto").camera_source == "head"
    assert any("falls back" in r.getMessage() for r in caplog.records)


def test_head_cameras_of_a_model_with_an_untrained_global_head_warn(caplog: pytest.LogCaptureFixture, tiny_run,
                                                                    tmp_path: Path) -> None:
    """A checkpoint that says `global_head_trained: false` (the v2 recipe) warns when its own cameras are used."""
    torch.manual_seed(0)
    path = tmp_path / "local_only.safetensors"
    emb = torch.nn.functional.normalize(torch.randn(len(CLASS_NAMES), 768), dim=-1)
    save_checkpoint(path, PanSt3R(tiny_config()), class_names=CLASS_NAMES, class_embeddings=emb,
                    metadata={"global_head_trained": "false"})
    _, photos = tiny_run
    with caplog.at_level(logging.WARNING):
        commands.predict(PredictArgs(images=photos, out=tmp_path / "p", checkpoint=path, device="cpu",
                                     merge="standard_v2", cameras="head"))
    assert any("global pointmap head is untrained" in r.getMessage() for r in caplog.records)


def test_fit_leaves_out_views_without_a_camera(tmp_path: Path) -> None:
    V, H, W, Q = 3, 16, 32, 4
    rng = np.random.default_rng(0)
    pts3d = rng.normal(size=(V, H, W, 3)).astype(np.float32) + [0, 0, 4]
    pts3d[1] = np.nan
    T = np.tile(np.eye(4, dtype=np.float32), (V, 1, 1))
    T[1] = np.nan
    panoptic = np.ones((V, H, W), dtype=np.int32)
    pred = Predictions(
        image_names=np.array(["a.png", "b.png", "c.png"]), images=rng.integers(0, 256, (V, H, W, 3), dtype=np.uint8),
        pts3d=pts3d, pts3d_local=pts3d, conf=np.full((V, H, W), 5.0, dtype=np.float32),
        mask_logits=np.zeros((V, Q, H // 2, W // 2), dtype=np.float32), class_logits=np.zeros((Q, 2), np.float32),
        class_names=np.array(["wall", "floor"]), class_ids=np.array([1, 2], dtype=np.int32),
        isthing=np.array([False, False]), orig_hw=np.array([[H, W]] * V, dtype=np.int32),
        to_orig=np.tile(np.eye(3, dtype=np.float32), (V, 1, 1)), keyframes=np.array([0]),
        K=np.tile(np.array([[20, 0, 16], [0, 20, 8], [0, 0, 1]], dtype=np.float32), (V, 1, 1)),
        T_world_cam=T, panoptic=panoptic, camera_source="matches", camera_ok=np.array([True, False, True]),
    )
    save_predictions(pred, tmp_path / "p", [{"id": 1, "category_id": 0, "isthing": False, "score": 1.0,
                                            "query_id": 0}])
    inputs = inputs_from_predictions(tmp_path / "p")
    assert inputs.cameras.names == ("a", "c") and len(inputs.images) == 2
    assert torch.isfinite(inputs.cameras.T_world_cam).all() and np.isfinite(inputs.points).all()
    assert inputs.source["camera_source"] == "matches"
