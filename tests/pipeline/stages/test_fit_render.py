"""`fit` + `render` on a tiny synthetic scene (64x48, 4 input + 2 test views, a few thousand Gaussians, 30 steps).

Checks: ground-truth segments and depth back-projection against hand cases and a twin; an oracle fit writes the
SCENE layout with an identity alignment; dataset renders have the evaluation format and `eval` scores them; the
input views reproduce the ground-truth labels; a predictions folder made from the ground truth in a frame moved by a
known similarity (at half resolution, with `to_orig`) is aligned back exactly; orbit paths and videos; resume;
one-line errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _half_resolution import half_resolution, save_half_resolution

from panst3r_splat.core import class_table
from panst3r_splat.core.geometry import _backproject_depth, backproject_depth
from panst3r_splat.core.transforms import Similarity, look_at, scale_intrinsics
from panst3r_splat.pipeline.datasets.panoptic_lifting import gt_segments
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.evaluation import evaluate_folders
from panst3r_splat.pipeline.frontends.cli import EXIT_USER_ERROR, main
from panst3r_splat.pipeline.stages.fit import (
    FitOptions, background_color, checkpoint_paths, confidence_threshold, fit_scene, inputs_from_dataset,
    inputs_from_predictions,
)
from panst3r_splat.pipeline.stages.render import (
    OUTPUT_DIRS, DatasetCameras, OrbitCameras, RenderOptions, TrainCameras, _fill_void, estimate_alignment,
    fill_void, orbit_cameras, parse_cameras, photo_psnr, render_scene, rotation_errors_deg,
)
from panst3r_splat.splat.gaussians import Cameras
from panst3r_splat.splat.scene_io import load_scene
from panst3r_splat.splat.train import TrainConfig

WIDTH, HEIGHT = 64, 48
FAST = FitOptions(train=TrainConfig(steps=30, progress=False), budget=3000, init_opacity=0.5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    config = SynthConfig(train_views=4, test_views=2, width=WIDTH, height=HEIGHT)
    return write_scene(generate_scene(config, seed=0), tmp_path_factory.mktemp("synth") / "scene")


@pytest.fixture(scope="module")
def oracle(dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fits") / "oracle"
    fit_scene(inputs_from_dataset(dataset), out, FAST, torch.device("cpu"))
    return out


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


# --------------------------------------------------------------------------------------------- inputs


def test_gt_segments_one_per_instance_and_per_stuff_class() -> None:
    wall, floor, chair, bed = 1, 2, 5, 4
    sem = np.array([[[wall, wall, chair, chair], [floor, chair, bed, 0]]], dtype=np.uint8)
    inst = np.array([[[0, 7, 3, 3], [0, 0, 9, 0]]], dtype=np.uint16)  # a stuff pixel with an id, a chair without
    seg, legend = gt_segments(sem, inst)
    offset = 9  # the largest thing instance id
    expected = [[offset + wall, offset + wall, 3, 3], [offset + floor, offset + chair, 9, 0]]
    assert seg.tolist() == [expected]
    by_id = {s.id: s for s in legend}
    assert set(by_id) == {3, 9, offset + wall, offset + floor, offset + chair}
    assert by_id[3].isthing and by_id[3].class_id == chair and by_id[3].class_name == "chair"
    assert by_id[9].isthing and by_id[9].class_id == bed
    assert not by_id[offset + wall].isthing and by_id[offset + wall].category_id == wall - 1
    assert not by_id[offset + chair].isthing  # thing-class pixels without an instance: one region for the class


def test_gt_segments_rejects_classes_outside_the_table() -> None:
    with pytest.raises(UserError, match="class table"):
        gt_segments(np.full((1, 2, 2), 40, np.uint8), np.zeros((1, 2, 2), np.uint16))


def test_backproject_depth_matches_its_twin_and_skips_empty_pixels() -> None:
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 3.0, (2, 5, 6))
    depth[0, 1, 2] = 0.0
    K = np.array([[[8.0, 0, 2.5], [0, 7.0, 2.0], [0, 0, 1]], [[5.0, 0, 2.0], [0, 5.0, 1.5], [0, 0, 1]]])
    T = np.stack([np.eye(4), np.eye(4)])
    T[1, :3, :3] = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    T[1, :3, 3] = [1.0, 2.0, -0.5]
    points, flat = backproject_depth(depth, K, T)
    assert len(points) == depth.size - 1 and len(flat) == len(points)
    np.testing.assert_allclose(points, _backproject_depth(depth, K, T), atol=1e-12)
    # The law behind it: projecting a point back gives its own pixel and depth.
    v, r, c = np.unravel_index(flat, depth.shape)
    local = np.einsum("pji,pj->pi", T[v, :3, :3], points - T[v, :3, 3])
    uvw = np.einsum("pij,pj->pi", K[v], local)
    np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], np.stack([c, r], 1), atol=1e-9)
    np.testing.assert_allclose(local[:, 2], depth[v, r, c])


def test_confidence_threshold_falls_back_to_the_most_confident_half() -> None:
    conf = np.concatenate([np.full(80, 1.5), np.full(20, 4.0)])
    assert confidence_threshold(conf, 3.0) == 3.0  # 20 % pass: the threshold stands
    low = 1.0 + np.linspace(0.0, 1e-3, 101)  # an untrained confidence head: nothing passes
    kept = low >= confidence_threshold(low, 3.0)
    assert kept.sum() == 51 and kept[-51:].all()


def test_background_colours() -> None:
    images = torch.zeros(2, 3, 4, 3, dtype=torch.uint8)
    images[0] = torch.tensor([255, 0, 51], dtype=torch.uint8)
    assert background_color(images, "mean") == pytest.approx((0.5, 0.0, 0.1), abs=1 / 255)
    assert background_color(images, "black") == (0.0, 0.0, 0.0)
    assert background_color(images, "white") == (1.0, 1.0, 1.0)


def test_scale_intrinsics_keeps_pixel_centres() -> None:
    K = torch.tensor([[50.0, 0.0, (WIDTH - 1) / 2], [0.0, 50.0, (HEIGHT - 1) / 2], [0.0, 0.0, 1.0]])
    half = scale_intrinsics(K, 0.5, 0.5)
    assert half[0, 2] == pytest.approx((WIDTH / 2 - 1) / 2) and half[1, 2] == pytest.approx((HEIGHT / 2 - 1) / 2)
    assert half[0, 0] == pytest.approx(25.0)
    assert torch.allclose(scale_intrinsics(half, 2.0, 2.0), K)


# ------------------------------------------------------------------------------------------------ oracle fit


def test_oracle_fit_writes_the_scene_folder(dataset: Path, oracle: Path) -> None:
    for name in ("gaussians.ply", "cameras.json", "segments.json", "alignment.json", "scene.json"):
        assert (oracle / name).is_file(), name
    scene = load_scene(oracle)
    alignment = scene.alignment
    assert alignment.scale == 1.0 and alignment.residual == 0.0 and alignment.t == (0.0, 0.0, 0.0)
    assert np.allclose(alignment.R, np.eye(3)) and Path(alignment.dataset) == dataset.resolve()
    assert scene.cameras.names == ("0000", "0001", "0002", "0003")
    assert (scene.cameras.width, scene.cameras.height) == (WIDTH, HEIGHT)
    pose = np.loadtxt(dataset / "pose" / "0002.txt")
    assert np.allclose(scene.cameras.T_world_cam[2].numpy(), pose, atol=1e-6)
    legend_ids = {s.id for s in scene.segments}
    assert set(scene.gaussians.segment_ids.unique().tolist()) <= legend_ids | {0}
    assert scene.info["source"]["kind"] == "dataset" and scene.info["steps"] == 30
    mean = _png(dataset / "color" / "0000.png").reshape(-1, 3).mean(0) / 255  # one of the 4 inputs: near the mean
    assert np.allclose(scene.info["settings"]["train"]["background"], mean, atol=0.15)
    assert not any(p.exists() for p in checkpoint_paths(oracle))  # the resume files are gone once the scene is written


def test_render_dataset_test_split_writes_the_evaluation_format(dataset: Path, oracle: Path, tmp_path: Path) -> None:
    out = tmp_path / "render"
    summary = render_scene(oracle, out, parse_cameras(f"dataset:{dataset}"), RenderOptions())
    frames = json.loads((dataset / "splits.json").read_text())["test"]
    assert summary.names == tuple(frames)
    for frame in frames:
        for sub in OUTPUT_DIRS:
            image = _png(out / sub / f"{frame}.png")
            assert image.shape[:2] == (HEIGHT, WIDTH), sub
            if sub == "pred_semantics":
                assert image.dtype == np.uint8 and image.ndim == 2
                assert set(np.unique(image).tolist()) <= {0, *class_table.CLASS_BY_ID}
            elif sub == "pred_surrogateid":
                assert image.dtype == np.uint16 and image.ndim == 2
            else:
                assert image.dtype == np.uint8 and image.shape[2] == 3
    assert not (out / "video.mp4").exists()
    assert set(summary.psnr) == set(frames) and all(np.isfinite(list(summary.psnr.values())))
    saved = json.loads((out / "render.json").read_text())
    assert saved["views"] == frames and saved["alignment"]["scale"] == 1.0
    legend = json.loads((out / "legend.json").read_text())
    assert {s["id"] for s in legend["segments"]} == {s.id for s in load_scene(oracle).segments}
    for size in (None, 512):
        report = evaluate_folders(dataset, out, split="test", size=size)
        assert 0.0 <= report.pq_scene.all.pq <= 1.0 and 0.0 <= report.miou.miou <= 1.0


def test_photo_psnr_equals_the_earlier_formula() -> None:
    """The reports' PSNR (torchmetrics through `photo_psnr`) keeps the numbers of the formula it replaced,
    -10 log10(mean squared error) in float64 over all pixels, or over the covered ones."""
    rng = np.random.default_rng(5)
    rgb = rng.random((6, 7, 3), dtype=np.float32)
    photo = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    covered = rng.random((6, 7)) > 0.4
    err = (rgb.astype(np.float64) - photo.astype(np.float64) / 255.0) ** 2
    assert photo_psnr(rgb, photo) == pytest.approx(-10 * math.log10(err.mean()), rel=1e-6)
    assert photo_psnr(rgb, photo, covered) == pytest.approx(-10 * math.log10(err[covered].mean()), rel=1e-6)
    assert photo_psnr(photo / 255.0, photo) == float("inf")


def test_input_views_reproduce_the_ground_truth_labels(dataset: Path, oracle: Path, tmp_path: Path) -> None:
    render_scene(oracle, tmp_path / "ds", DatasetCameras(dataset, "train"), RenderOptions())
    render_scene(oracle, tmp_path / "train", TrainCameras(), RenderOptions())
    sem_acc, inst_acc = [], []
    for frame in ("0000", "0001", "0002", "0003"):
        pred_sem = _png(tmp_path / "ds" / "pred_semantics" / f"{frame}.png")
        pred_ids = _png(tmp_path / "ds" / "pred_surrogateid" / f"{frame}.png")
        # For the oracle scene, `train` cameras are the dataset's input cameras: identical renders.
        assert np.array_equal(pred_sem, _png(tmp_path / "train" / "pred_semantics" / f"{frame}.png"))
        gt_sem = _png(dataset / "rs_semantics" / f"{frame}.png")
        gt_inst = _png(dataset / "rs_instance" / f"{frame}.png")
        labelled = gt_sem > 0
        sem_acc.append(float((pred_sem == gt_sem)[labelled].mean()))
        things = gt_inst > 0  # thing segments carry the dataset's instance ids
        inst_acc.append(float((pred_ids == gt_inst)[things].mean()) if things.any() else 1.0)
    # 30 steps on 64x48 images leave boundary pixels wrong; measured about 0.9 on average.
    assert np.mean(sem_acc) > 0.8 and min(sem_acc) > 0.65, sem_acc
    assert np.mean(inst_acc) > 0.7, inst_acc


def test_fill_void_takes_a_nearest_label() -> None:
    rng = np.random.default_rng(3)
    segments = np.where(rng.random((9, 11)) < 0.8, 0, rng.integers(1, 5, (9, 11)))
    filled = fill_void(segments)
    dist, allowed = _fill_void(segments)
    assert (filled > 0).all()
    rows, cols = np.indices(segments.shape)
    assert allowed[rows, cols, filled].all()  # every pixel got one of the labels at the smallest distance
    assert np.array_equal(filled[segments > 0], segments[segments > 0])
    assert np.array_equal(fill_void(np.zeros((3, 4), np.int64)), np.zeros((3, 4)))


# ------------------------------------------------------------------------------------------------- orbit


def _ring(num: int, arc: float, radius: float = 2.0, height: float = 0.5) -> Cameras:
    """Cameras on a ring around the origin (world z up), looking at it."""

    Ts = [look_at(np.array([radius * math.cos(a), radius * math.sin(a), height]), np.zeros(3),
                   np.array([0.0, 0.0, 1.0])) for a in np.linspace(0, arc, num)]
    K = torch.tensor([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]])
    return Cameras(K=K.repeat(num, 1, 1), T_world_cam=torch.tensor(np.stack(Ts)).float(), width=32, height=24,
                   names=tuple(str(i) for i in range(num)))


@pytest.mark.parametrize("arc", [2 * math.pi * 11 / 12, math.pi / 2])
def test_orbit_looks_at_the_target_from_the_input_ring(arc: float) -> None:
    cams = orbit_cameras(_ring(12, arc), torch.zeros(5, 3), 24)
    T = cams.T_world_cam.double().numpy()
    centres = T[:, :3, 3]
    assert np.allclose(np.linalg.norm(centres[:, :2], axis=1), 2.0, atol=1e-4)
    assert np.allclose(centres[:, 2], 0.5, atol=1e-4)
    to_target = -centres / np.linalg.norm(centres, axis=1, keepdims=True)
    assert np.allclose(np.einsum("ci,ci->c", T[:, :3, 2], to_target), 1.0, atol=1e-5)  # z looks at the target
    assert np.all(T[:, 2, 1] < 0)  # image y (down) points downwards in the world
    for R in T[:, :3, :3]:
        assert np.allclose(R.T @ R, np.eye(3), atol=1e-5) and np.linalg.det(R) > 0
    azimuth = np.arctan2(centres[:, 1], centres[:, 0])  # the inputs start at azimuth 0
    if arc < math.pi:  # a quarter ring: the orbit swings over the covered arc, end to end
        assert azimuth.min() > -1e-4 and azimuth.max() < arc + 1e-4 and np.ptp(azimuth) > 0.95 * arc
    else:  # the inputs surround the target: a full circle
        assert np.ptp(np.mod(azimuth, 2 * math.pi)) > 1.8 * math.pi


def test_orbit_render_writes_a_side_by_side_video(oracle: Path, tmp_path: Path) -> None:
    import imageio.v2 as imageio

    summary = render_scene(oracle, tmp_path, OrbitCameras(frames=6), RenderOptions(fps=6))
    assert summary.names == tuple(f"orbit_{i:04d}" for i in range(6))
    reader = imageio.get_reader(str(tmp_path / "video.mp4"))
    frames = [frame for frame in reader]
    reader.close()
    assert len(frames) == 6 and frames[0].shape == (HEIGHT, 2 * WIDTH, 3)
    assert _png(tmp_path / "overlay" / "orbit_0003.png").shape == (HEIGHT, WIDTH, 3)


# --------------------------------------------------------------------------------------------- alignment


def _random_cameras(num: int, seed: int, collinear: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(num, 4, generator=g, dtype=torch.float64), dim=1)
    w, x, y, z = q.unbind(1)
    R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).reshape(num, 3, 3)
    T = torch.eye(4, dtype=torch.float64).repeat(num, 1, 1)
    T[:, :3, :3] = R
    T[:, :3, 3] = (torch.linspace(-1, 1, num, dtype=torch.float64)[:, None] * torch.tensor([1.0, 0.2, 0.0],
                   dtype=torch.float64)) if collinear else torch.randn(num, 3, generator=g, dtype=torch.float64)
    return T


def _known_sim3() -> Similarity:
    angle = 0.7
    c, s = math.cos(angle), math.sin(angle)
    R = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    R = R @ torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(0.3), -math.sin(0.3)], [0.0, math.sin(0.3), math.cos(0.3)]],
                         dtype=torch.float64)
    return Similarity(scale=torch.tensor(2.5, dtype=torch.float64), R=R, t=torch.tensor([0.4, -1.2, 0.9], dtype=torch.float64),
                   residual=torch.tensor(0.0, dtype=torch.float64))


@pytest.mark.parametrize("collinear", [False, True])
def test_estimate_alignment_recovers_a_similarity(collinear: bool) -> None:
    known = _known_sim3()
    T_scene = _random_cameras(6, seed=1, collinear=collinear)
    T_dataset = known.transform_T_world_cam(T_scene)
    fit = estimate_alignment(T_scene, T_dataset)
    assert fit.method == ("rotation-average" if collinear else "umeyama")
    assert torch.allclose(fit.similarity.R, known.R, atol=1e-6) and torch.allclose(fit.similarity.t, known.t, atol=1e-6)
    assert float(fit.similarity.scale) == pytest.approx(2.5, rel=1e-6) and float(fit.similarity.residual) < 1e-6
    assert float(fit.rotation_errors_deg.max()) < 1e-3
    back = fit.similarity.inverse().transform_T_world_cam(T_dataset)
    assert torch.allclose(back, T_scene, atol=1e-6)
    assert torch.allclose(rotation_errors_deg(torch.eye(3, dtype=torch.float64), T_scene[:, :3, :3],
                                              T_scene[:, :3, :3]), torch.zeros(6, dtype=torch.float64), atol=1e-3)


def test_estimate_alignment_never_keeps_a_mirroring_fit() -> None:
    """Centres related by a plain scaling, every rotation turned half a turn about z: the rotation-average fit then
    needs a negative scale; the Umeyama fit (positive scale, large rotation errors) is kept instead of an error."""
    T_scene = _random_cameras(6, seed=3)
    T_scene[:, 2, 3] *= 0.05  # centres spread mostly in the xy plane, where a half turn about z mirrors them
    T_dataset = T_scene.clone()
    T_dataset[:, :3, 3] *= 2.0
    T_dataset[:, :3, :3] = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)) @ T_scene[:, :3, :3]
    fit = estimate_alignment(T_scene, T_dataset)
    assert fit.method == "umeyama" and float(fit.similarity.scale) == pytest.approx(2.0, rel=1e-6)
    assert float(fit.rotation_errors_deg.min()) == pytest.approx(180.0, abs=1e-3)


def _fake_predictions(dataset: Path, folder: Path, known: Similarity) -> None:
    """The ground truth as a predictions folder at half resolution, in the frame `known^-1` of the dataset's."""
    half = half_resolution(dataset)
    V, h, w = half.depth.shape
    assert np.allclose(half.K_model, scale_intrinsics(torch.from_numpy(half.data.K), 0.5, 0.5).numpy())
    T_pred = known.inverse().transform_T_world_cam(torch.from_numpy(half.data.T_world_cam)).numpy()
    Ks = np.repeat(half.K_model[None], V, 0)
    points, _ = backproject_depth(half.depth, Ks, T_pred)
    local, _ = backproject_depth(half.depth, Ks, np.repeat(np.eye(4)[None], V, 0))
    names = [str(c["name"]) for c in json.loads((dataset / "scene.json").read_text())["classes"]]
    assert names == class_table.class_names()
    save_half_resolution(half, folder, points.reshape(V, h, w, 3), local.reshape(V, h, w, 3), T_pred)


def test_scene_from_predictions_is_aligned_to_the_dataset(dataset: Path, tmp_path: Path) -> None:
    known = _known_sim3()
    _fake_predictions(dataset, tmp_path / "pred", known)
    inputs = inputs_from_predictions(tmp_path / "pred")
    assert (inputs.cameras.width, inputs.cameras.height) == (WIDTH // 2, HEIGHT // 2)
    fit_scene(inputs, tmp_path / "scene", dataclasses.replace(FAST, budget=1500), torch.device("cpu"))
    assert not (tmp_path / "scene" / "alignment.json").exists()  # no dataset frame known yet
    out = tmp_path / "render"
    render_scene(tmp_path / "scene", out, DatasetCameras(dataset, "train"), RenderOptions())
    stored = load_scene(tmp_path / "scene").alignment
    assert stored is not None and stored.views == ("0000", "0001", "0002", "0003")
    assert stored.scale == pytest.approx(2.5, rel=1e-4) and stored.residual < 1e-4
    assert np.allclose(stored.R, known.R.numpy(), atol=1e-4) and np.allclose(stored.t, known.t.numpy(), atol=1e-4)
    assert stored.rotation_error_deg < 0.01
    diagnostics = json.loads((out / "render.json").read_text())["alignment"]
    assert diagnostics["focal_ratio_pred_over_dataset"] == pytest.approx(1.0, abs=1e-4)  # through to_orig
    # Rendered at the dataset's resolution and intrinsics, in the dataset frame: the labels land in place.
    acc = []
    for frame in stored.views:
        pred_sem = _png(out / "pred_semantics" / f"{frame}.png")
        gt_sem = _png(dataset / "rs_semantics" / f"{frame}.png")
        assert pred_sem.shape == (HEIGHT, WIDTH)
        acc.append(float((pred_sem == gt_sem)[gt_sem > 0].mean()))
    assert np.mean(acc) > 0.6, acc  # measured 0.73; a misplaced render scores far lower


# ------------------------------------------------------------------------------------------- resume, errors


def test_interrupted_fit_resumes_and_refuses_other_inputs(dataset: Path, tmp_path: Path) -> None:
    options = FitOptions(train=TrainConfig(steps=6, progress=False, checkpoint_every=2), budget=300)
    inputs = inputs_from_dataset(dataset)
    stopped = fit_scene(inputs, tmp_path / "scene", dataclasses.replace(options, stop_after=4), torch.device("cpu"))
    ckpt, meta = checkpoint_paths(tmp_path / "scene")
    assert stopped.scene is None and stopped.steps_done == 4 and ckpt.is_file() and meta.is_file()
    assert not (tmp_path / "scene").exists()
    other = dataclasses.replace(inputs, images=inputs.images.flip(0).contiguous())
    with pytest.raises(UserError, match="other inputs"):
        fit_scene(other, tmp_path / "scene", options, torch.device("cpu"))
    done = fit_scene(inputs, tmp_path / "scene", options, torch.device("cpu"))
    assert done.steps_done == 6 and done.scene is not None and not ckpt.exists() and not meta.exists()
    assert load_scene(tmp_path / "scene").info["steps"] == 6


def test_parse_cameras() -> None:
    assert parse_cameras("orbit", orbit_frames=7) == OrbitCameras(7)
    assert parse_cameras("train") == TrainCameras()
    assert parse_cameras("dataset:a/b") == DatasetCameras(Path("a/b"), "test")
    assert parse_cameras("dataset:a/b:train") == DatasetCameras(Path("a/b"), "train")
    for bad in ("orbits", "dataset:", "dataset::test", "dataset:a:", ""):
        with pytest.raises(UserError):
            parse_cameras(bad)


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err.strip()


def test_command_line_errors_are_one_line(dataset: Path, oracle: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    cases = [
        (("fit", "--out", str(tmp_path / "s")), "exactly one of"),
        (("fit", "--dataset", str(dataset), "--out", str(tmp_path / "s")), "--oracle"),
        (("fit", "--predictions", str(tmp_path / "nope"), "--out", str(tmp_path / "s")), "does not exist"),
        (("fit", "--dataset", str(dataset), "--oracle", "--out", str(oracle)), "--overwrite"),
        (("fit", "--dataset", str(dataset), "--oracle", "--split", "val", "--out", str(tmp_path / "s")), "'val'"),
        (("render", "--scene", str(tmp_path / "nope"), "--out", str(tmp_path / "r")), "does not exist"),
        (("render", "--scene", str(tmp_path / "empty"), "--out", str(tmp_path / "r")), "gaussians.ply"),
        (("render", "--scene", str(oracle), "--out", str(tmp_path / "r"), "--cameras", "sideways"), "sideways"),
        (("render", "--scene", str(oracle), "--out", str(tmp_path / "r"), "--cameras", f"dataset:{dataset}:val"),
         "'val'"),
        (("render", "--scene", str(oracle), "--out", str(tmp_path / "r"), "--cameras",
          f"dataset:{tmp_path / 'nope'}"), "does not exist"),
    ]
    for args, needle in cases:
        code, err = _run(capsys, *args)
        assert code == EXIT_USER_ERROR, (args, err)
        assert needle in err and "\n" not in err, (args, err)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_oracle_fit_and_render_on_cuda_through_gsplat(dataset: Path, tmp_path: Path) -> None:
    fit_scene(inputs_from_dataset(dataset), tmp_path / "scene", FAST, torch.device("cuda"))
    assert load_scene(tmp_path / "scene").info["settings"]["device"].startswith("cuda")
    render_scene(tmp_path / "scene", tmp_path / "r", DatasetCameras(dataset, "train"), RenderOptions(),
                 device=torch.device("cuda"))
    acc = []
    for frame in ("0000", "0001", "0002", "0003"):
        gt_sem = _png(dataset / "rs_semantics" / f"{frame}.png")
        acc.append(float((_png(tmp_path / "r" / "pred_semantics" / f"{frame}.png") == gt_sem)[gt_sem > 0].mean()))
    assert np.mean(acc) > 0.8, acc
