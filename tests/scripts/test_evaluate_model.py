"""scripts/evaluate_model.py on one tiny held-out scene: every figure is computed, descriptors included."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from panst3r_splat.configs.model_presets import MODEL_PRESETS
from panst3r_splat.core.checkpoint import save_checkpoint
from panst3r_splat.core.model.panst3r import PanSt3R
from panst3r_splat.core.class_sets import builtin_class_set
from _script_modules import load_script


def _v2_checkpoint(tmp_path: Path) -> Path:
    """A randomly initialised second-version model with the built-in class set, saved as the project saves one."""
    torch.manual_seed(0)
    model = PanSt3R(MODEL_PRESETS["builtin_v2"]())
    classes = builtin_class_set(768)
    ckpt = tmp_path / "v2.safetensors"
    save_checkpoint(ckpt, model, class_names=classes.class_names,
                    class_embeddings=torch.from_numpy(classes.class_embeddings), dtype=torch.float16)
    return ckpt


def test_scores_a_v2_checkpoint(tmp_path: Path) -> None:
    ckpt = _v2_checkpoint(tmp_path)
    script = load_script("scripts/evaluate_model.py", "scripts_evaluate_model")
    script._MODEL.clear()
    args = argparse.Namespace(checkpoint=ckpt, views=3, merge=None, device="cpu", pool="test")
    row = script.evaluate_scene(script.FIRST_SEED["test"], tmp_path / "out", args)
    for key in ("pq_scene", "miou", "local_depth_rel_err", "desc_match_acc_2px", "rel_rot_err_deg"):
        assert math.isfinite(row[key]), key
    assert 0.0 <= row["desc_match_acc_2px"] <= 1.0


def test_unconnected_views_are_left_out_of_the_geometry(tmp_path: Path, monkeypatch) -> None:
    """A view the camera solver could not connect (NaN camera and points) is scored as unconnected, not a crash."""
    import dataclasses

    import numpy as np

    ckpt = _v2_checkpoint(tmp_path)
    script = load_script("scripts/evaluate_model.py", "scripts_evaluate_model_nan")
    script._MODEL.clear()
    real_load = script.load_predictions

    def load_with_one_lost_view(folder):
        pred = real_load(folder)
        pts3d = pred.pts3d.copy()
        pts3d[1] = np.nan
        return dataclasses.replace(pred, pts3d=pts3d, camera_ok=np.array([True, False, True]))

    monkeypatch.setattr(script, "load_predictions", load_with_one_lost_view)
    args = argparse.Namespace(checkpoint=ckpt, views=3, merge=None, device="cpu", pool="test")
    row = script.evaluate_scene(script.FIRST_SEED["test"], tmp_path / "out", args)
    assert row["views_connected"] == 2 / 3
    for key in ("depth_rel_err", "rel_rot_err_deg", "camera_rot_err_deg"):
        assert math.isfinite(row[key]), key
