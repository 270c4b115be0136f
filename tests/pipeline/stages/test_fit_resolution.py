"""`fit --fit-size`: the splats train on the photos at their own resolution.

A predictions folder is made from a tiny synthetic scene's ground truth at half resolution (the "model" saw 32x24
pictures of 64x48 photos, `to_orig` says how), with `photos.json` pointing at the scene's colour frames. At the
photos' resolution the cameras must be the scene's own intrinsics, the images the photos themselves and the segment
maps the model's, nearest-upsampled; pixels outside a crop carry `NO_LABEL`. Moved or changed photos are refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _half_resolution import half_resolution, save_half_resolution

from panst3r_splat.core.geometry import backproject_depth
from panst3r_splat.core.images import capped_hw, resize_affine
from panst3r_splat.core.photos import PHOTOS_FILE, photo_records, read_photos
from panst3r_splat.pipeline.datasets.panoptic_lifting import read_panoptic_lifting
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.stages.fit import FitOptions, fit_scene, inputs_from_predictions
from panst3r_splat.pipeline.stages.fit_resolution import at_photo_resolution, segments_at
from panst3r_splat.splat.lifting import NO_LABEL
from panst3r_splat.splat.scene_io import load_scene
from panst3r_splat.splat.train import TrainConfig

WIDTH, HEIGHT = 64, 48

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    config = SynthConfig(train_views=3, test_views=1, width=WIDTH, height=HEIGHT)
    return write_scene(generate_scene(config, seed=3), tmp_path_factory.mktemp("synth") / "scene")


def _half_resolution_predictions(dataset: Path, folder: Path) -> Path:
    """The ground truth of the train split as a predictions folder at half resolution, with its photos' record."""
    half = half_resolution(dataset)
    V = len(half.images)
    Ks = np.repeat(half.K_model[None], V, 0)
    points, _ = backproject_depth(half.depth, Ks, half.data.T_world_cam)
    local, _ = backproject_depth(half.depth, Ks, np.repeat(np.eye(4)[None], V, 0))
    names = [f"{n}.png" for n in half.data.frame_names]
    photos = photo_records([dataset / "color" / n for n in names], names, np.tile([HEIGHT, WIDTH], (V, 1)))
    shape = half.images.shape[:3] + (3,)
    return save_half_resolution(half, folder, points.reshape(shape), local.reshape(shape), half.data.T_world_cam,
                                photos=photos)


def test_fit_size_caps_the_long_side_and_never_enlarges() -> None:
    assert capped_hw((480, 640), 512) == (384, 512)
    assert capped_hw((640, 480), 320) == (320, 240)
    assert capped_hw((48, 64), 512) == (48, 64)


def test_resize_affine_keeps_pixel_centres() -> None:
    A = resize_affine((48, 64), (24, 32))
    # Photo pixels 0 and 1 are covered by resized pixel 0, whose centre is their midpoint 0.5.
    np.testing.assert_allclose(A @ [0.5, 0.5, 1.0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(A @ [63.0, 47.0, 1.0], [31.25, 23.25, 1.0])


def test_segments_outside_the_crop_are_not_labelled() -> None:
    labels = np.arange(16).reshape(4, 4)
    to_orig = np.array([[2.0, 0.0, 2.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])  # a 12x8 photo, its centre 8x8 at 4x4
    full = segments_at(labels, to_orig, (8, 12))
    assert (full[:, :2] == NO_LABEL).all() and (full[:, 10:] == NO_LABEL).all()
    np.testing.assert_array_equal(full[:, 2:10], np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1))


def test_photo_resolution_gives_the_photos_cameras_and_labels(dataset: Path, tmp_path: Path) -> None:
    folder = _half_resolution_predictions(dataset, tmp_path / "pred")
    model = inputs_from_predictions(folder)
    assert (model.cameras.width, model.cameras.height) == (WIDTH // 2, HEIGHT // 2)
    full = at_photo_resolution(model, folder, 512)
    data = read_panoptic_lifting(dataset, split="train")
    assert (full.cameras.width, full.cameras.height) == (WIDTH, HEIGHT)
    np.testing.assert_allclose(full.cameras.K.numpy(), np.repeat(data.K[None], 3, 0), atol=1e-4)
    np.testing.assert_array_equal(full.images.numpy(), data.images)  # the photos themselves
    expected = np.repeat(np.repeat(model.segment_maps.numpy(), 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(full.segment_maps.numpy(), expected)
    assert torch.equal(full.cameras.T_world_cam, model.cameras.T_world_cam)
    assert full.source["fit_size"] == [WIDTH, HEIGHT] and np.array_equal(full.points, model.points)
    half = at_photo_resolution(model, folder, 32)  # capped: back to the model's own size, other K
    assert (half.cameras.width, half.cameras.height) == (32, 24)
    assert at_photo_resolution(model, folder, 0) is model


def test_fit_at_photo_resolution_writes_a_scene_at_that_size(dataset: Path, tmp_path: Path) -> None:
    folder = _half_resolution_predictions(dataset, tmp_path / "pred")
    inputs = at_photo_resolution(inputs_from_predictions(folder), folder, 512)
    options = FitOptions(train=TrainConfig(steps=4, progress=False), budget=800)
    fit_scene(inputs, tmp_path / "scene", options, torch.device("cpu"))
    scene = load_scene(tmp_path / "scene")
    assert (scene.cameras.width, scene.cameras.height) == (WIDTH, HEIGHT)
    assert scene.info["source"]["fit_size"] == [WIDTH, HEIGHT]


def test_moved_or_changed_photos_are_refused(dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    folder = _half_resolution_predictions(copy, tmp_path / "pred")
    model = inputs_from_predictions(folder)
    first = read_photos(folder)[0]
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(first.path)  # another picture, another size
    with pytest.raises(UserError, match="changed since predict"):
        at_photo_resolution(model, folder, 512)
    Path(first.path).unlink()
    with pytest.raises(UserError, match="no longer there.*--fit-size 0"):
        at_photo_resolution(model, folder, 512)
    assert at_photo_resolution(model, folder, 0) is model


def test_folders_without_a_photo_record_keep_the_model_resolution(dataset: Path, tmp_path: Path) -> None:
    folder = _half_resolution_predictions(dataset, tmp_path / "pred")
    (folder / PHOTOS_FILE).unlink()
    model = inputs_from_predictions(folder)
    assert at_photo_resolution(model, folder, 512) is model
    (folder / PHOTOS_FILE).write_text(json.dumps({"format": 99, "views": []}))
    with pytest.raises(UserError, match="not a valid photos record"):
        at_photo_resolution(model, folder, 512)


def test_the_command_default_is_the_documented_one() -> None:
    from panst3r_splat.pipeline.frontends import commands
    from panst3r_splat.pipeline.stages.fit_resolution import DEFAULT_FIT_SIZE

    assert commands.FitArgs(out=Path("scene")).fit_size == DEFAULT_FIT_SIZE
