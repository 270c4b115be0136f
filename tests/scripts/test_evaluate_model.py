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


def test_scores_a_v2_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = PanSt3R(MODEL_PRESETS["builtin_v2"]())
    classes = builtin_class_set(768)
    ckpt = tmp_path / "v2.safetensors"
    save_checkpoint(ckpt, model, class_names=classes.class_names,
                    class_embeddings=torch.from_numpy(classes.class_embeddings), dtype=torch.float16)
    script = load_script("scripts/evaluate_model.py", "scripts_evaluate_model")
    script._MODEL.clear()
    args = argparse.Namespace(checkpoint=ckpt, views=3, merge=None, device="cpu", pool="test")
    row = script.evaluate_scene(script.FIRST_SEED["test"], tmp_path / "out", args)
    for key in ("pq_scene", "miou", "local_depth_rel_err", "desc_match_acc_2px", "rel_rot_err_deg"):
        assert math.isfinite(row[key]), key
    assert 0.0 <= row["desc_match_acc_2px"] <= 1.0
