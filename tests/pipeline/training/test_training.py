"""Training of our own model: ground truth from synthetic scenes, deterministic data, schedule, resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from panst3r_splat.configs.data import DataConfig
from panst3r_splat.configs.training import get_preset
from panst3r_splat.core.class_table import STUFF_IDS, THING_IDS
from panst3r_splat.core.geometry import local_points
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene
from panst3r_splat.pipeline.training.data import ContinuingSampler, SyntheticScenes
from panst3r_splat.pipeline.training.loop import learning_rate, train_model
from panst3r_splat.pipeline.training.targets import points_in_first_camera, scene_targets


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SynthConfig(train_views=3, test_views=0, width=64, height=48, arc_deg=(30.0, 40.0)), seed=5)


def test_targets_partition_the_labelled_pixels(scene) -> None:
    K = np.broadcast_to(scene.K, (3, 3, 3))
    tgt = scene_targets(scene.depth, K, scene.T_world_cam, scene.semantics, scene.instances)
    masks, classes = tgt.gt_masks.numpy(), tgt.gt_classes.numpy()
    # Every labelled pixel is in exactly one segment, void in none.
    np.testing.assert_array_equal(masks.sum(0), (scene.semantics > 0).astype(np.int64))
    for mask, cls in zip(masks, classes):
        ids = np.unique(scene.semantics[mask])
        assert ids.tolist() == [cls + 1]  # class index = class-table id - 1
        if cls + 1 in THING_IDS:
            assert len(np.unique(scene.instances[mask])) == 1  # one thing instance, in every view it appears
        else:
            assert cls + 1 in STUFF_IDS and np.all(scene.instances[mask] == 0)  # one segment per stuff class


def test_target_points_are_consistent_across_views(scene) -> None:
    K = np.broadcast_to(scene.K, (3, 3, 3))
    local = local_points(scene.depth.astype(np.float64), K)
    world = points_in_first_camera(local, scene.T_world_cam)
    np.testing.assert_allclose(world[0], local[0], atol=1e-9)  # the world frame is view 0's camera
    # A point of view 1, moved to view 0's frame and projected with K, lands where view 0 sees that depth
    # (where both see the same surface).
    T_cam0_world = np.linalg.inv(scene.T_world_cam[0])
    T_world_cam1 = scene.T_world_cam[1]
    p_world = (T_world_cam1[:3, :3] @ local[1].reshape(-1, 3).T).T + T_world_cam1[:3, 3]
    p0 = (T_cam0_world[:3, :3] @ p_world.T).T + T_cam0_world[:3, 3]
    np.testing.assert_allclose(world[1].reshape(-1, 3), p0, atol=1e-9)
    uv = (K[0] @ p0.T).T
    u, v = uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2]
    inside = (p0[:, 2] > 0) & (u > 0) & (u < 63) & (v > 0) & (v < 47) & (scene.depth[1].reshape(-1) > 0)
    ui, vi = np.rint(u[inside]).astype(int), np.rint(v[inside]).astype(int)
    visible = np.abs(scene.depth[0][vi, ui] - p0[inside, 2]) < 0.02 * p0[inside, 2]
    assert visible.mean() > 0.3  # the views overlap
    same = scene.semantics[1].reshape(-1)[inside][visible] == scene.semantics[0][vi, ui][visible]
    assert same.mean() > 0.95


def test_samples_are_a_function_of_their_index() -> None:
    cfg = DataConfig(views=2, scene_views=4, reuse=2, width=64, height=48)
    a, b = SyntheticScenes(cfg), SyntheticScenes(cfg)
    for index in (0, 3, 1):  # out of order: the cache must not change results
        x, y = a[index], b[index]
        torch.testing.assert_close(x.images, y.images, rtol=0, atol=0)
        torch.testing.assert_close(x.targets.gt_masks, y.targets.gt_masks)
    assert not torch.equal(a[0].images, a[2].images)  # another scene
    assert list(ContinuingSampler(6, 9)) == [6, 7, 8]


def test_held_out_seeds_are_refused() -> None:
    from panst3r_splat.pipeline.datasets.synth import HELD_OUT_SEED_START

    data = SyntheticScenes(DataConfig(first_seed=HELD_OUT_SEED_START - 1, reuse=1, width=64, height=48))
    with pytest.raises(ValueError, match="held out"):
        data[1]


def test_learning_rate_schedule() -> None:
    preset = dataclasses.replace(get_preset("tiny"), steps=1000, warmup_steps=100, lr=1e-3, min_lr=1e-5)
    assert learning_rate(0, preset) == pytest.approx(1e-5)
    assert learning_rate(99, preset) == pytest.approx(1e-3)
    assert learning_rate(550, preset) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(1000, preset) == pytest.approx(1e-5)
    rates = [learning_rate(s, preset) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_resume_continues_bit_for_bit(tmp_path: Path) -> None:
    import csv

    from safetensors.torch import load_file

    preset = dataclasses.replace(get_preset("smoke"), steps=3, checkpoint_every=10, eval_every=100)
    straight = train_model(preset, tmp_path / "a" / "model.safetensors", resume=False, device=torch.device("cpu"))
    first = tmp_path / "b" / "model.safetensors"
    halves = dataclasses.replace(preset, log_every=2)  # the log window straddles the interruption
    train_model(halves, first, resume=False, device=torch.device("cpu"), max_steps=1)
    assert first.with_suffix(".resume.pt").exists()
    train_model(halves, first, resume=True, device=torch.device("cpu"))
    a = torch.load(straight.with_suffix(".resume.pt"), weights_only=True)
    b = torch.load(first.with_suffix(".resume.pt"), weights_only=True)
    assert a["step"] == b["step"] == 3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    # After the resume, the first log row averages the one step of its window (step 2), not log_every steps.
    with straight.with_suffix(".log.csv").open(newline="") as f:
        every_step = {row["step"]: float(row["loss_total"]) for row in csv.DictReader(f)}
    with first.with_suffix(".log.csv").open(newline="") as f:
        resumed = {row["step"]: float(row["loss_total"]) for row in csv.DictReader(f)}
    assert list(resumed) == ["2"] and resumed["2"] == pytest.approx(every_step["2"], rel=1e-6)
    shipped = load_file(str(first))  # the model file loads without pickle and is stored in half precision
    weights = [t for k, t in shipped.items() if not k.startswith("_class_set")]
    assert weights and all(t.dtype == torch.float16 for t in weights if t.is_floating_point())


def test_sigterm_stops_with_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kill PID` during training: the step in progress finishes, a checkpoint of it is written, the run returns."""
    import os
    import signal

    from panst3r_splat.pipeline.training import loop

    real = loop.learning_rate

    def lr_then_terminate(step: int, preset) -> float:
        if step == 1:  # the second step: the signal arrives in the middle of training
            os.kill(os.getpid(), signal.SIGTERM)
        return real(step, preset)

    monkeypatch.setattr(loop, "learning_rate", lr_then_terminate)
    preset = dataclasses.replace(get_preset("smoke"), steps=5, checkpoint_every=10, eval_every=100)
    out = train_model(preset, tmp_path / "model.safetensors", resume=False, device=torch.device("cpu"))
    state = torch.load(out.with_suffix(".resume.pt"), weights_only=True)
    assert state["step"] == 2 and out.exists()
    assert signal.getsignal(signal.SIGTERM) is not None and signal.getsignal(signal.SIGTERM) != signal.SIG_IGN


def test_csv_log_gains_the_columns_of_a_changed_recipe(tmp_path: Path) -> None:
    import csv

    from panst3r_splat.pipeline.training.loop import _append_csv

    path = tmp_path / "log.csv"
    _append_csv(path, {"step": 1, "a": 0.5})
    _append_csv(path, {"step": 2, "a": 0.25})
    _append_csv(path, {"step": 3, "a": 0.125, "b": 7})
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and rows[0]["b"] == "" and rows[2]["b"] == "7"
    assert not path.with_name("log.csv.tmp").exists()



def test_geometry_only_training_leaves_the_panoptic_weights_untouched(tmp_path: Path) -> None:
    preset = dataclasses.replace(get_preset("smoke"), steps=2, checkpoint_every=10, eval_every=100, panoptic=False)
    out = train_model(preset, tmp_path / "model.safetensors", resume=False, device=torch.device("cpu"))
    trained = torch.load(out.with_suffix(".resume.pt"), weights_only=True)["model"]
    torch.manual_seed(preset.seed)
    from panst3r_splat.configs.model_presets import MODEL_PRESETS
    from panst3r_splat.core.model.panst3r import PanSt3R

    initial = PanSt3R(MODEL_PRESETS[preset.model]()).state_dict()
    changed = {k for k, v in trained.items() if not torch.equal(v, initial[k])}
    assert any(k.startswith("must3r_decoder.") for k in changed)
    assert not any(k.startswith(("panoptic_decoder.", "dino_encoder.")) for k in changed)


def test_resume_drops_the_log_rows_of_steps_it_takes_again(tmp_path: Path) -> None:
    """A run that stopped without a checkpoint (killed, crashed) logged steps past its resume file: a resume removes
    those rows, so each step appears once in the record."""
    import csv

    from panst3r_splat.pipeline.training.loop import _drop_rows_after

    log = tmp_path / "model.log.csv"
    log.write_text("step,loss\n50,2.0\n100,1.5\n150,1.4\n")  # rows are numbered by steps done
    _drop_rows_after(log, 100)  # the resume file holds 100 steps: the row of step 100 stays
    with log.open(newline="") as f:
        assert [row["step"] for row in csv.DictReader(f)] == ["50", "100"]
    _drop_rows_after(log, 100)  # nothing left to drop: unchanged
    _drop_rows_after(tmp_path / "absent.csv", 0)  # no log yet: nothing to do
    assert log.read_text() == "step,loss\n50,2.0\n100,1.5\n"
