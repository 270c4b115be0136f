"""The fit loss's SSIM: ours (`splat.train.ssim`: compiled kernels on CPU, separable convolutions in torch elsewhere)
against torchmetrics' `structural_similarity_index_measure`, forward + backward, and what the difference is worth in
a whole fit step.

    python benchmarks/ssim_loss.py                        # both parts (a few minutes on the shared CPU)
    python benchmarks/ssim_loss.py --kernel-only          # only the forward + backward timing
    python benchmarks/ssim_loss.py --work runs/bench      # keep the demo's scene and predictions between runs

1. **Kernel**: `1 - SSIM(pred, gt)` forward and backward (gradient to `pred`) at the demo's fit resolution, the two
   implementations alternated in blocks so both see the same load; CPU time of the calling thread (one torch thread,
   as the demo runs), median over the blocks.
2. **Fit step**: whole `train_scene` runs on the demo's inputs (as `benchmarks/fit_step.py` makes them) with the loss's
   SSIM swapped for torchmetrics' and back, alternated; process CPU time per step, median over the repeats. The
   share printed last is (torchmetrics step - ours step) / ours step: the project keeps its own SSIM in the loss
   unless that share is at most 10% (splat/design.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable
from unittest import mock

import torch
from torch import Tensor

from panst3r_splat.splat import train as splat_train


def torchmetrics_ssim(img1: Tensor, img2: Tensor) -> Tensor:
    """torchmetrics' SSIM (Gaussian window 11, sigma 1.5, data range 1) on `[..., H, W, 3]` images."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    H, W, D = img1.shape[-3:]
    x = img1.reshape(-1, H, W, D).permute(0, 3, 1, 2)
    y = img2.reshape(-1, H, W, D).permute(0, 3, 1, 2)
    return structural_similarity_index_measure(x, y, data_range=1.0)


def kernel_ms(fn: Callable[[Tensor, Tensor], Tensor], pred: Tensor, gt: Tensor, reps: int) -> float:
    """CPU milliseconds of the calling thread per forward + backward of `1 - fn(pred, gt)`."""
    start = time.thread_time()
    for _ in range(reps):
        p = pred.detach().requires_grad_(True)
        (1 - fn(p, gt)).backward()
    return 1e3 * (time.thread_time() - start) / reps


def kernel(width: int, height: int, blocks: int, reps: int) -> tuple[float, float]:
    """Median ms of ours and torchmetrics' forward + backward (printed)."""
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(height, width, 3, generator=g)
    pred = (gt + 0.1 * torch.randn(height, width, 3, generator=g)).clamp(0, 1)
    ours, theirs = [], []
    for fn in (splat_train.ssim, torchmetrics_ssim):  # warm-up
        kernel_ms(fn, pred, gt, 3)
    for _ in range(blocks):
        ours.append(kernel_ms(splat_train.ssim, pred, gt, reps))
        theirs.append(kernel_ms(torchmetrics_ssim, pred, gt, reps))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"SSIM forward + backward at {width}x{height}: ours {a:.2f} ms, torchmetrics {b:.2f} ms "
          f"(+{b - a:.2f} ms), blocks of {reps}: ours {[round(x, 2) for x in ours]}, "
          f"torchmetrics {[round(x, 2) for x in theirs]}")
    return a, b


def fit_ms_per_step(inputs, steps: int, use_torchmetrics: bool) -> float:  # noqa: ANN001 (benchmarks' FitInputs)
    """Process CPU ms per step of a demo fit of `steps` steps (no checkpoint); `fit_step` is the sibling script
    (this folder is on `sys.path` when the script runs)."""
    from fit_step import fit

    ssim = torchmetrics_ssim if use_torchmetrics else splat_train.ssim
    with mock.patch.object(splat_train, "ssim", ssim):
        start = time.process_time()
        fit(inputs, steps, "numba", None)
        return 1e3 * (time.process_time() - start) / steps


def whole_fit(work: Path, steps: int, repeats: int) -> None:
    """Alternated demo fits with either SSIM; prints ms per step and the share torchmetrics would add."""
    from fit_step import demo_inputs, fit

    inputs = demo_inputs(work)
    fit(inputs, 2, "numba", None)  # warm-up: kernels loaded
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(fit_ms_per_step(inputs, steps, False))
        theirs.append(fit_ms_per_step(inputs, steps, True))
        print(f"  fit of {steps} steps: ours {ours[-1]:.1f} ms/step, torchmetrics {theirs[-1]:.1f} ms/step", flush=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"fit step (CPU time, median of {repeats}): ours {a:.1f} ms, torchmetrics {b:.1f} ms, "
          f"torchmetrics adds {100 * (b - a) / a:.1f}% of a step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="keep the synthetic scene and predictions here")
    parser.add_argument("--width", type=int, default=192, help="fit width (the demo's: 192)")
    parser.add_argument("--height", type=int, default=144, help="fit height (the demo's: 144)")
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100, help="steps of each timed fit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kernel-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} cores, 1-minute load {load:.1f}")
    kernel(args.width, args.height, args.blocks, args.reps)
    if not args.kernel_only:
        with tempfile.TemporaryDirectory(prefix="ssim-loss-") as tmp:
            whole_fit(args.work or Path(tmp), args.steps, args.repeats)


if __name__ == "__main__":
    main()
