"""The second built-in model's recipe: scene bank, mixed rooms and resolutions, compact resume, logs, metadata."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from panst3r_splat.configs.data import DataConfig
from panst3r_splat.configs.training import get_preset
from panst3r_splat.core.checkpoint import load_own_checkpoint
from panst3r_splat.core.geometry import local_points
from panst3r_splat.pipeline.datasets.synth import SynthConfig
from panst3r_splat.pipeline.training.bank import SceneBank, config_key
from panst3r_splat.pipeline.training.data import SyntheticScenes, downsample_views
from panst3r_splat.pipeline.training.loop import train_model

SMALL = SynthConfig(train_views=3, test_views=0, width=64, height=48, arc_deg=(30.0, 60.0))


def test_bank_renders_once_and_regenerates_lost_or_damaged_rooms(tmp_path: Path) -> None:
    bank = SceneBank(SMALL, tmp_path)
    first = bank[4]
    assert bank.path(4).exists() and bank.path(4).parent.name == config_key(SMALL)
    cached = bank[4]
    np.testing.assert_array_equal(cached.images, first.images)
    bank.path(4).write_bytes(b"not an npz")  # damaged: rendered again, same room
    np.testing.assert_array_equal(bank[4].depth, first.depth)
    bank.path(4).unlink()  # lost (another machine): rendered again, same room
    np.testing.assert_array_equal(bank[4].semantics, first.semantics)
    assert config_key(dataclasses.replace(SMALL)) == config_key(SMALL)
    assert config_key(dataclasses.replace(SMALL, width=32)) != config_key(SMALL)
    with pytest.raises(ValueError, match="held out"):
        bank[2_000_000]


def test_bank_samples_mix_rooms_share_a_resolution_per_batch_and_are_deterministic(tmp_path: Path) -> None:
    cfg = DataConfig(views=2, scene_views=3, width=64, height=48, sampling="bank", bank_start=6, bank_growth=0.0,
                     low_res=(32, 32), low_res_probability=0.5, descriptor_queries=8, synth=SMALL)
    a = SyntheticScenes(cfg, batch_size=4, bank_root=tmp_path)
    b = SyntheticScenes(cfg, batch_size=4, bank_root=tmp_path)
    seeds = [a.bank_seed(i) for i in range(8)]
    assert len(set(seeds[:4])) > 1  # one batch holds several rooms
    for i in (5, 0, 3):
        x, y = a[i], b[i]
        torch.testing.assert_close(x.images, y.images, rtol=0, atol=0)
        torch.testing.assert_close(x.targets.pixel_matches, y.targets.pixel_matches)
    sizes = [tuple(a[i].images.shape[-2:]) for i in range(16)]
    for batch in range(4):
        assert len(set(sizes[4 * batch: 4 * batch + 4])) == 1
    assert {(48, 64), (32, 32)} == set(sizes)
    assert a[0].targets.pixel_queries.shape == (2, 8)


def test_downsampling_keeps_points_on_their_rays() -> None:
    bank = SceneBank(SMALL, None)
    scene = bank._render(3)
    images, depth, sem, inst, K = downsample_views(scene.images, scene.depth, scene.semantics, scene.instances,
                                                   scene.K, (32, 24))
    assert images.shape == (3, 24, 32, 3) and depth.shape == sem.shape == inst.shape == (3, 24, 32)
    # Each small pixel takes its depth from the big pixel nearest to its centre: that pixel's 3D point projects,
    # with the scaled intrinsics, inside the small pixel (within half a small pixel of its centre).
    big_pts = local_points(scene.depth.astype(np.float64), np.broadcast_to(scene.K, (3, 3, 3)))
    rows = np.minimum(((np.arange(24) + 0.5) * 2).astype(int), 47)
    cols = np.minimum(((np.arange(32) + 0.5) * 2).astype(int), 63)
    pts = big_pts[:, rows][:, :, cols]
    ok = depth > 0
    uv = pts[ok] @ K.T
    u, v = uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2]
    jj, ii = np.meshgrid(np.arange(32), np.arange(24))
    assert np.abs(u - np.broadcast_to(jj, depth.shape)[ok]).max() <= 0.5 + 1e-9
    assert np.abs(v - np.broadcast_to(ii, depth.shape)[ok]).max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(depth, scene.depth[:, rows][:, :, cols])


def test_v2_smoke_run_logs_shares_and_resumes_from_a_compact_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PANST3R_SCENE_BANK", str(tmp_path / "bank"))
    preset = get_preset("smoke_v2")
    out = tmp_path / "run" / "model.safetensors"
    train_model(preset, out, resume=False, device=torch.device("cpu"), max_steps=2)
    state = torch.load(out.with_suffix(".resume.pt"), weights_only=True)
    assert state["step"] == 2 and "optimizer" not in state
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    train_model(preset, out, resume=True, device=torch.device("cpu"))
    assert torch.load(out.with_suffix(".resume.pt"), weights_only=True)["step"] == 3
    loaded = load_own_checkpoint(out)
    assert loaded.metadata["camera_source"] == "matches" and loaded.metadata["global_head_trained"] == "false"
    assert loaded.model.descriptor_head is not None
    with out.with_suffix(".log.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    row = rows[0]
    assert {"gnorm/loss_descriptor", "gnorm/loss_pts_local", "gnorm/loss_mask_bce", "clipped",
            "descriptor_nce", "px/wall", "px/bed"} <= set(row)
    assert sum(float(v) for k, v in row.items() if k.startswith("px/")) == pytest.approx(1.0)
    assert "loss_pts_global" not in row and "loss_pose_rotation" not in row
    with out.with_suffix(".eval.csv").open(newline="") as f:
        assert "desc_match_acc_2px" in next(csv.DictReader(f))


def test_timer_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """A run checkpoints on the wall clock too (a session may end without a signal)."""
    monkeypatch.setenv("PANST3R_SCENE_BANK", str(tmp_path / "bank"))
    preset = dataclasses.replace(get_preset("smoke_v2"), steps=3, checkpoint_every=100, checkpoint_minutes=0.0)
    out = tmp_path / "model.safetensors"
    seen = []
    from panst3r_splat.pipeline.training import loop

    real = loop._resume_state

    def spy(*args, **kwargs):
        seen.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_resume_state", spy)
    train_model(preset, out, resume=False, device=torch.device("cpu"))
    assert seen[:3] == [1, 2, 3]


def test_gpu_preset_runs_on_cpu_with_parallel_workers(tmp_path: Path, monkeypatch) -> None:
    """The v2_gpu preset's data path (several workers, each pinned to one thread) with tiny samples, on CPU."""
    monkeypatch.setenv("PANST3R_SCENE_BANK", str(tmp_path / "bank"))
    tiny = get_preset("smoke_v2")
    gpu = get_preset("v2_gpu")
    assert gpu.model == tiny.model == "builtin_v2" and gpu.num_workers > 1
    preset = dataclasses.replace(gpu, data=tiny.data, criterion=tiny.criterion, batch_size=2, num_workers=2,
                                 steps=2, warmup_steps=1, eval_every=1000, checkpoint_minutes=None, grad_share_every=0)
    out = train_model(preset, tmp_path / "model.safetensors", resume=False, device=torch.device("cpu"))
    assert torch.load(out.with_suffix(".resume.pt"), weights_only=True)["step"] == 2
