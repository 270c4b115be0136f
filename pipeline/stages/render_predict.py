"""`panst3r-splat render-predict`, second half: PanSt3R on the RGB a `render` stage wrote.

The paper's other novel-view strategy (the "PanSt3R" row of its Table 2, next to the lifted labels, "+LUDVIG"):
render RGB at the cameras (`stages.render.render_scene`), then predict and merge on those renders. `batch` runs it
on the held-out views of every scene; the command runs both halves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.stages.predict import PredictOptions, PredictResult, run_predict


def render_then_predict(renders: Path, out: Path, predict: PredictOptions) -> PredictResult:
    """PanSt3R on the RGB renders of a `render` folder (`renders/rgb/`): a predictions folder whose label PNGs are
    named after the rendered frames, so `eval --pred OUT` scores them (the paper's "PanSt3R" novel-view row)."""
    rgb = Path(renders) / "rgb"
    if not rgb.is_dir() or not any(rgb.iterdir()):
        raise UserError(f"{rgb} holds no rendered images; render the scene first (`panst3r-splat render`)")
    return run_predict(rgb, Path(out), dataclasses.replace(predict, split="train"))
