"""Quality and cost of the labelled splats on a synthetic scene, in oracle mode (the figures of issue 7 / README).

    synth -> fit --oracle -> render --cameras dataset:SCENE:test -> eval

prints the novel-view PQ^scene, mIoU and RGB PSNR on the held-out test views (targets: PQ^scene >= 0.90,
PSNR >= 22 dB), the same on the input views, the same pipeline from the built-in model's predictions instead of the
ground truth (direct PQ^scene of the merged predictions on the input views vs the lifted PQ^scene on the held-out
views; target: lifted >= direct - 0.05), the time of a training step against the number of Gaussians and the
resolution (target: <= 0.2 s at 128x96 with about 5k Gaussians on CPU), and the cost of lifting against one
forward + backward RGB render of every input view (target: <= 1.5x).

    python scripts/splat_quality.py                        # 192x144, 12 + 6 views, 1500 steps
    python scripts/splat_quality.py --width 128 --height 96 --steps 600 --threads 2

It is a script, not a test: it takes minutes on a CPU. Pass --out to keep the scene, the fit and the renders.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from panst3r_splat.core.transforms import scale_intrinsics
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene
from panst3r_splat.pipeline.devices import resolve_device
from panst3r_splat.pipeline.evaluation import evaluate_folders
from panst3r_splat.pipeline.jobs.demo.options import fit_conf_threshold
from panst3r_splat.pipeline.stages.fit import (
    FitInputs, FitOptions, fit_scene, inputs_from_dataset, inputs_from_predictions,
)
from panst3r_splat.pipeline.stages.predict import PredictOptions, run_predict
from panst3r_splat.pipeline.stages.render import alignment_failure
from panst3r_splat.pipeline.stages.render import DatasetCameras, RenderOptions, render_scene
from panst3r_splat.splat.gaussians import Cameras, init_from_points
from panst3r_splat.splat.lifting import LiftOptions, lift_segments
from panst3r_splat.splat.rasterize import rasterize
from panst3r_splat.splat.scene_io import load_scene
from panst3r_splat.splat.train import TrainConfig, train_scene


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="synthetic scene seed")
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--train-views", type=int, default=12)
    parser.add_argument("--test-views", type=int, default=6)
    parser.add_argument("--steps", type=int, default=TrainConfig().steps, help="training steps of the fit")
    parser.add_argument("--budget", type=int, default=FitOptions().budget, help="initial Gaussians")
    parser.add_argument("--sh-degree", type=int, default=FitOptions().sh_degree)
    parser.add_argument("--init-opacity", type=float, default=FitOptions().init_opacity)
    parser.add_argument("--background", default=FitOptions().background, choices=("mean", "black", "white"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--timing-budgets", default="1000,5000,20000",
                        help="Gaussian counts of the per-step timing (comma separated; empty to skip)")
    parser.add_argument("--timing-steps", type=int, default=8, help="steps timed per (Gaussians, resolution)")
    parser.add_argument("--skip-predictions", action="store_true",
                        help="skip the fit from the built-in model's predictions (oracle figures only)")
    parser.add_argument("--out", type=Path, default=None, help="keep everything here (default: a temporary folder)")
    return parser.parse_args()


def _resized(inputs: FitInputs, width: int, height: int) -> tuple[Cameras, torch.Tensor, torch.Tensor]:
    """The inputs' cameras, images and segment maps at another resolution (intrinsics scaled exactly)."""
    cams = inputs.cameras
    K = scale_intrinsics(cams.K, width / cams.width, height / cams.height)
    images = torch.from_numpy(np.stack([np.asarray(Image.fromarray(im).resize((width, height), Image.BILINEAR))
                                        for im in inputs.images.numpy()]))
    segments = torch.from_numpy(np.stack([np.asarray(Image.fromarray(s.astype(np.int32)).resize(
        (width, height), Image.NEAREST)) for s in inputs.segment_maps.numpy()]).astype(np.int64))
    return dataclasses.replace(cams, K=K, width=width, height=height), images, segments


def step_times(inputs: FitInputs, budgets: list[int], sizes: list[tuple[int, int]], steps: int,
               device: torch.device) -> list[tuple[int, str, float]]:
    """Seconds per training step (densification off, regularisation on) for each (budget, resolution)."""
    rows = []
    for width, height in sizes:
        cameras, images, segments = _resized(inputs, width, height)
        for budget in budgets:
            scene = init_from_points(inputs.points, inputs.colors, budget)
            config = TrainConfig(steps=steps + 1, densify=False, progress=False)
            train_scene(scene, cameras, images, segments, dataclasses.replace(config, steps=1), device)  # warm-up
            start = time.perf_counter()
            train_scene(scene, cameras, images, segments, config, device)
            rows.append((len(scene), f"{width}x{height}", (time.perf_counter() - start) / (steps + 1)))
    return rows


def lifting_cost(scene_dir: Path, inputs: FitInputs, device: torch.device) -> tuple[float, float]:
    """Seconds of `lift_segments` over the input views, and of one forward + backward RGB render of every view."""
    g = load_scene(scene_dir).gaussians.to(device)
    cams = inputs.cameras.to(device)
    start = time.perf_counter()
    lift_segments(g.means, g.quats, g.scales, g.opacities, cams.T_cam_world, cams.K, inputs.segment_maps.to(device),
                  LiftOptions())
    lift = time.perf_counter() - start
    colors = g.colors().detach().requires_grad_(True)
    start = time.perf_counter()
    for v in range(len(cams)):
        render, _, _ = rasterize(g.means, g.quats, g.scales, g.opacities, colors, cams.T_cam_world[v : v + 1],
                                 cams.K[v : v + 1], cams.width, cams.height)
        render.sum().backward()
    return lift, time.perf_counter() - start


def from_predictions(scene_dir: Path, root: Path, options: FitOptions, device: torch.device
                     ) -> tuple[float, float, float, float, Optional[str]]:
    """predict (built-in model) -> fit -> render the held-out views -> eval. Returns the direct PQ^scene and mIoU of
    the merged predictions on the input views, the lifted PQ^scene and mIoU on the held-out views (NaN when the
    predicted cameras admit no alignment to the dataset), and the alignment's residual or failure."""
    pred_dir, fit_dir, out = root / "predictions", root / "fitted_pred", root / "render_pred_test"
    run_predict(scene_dir, pred_dir, PredictOptions(split="train", device=device))
    direct = evaluate_folders(scene_dir, pred_dir, split="train")
    with np.load(pred_dir / "predictions.npz", allow_pickle=False) as npz:
        threshold, _ = fit_conf_threshold(npz["conf"])
    fit_scene(inputs_from_predictions(pred_dir, conf_threshold=threshold), fit_dir, options, device)
    failure = alignment_failure(fit_dir, scene_dir)
    if failure is not None:
        return direct.pq_scene.all.pq, direct.miou.miou, float("nan"), float("nan"), failure
    summary = render_scene(fit_dir, out, DatasetCameras(scene_dir, "test"), RenderOptions(), device=device)
    lifted = evaluate_folders(scene_dir, out, split="test")
    alignment = summary.alignment
    note = (f"alignment residual {alignment.residual:.3f}, rotation error {alignment.rotation_error_deg:.1f} deg"
            if alignment is not None else None)
    return direct.pq_scene.all.pq, direct.miou.miou, lifted.pq_scene.all.pq, lifted.miou.miou, note


def main() -> None:
    args = _arguments()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    root = args.out or Path(tempfile.mkdtemp(prefix="splat_quality_"))
    root.mkdir(parents=True, exist_ok=True)
    config = SynthConfig(train_views=args.train_views, test_views=args.test_views, width=args.width,
                         height=args.height)
    scene_dir, fit_dir = root / "scene", root / "fitted"
    write_scene(generate_scene(config, args.seed), scene_dir, overwrite=True)
    inputs = inputs_from_dataset(scene_dir)
    train = dataclasses.replace(TrainConfig(), steps=args.steps, progress=True)
    options = FitOptions(train=train, budget=args.budget, sh_degree=args.sh_degree, init_opacity=args.init_opacity,
                         background=args.background)
    start = time.perf_counter()
    fitted = fit_scene(inputs, fit_dir, options, device).scene
    fit_seconds = time.perf_counter() - start
    results = {}
    for split in ("test", "train"):
        out = root / f"render_{split}"
        summary = render_scene(fit_dir, out, DatasetCameras(scene_dir, split), RenderOptions(), device=device)
        report = evaluate_folders(scene_dir, out, split=split)
        results[split] = (report.pq_scene.all.pq, report.miou.miou, statistics.mean(summary.psnr.values()),
                          statistics.mean(summary.psnr_covered.values() or [float("nan")]), summary.void_fraction)
    print(f"\nsynthetic scene seed {args.seed}, {args.width}x{args.height}, {args.train_views} input + "
          f"{args.test_views} test views; oracle fit: {args.steps} steps, {args.budget} initial -> "
          f"{len(fitted.gaussians)} Gaussians, SH degree {args.sh_degree}, {args.background} background, "
          f"{fit_seconds:.0f} s on {device} ({fitted.info['seconds']})")
    print(f"{'views':<8}{'PQ^scene':>10}{'mIoU':>8}{'PSNR dB':>9}{'covered':>9}{'holes':>8}")
    for split, (pq, miou, db, db_covered, void) in results.items():
        name = "test" if split == "test" else "input"
        print(f"{name:<8}{pq:>10.3f}{miou:>8.3f}{db:>9.2f}{db_covered:>9.2f}{100 * void:>7.2f}%")
    print("PSNR: mean over views; 'covered': over the pixels with accumulated alpha >= 0.5 only; 'holes': the "
          "other pixels\n(parts no input view saw; void in the colour renders, nearest label in the evaluation maps)")
    print("targets: novel-view (test) PQ^scene >= 0.90, PSNR >= 22 dB")
    if not args.skip_predictions:
        direct_pq, direct_miou, lifted_pq, lifted_miou, note = from_predictions(scene_dir, root, options, device)
        print(f"\nfrom the built-in model's predictions (same scene and fit settings):")
        print(f"{'views':<8}{'PQ^scene':>10}{'mIoU':>8}")
        print(f"{'input':<8}{direct_pq:>10.3f}{direct_miou:>8.3f}   direct: merged predictions")
        print(f"{'test':<8}{lifted_pq:>10.3f}{lifted_miou:>8.3f}   lifted: fitted from the predictions, rendered "
              "at the held-out cameras")
        print(f"scene -> dataset similarity: {note}")
        print(f"target: lifted >= direct - 0.05 = {direct_pq - 0.05:.3f}: "
              f"{'met' if lifted_pq >= direct_pq - 0.05 else 'NOT met'}")
    lift, render = lifting_cost(fit_dir, inputs, device)
    print(f"\nlifting over {len(inputs.cameras)} input views: {lift:.2f} s = {lift / render:.2f} x one forward + "
          f"backward RGB render of every view ({render:.2f} s; target <= 1.5 x)")
    budgets = [int(b) for b in args.timing_budgets.split(",") if b.strip()]
    if budgets:
        sizes = sorted({(args.width, args.height), (128, 96)}, key=lambda s: s[0] * s[1])
        print(f"\ntraining step time on {device} ({torch.get_num_threads()} threads; target <= 0.2 s at 128x96 "
              "with ~5k Gaussians on CPU)")
        print(f"{'Gaussians':>10}{'size':>10}{'s/step':>9}")
        for n, size, seconds in step_times(inputs, budgets, sizes, args.timing_steps, device):
            print(f"{n:>10}{size:>10}{seconds:>9.3f}")
    print(f"\noutputs in {root}")


if __name__ == "__main__":
    main()
