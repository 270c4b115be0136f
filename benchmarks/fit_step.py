"""Where the time of a demo fit goes, and the fit's speed with the compiled CPU rasteriser vs the torch reference.

    python benchmarks/fit_step.py                       # profile + ratio on the demo's scene (a few minutes)
    python benchmarks/fit_step.py --profile-only        # only the per-part profile
    python benchmarks/fit_step.py --ratio-only --steps 200

The inputs are the demo's: its synthetic room (seed 1,000,001, 8 input views at the built-in model's 192x144),
predicted and merged by the built-in model, then fitted exactly as `pipeline.stages.fit.fit_scene` fits them (5,000
initial Gaussians, SH degree 1, the mean image colour as background, instance-colour regularisation, densification,
a checkpoint every 100 steps) with one torch thread, as the demo runs.

1. **Profile** (`torch.profiler`, numba backend): milliseconds per step of each part of `train_scene`'s loop (the
   `fit.*` labels of `splat/train.py`), the forward split into its rasteriser stages and the backward into its
   autograd nodes (the compositing kernel, the projection, SSIM's convolutions, ...).
2. **Ratio**: whole fits of `--steps` steps with the numba backend and the plain-torch reference, alternated
   `--repeats` times so both see the same load; the ratio is reference time / numba time, pair by pair.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from panst3r_splat.pipeline.openmp import quiet_openmp_waits

quiet_openmp_waits()  # as the console command does, before torch loads OpenMP (pipeline/openmp.py)

import torch  # noqa: E402

from panst3r_splat.pipeline.jobs.demo.options import DEMO_SEED, DEFAULT_BUDGET, fit_conf_threshold, synth_resolution
from panst3r_splat.pipeline.stages.fit import FitInputs, background_color, inputs_from_predictions
from panst3r_splat.splat.gaussians import init_from_points
from panst3r_splat.splat.train import TrainConfig, train_scene


def demo_inputs(work: Path, seed: int = DEMO_SEED, views: int = 8) -> FitInputs:
    """Synthetic room `seed` -> built-in model predictions -> fit inputs (as the demo's pose-free fit)."""
    from panst3r_splat.core.predictions import load_predictions
    from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene
    from panst3r_splat.pipeline.stages.predict import PredictOptions, run_predict

    if not (work / "pred" / "predictions.npz").is_file():
        width, height = synth_resolution("default")
        write_scene(generate_scene(SynthConfig(train_views=views, test_views=0, width=width, height=height), seed),
                    work / "data")
        run_predict(work / "data", work / "pred", PredictOptions(size="default", split="train"))
    threshold, _ = fit_conf_threshold(load_predictions(work / "pred").conf)
    return inputs_from_predictions(work / "pred", conf_threshold=threshold)


def fit(inputs: FitInputs, steps: int, backend: str, checkpoint: Path | None) -> float:
    """Seconds of `train_scene` on `inputs` as `fit_scene` calls it (without lifting and saving)."""
    scene = init_from_points(inputs.points, inputs.colors, DEFAULT_BUDGET, sh_degree=1, init_opacity=0.1)
    config = TrainConfig(steps=steps, backend=backend, progress=False,  # type: ignore[arg-type]
                         background=background_color(inputs.images, "mean"))
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    start = time.perf_counter()
    train_scene(scene, inputs.cameras, inputs.images, inputs.segment_maps, config, "cpu", checkpoint=checkpoint)
    return time.perf_counter() - start


def profile(inputs: FitInputs, steps: int, backend: str, checkpoint: Path) -> dict[str, float]:
    """Milliseconds per step of each part (see the module docstring), printed as a table."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    fit(inputs, 2, backend, checkpoint)  # warm-up: kernels loaded, caches filled
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = fit(inputs, steps, backend, checkpoint)
    totals: dict[str, float] = collections.defaultdict(float)
    for event in prof.key_averages():
        name = event.key
        ms = event.cpu_time_total / 1e3 / steps
        if name.startswith("fit."):
            totals[name] += ms
        elif name.startswith("autograd::engine::evaluate_function: "):
            totals["backward: " + name.split(": ", 1)[1]] += ms
        elif name in ("_ProjectNumba", "_CompositeNumba", "ssim"):
            totals["forward: " + name] += ms
    rows = dict(sorted(totals.items(), key=lambda kv: -kv[1]))
    print(f"\nprofile, {backend} backend, {steps} steps: {1e3 * wall / steps:.1f} ms per step under the profiler")
    for name, ms in rows.items():
        if ms >= 0.05:
            print(f"  {name:<64} {ms:8.2f} ms")
    return rows


def ratio(inputs: FitInputs, steps: int, repeats: int, checkpoint: Path) -> list[tuple[float, float]]:
    """(reference seconds, numba seconds) of whole fits, alternated; printed with their ratio."""
    fit(inputs, 2, "numba", checkpoint)
    pairs = []
    for _ in range(repeats):
        ref = fit(inputs, steps, "torch", checkpoint)
        new = fit(inputs, steps, "numba", checkpoint)
        pairs.append((ref, new))
        print(f"  reference {ref:7.2f} s   numba {new:7.2f} s   ratio {ref / new:5.2f}x", flush=True)
    med = statistics.median(r / n for r, n in pairs)
    print(f"fit of {steps} steps: reference {statistics.median(p[0] for p in pairs):.2f} s, numba "
          f"{statistics.median(p[1] for p in pairs):.2f} s, median ratio {med:.2f}x "
          f"({1e3 * statistics.median(p[1] for p in pairs) / steps:.1f} ms per numba step)")
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="keep the synthetic scene and predictions here")
    parser.add_argument("--steps", type=int, default=400, help="steps of each timed fit (the demo's default: 400)")
    parser.add_argument("--profile-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backend", default="numba", help="backend of the profile")
    parser.add_argument("--profile-only", action="store_true")
    parser.add_argument("--ratio-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} cores, 1-minute load {load:.1f}")
    with tempfile.TemporaryDirectory(prefix="fit-step-") as tmp:
        work = args.work or Path(tmp)
        inputs = demo_inputs(work)
        print(f"demo fit inputs: {len(inputs.cameras)} views {inputs.cameras.width}x{inputs.cameras.height}, "
              f"{len(inputs.points)} points, {len(inputs.legend)} segments")
        checkpoint = Path(tmp) / "train.ckpt"
        if not args.ratio_only:
            profile(inputs, args.profile_steps, args.backend, checkpoint)
        if not args.profile_only:
            ratio(inputs, args.steps, args.repeats, checkpoint)


if __name__ == "__main__":
    main()
