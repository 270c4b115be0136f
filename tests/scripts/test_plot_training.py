"""scripts/plot_training.py draws a run's CSV logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from _script_modules import load_script
from PIL import Image

plot_script = load_script("scripts/plot_training.py", "scripts_plot_training")


def test_plots_the_logs_of_a_run(tmp_path: Path) -> None:
    run = tmp_path / "model.safetensors"
    run.with_suffix(".log.csv").write_text(
        "step,loss_total,loss_descriptor,grad_norm,clipped,gnorm/loss_descriptor\n"
        "50,10.0,7.0,20.0,1.0,3.0\n100,8.0,6.0,15.0,0.0,\n")
    run.with_suffix(".eval.csv").write_text("step,desc_match_acc_2px,semantic_miou\n100,0.1,nan\n")
    rows = plot_script.read_csv(run.with_suffix(".log.csv"))
    assert plot_script.series(rows, "gnorm/loss_descriptor") == ([50.0], [3.0])  # blank cells are skipped
    out = plot_script.plot(run, tmp_path / "c.png")
    assert Image.open(out).size[0] > 800


def test_a_folder_without_logs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no training log"):
        plot_script.plot(tmp_path / "model.safetensors", tmp_path / "c.png")
