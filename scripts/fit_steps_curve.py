"""Held-out quality vs fit steps on synthetic rooms other than the demo's: the evidence for the fit step default.

    python scripts/fit_steps_curve.py                          # seeds 1,000,002 and 1,000,003; 200-1500 steps
    python scripts/fit_steps_curve.py --seeds 1000004 --steps 400 1500 2500

Each seed is a held-out synthetic room (seeds from 1,000,000 up never enter model training; the demo's is
1,000,001, left out here so the default is not tuned on the scene it is shown on), made as the demo makes it (8
input + 4 held-out views at the built-in model's 192x144), predicted by the built-in model, then fitted under the
scene's own cameras (the demo's "scene's poses" path: `inputs_from_predictions(..., poses=...)`) for each step
count, with the demo's other settings (5,000 initial Gaussians, one torch thread), and rendered at the 4 held-out
cameras. Printed per fit: PSNR over the whole held-out image and over the pixels the splats cover (accumulated
alpha >= 0.5), the covered share, the training time and the seconds per step. Each step count is its own run
(the learning-rate decay and densification windows depend on the total), not a checkpoint of a longer one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene
from panst3r_splat.pipeline.jobs.demo.options import (
    DEFAULT_BUDGET, DEFAULT_TEST_VIEWS, DEFAULT_VIEWS, fit_conf_threshold, synth_resolution,
)
from panst3r_splat.pipeline.stages.fit import FitOptions, fit_scene, inputs_from_predictions
from panst3r_splat.pipeline.stages.predict import PredictOptions, run_predict
from panst3r_splat.pipeline.stages.render import DatasetCameras, RenderOptions, render_scene
from panst3r_splat.splat.train import TrainConfig


def prepare(work: Path, seed: int) -> Path:
    """Synthetic room `seed` and its predictions under `work`; returns the predictions folder."""
    width, height = synth_resolution("default")
    config = SynthConfig(train_views=DEFAULT_VIEWS, test_views=DEFAULT_TEST_VIEWS, width=width, height=height)
    write_scene(generate_scene(config, seed), work / "data")
    run_predict(work / "data", work / "pred", PredictOptions(size="default", split="train"))
    return work / "pred"


def one_fit(work: Path, steps: int) -> dict[str, float]:
    """Fit under the scene's poses with `steps` steps, render the held-out views; the figures of one row."""
    with np.load(work / "pred" / "predictions.npz", allow_pickle=False) as npz:
        threshold, _ = fit_conf_threshold(npz["conf"])
    inputs = inputs_from_predictions(work / "pred", conf_threshold=threshold, poses=work / "data")
    out = work / f"scene-{steps}"
    options = FitOptions(train=TrainConfig(steps=steps, progress=False), budget=DEFAULT_BUDGET)
    result = fit_scene(inputs, out, options, torch.device("cpu"))
    summary = render_scene(out, work / f"renders-{steps}", DatasetCameras(work / "data", "test"),
                           RenderOptions(fill_void=False))
    return {"psnr": statistics.mean(summary.psnr.values()),
            "psnr_covered": statistics.mean(summary.psnr_covered.values()),
            "covered": 1.0 - summary.void_fraction, "train_seconds": result.seconds["train"],
            "gaussians": len(result.scene.gaussians) if result.scene is not None else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1_000_002, 1_000_003])
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 400, 800, 1500])
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} cores, 1-minute load {load:.1f} at the start")
    print(f"{'seed':>8} {'steps':>6} {'PSNR dB':>8} {'covered PSNR':>13} {'covered':>8} {'Gaussians':>10} "
          f"{'train s':>8} {'ms/step':>8}")
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="fit-steps-") as tmp:
            work = Path(tmp)
            prepare(work, seed)
            for steps in args.steps:
                start = time.perf_counter()
                row = one_fit(work, steps) | {"seed": seed, "steps": steps}
                rows.append(row)
                print(f"{seed:>8} {steps:>6} {row['psnr']:>8.2f} {row['psnr_covered']:>13.2f} "
                      f"{100 * row['covered']:>7.1f}% {row['gaussians']:>10} {row['train_seconds']:>8.1f} "
                      f"{1e3 * row['train_seconds'] / steps:>8.1f}   ({time.perf_counter() - start:.0f} s with "
                      "lifting and rendering)", flush=True)
    print("\nmean over seeds")
    for steps in args.steps:
        sel = [r for r in rows if r["steps"] == steps]
        print(f"{steps:>6} steps: PSNR {statistics.mean(r['psnr'] for r in sel):.2f} dB, covered PSNR "
              f"{statistics.mean(r['psnr_covered'] for r in sel):.2f} dB, covered "
              f"{100 * statistics.mean(r['covered'] for r in sel):.1f}%, train "
              f"{statistics.mean(r['train_seconds'] for r in sel):.1f} s")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"1-minute load {load:.1f} at the end")


if __name__ == "__main__":
    main()
