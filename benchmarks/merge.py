"""Benchmark of the multi-view QUBO merge: official-style vs ours, on the same synthetic inputs.

For each number of views (default 8 and 32; Q = 200 queries, masks 256x192 so images 512x384) it measures, in one
run: the exact weight matrix (official loop on the fully upsampled masks vs our view-streamed tiles), the solver
(the official annealing, 20 restarts x 10,000 flips with full energy recomputation, vs ours) with both energies
evaluated on the same exact matrix, the approximate mask-resolution weights and their error, and our end-to-end
``merge_qubo`` per view. Wall time and peak memory (CPU: peak resident set above the level at the start, sampled
every millisecond; CUDA: peak allocated). Prints a table; ``--json PATH`` also writes the figures.

    python benchmarks/merge.py                       # the full benchmark (several minutes on CPU)
    python benchmarks/merge.py --views 2 --mask-hw 48 64 --queries 60   # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from panst3r_splat.core.merging import QuboConfig, merge_qubo, qubo_energy, qubo_weights, solve_qubo
from panst3r_splat.core.merging.masks import _upsampled_mask_probs
from panst3r_splat.core.merging.solver import _anneal_official
from panst3r_splat.core.merging.synthetic import synthetic_masks

logger = logging.getLogger("benchmarks.merge")


class PeakMemory:
    """Peak memory above the starting level while the block runs: CUDA allocator stats, else sampled RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._rss() - self._start)
            time.sleep(0.001)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._start = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, self._rss() - self._start)


@dataclass
class Measure:
    seconds: float
    peak_mb: float


def measure(fn: Callable[[], Any], device: torch.device) -> tuple[Any, Measure]:
    """Run ``fn`` once; its result, wall time and peak memory."""
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return out, Measure(seconds, mem.peak_bytes / 2**20)


def official_style_weights(mask_logits: torch.Tensor, image_hw: tuple[int, int], penalty: float = 1.0) -> np.ndarray:
    """The official ``weight_from_masks`` algorithm: all masks upsampled at once (Q x V x H x W float32), then per
    query the minimum against every earlier mask at full resolution (an i x V x H x W temporary), float32 sums."""
    masks = _upsampled_mask_probs(mask_logits, image_hw)  # [Q, V, H, W]
    Q, V = masks.shape[:2]
    flat = masks.reshape(Q, -1)
    W = torch.diag(flat.sum(dim=1))
    for i in range(1, Q):
        overlap = torch.minimum(flat[i][None], flat[:i]).sum(dim=1)
        W[i, :i] = W[:i, i] = -(1 + penalty) * overlap / 2
    W /= image_hw[0] * image_hw[1]
    W /= V
    return -W.cpu().numpy()


def run_views(num_views: int, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """All measurements for one number of views."""
    h, w = args.mask_hw
    image_hw = (2 * h, 2 * w)
    synth = synthetic_masks(num_views=num_views, num_queries=args.queries, mask_hw=(h, w), seed=args.seed)
    class_logits, mask_logits = synth.class_logits.to(device), synth.mask_logits.to(device)
    config = QuboConfig()
    row: dict[str, Any] = {"views": num_views, "queries": args.queries, "image_hw": image_hw}

    A, ours_w = measure(lambda: qubo_weights(mask_logits, image_hw), device)
    row["weights_ours"] = asdict(ours_w)
    if not args.skip_official_weights:
        A_official, off_w = measure(lambda: official_style_weights(mask_logits, image_hw), device)
        row["weights_official"] = asdict(off_w)
        row["weights_speedup"] = off_w.seconds / ours_w.seconds
        row["weights_max_abs_diff"] = float(np.abs(A.cpu().numpy() - A_official).max())
    A_approx, approx_w = measure(lambda: qubo_weights(mask_logits, image_hw, mode="mask_res"), device)
    row["weights_mask_res"] = asdict(approx_w)
    row["weights_mask_res_rel_error"] = float((A_approx - A).abs().max() / A.abs().max())

    A_cpu = A.cpu()
    solution, ours_s = measure(lambda: solve_qubo(A_cpu, config=config, seed=args.seed), torch.device("cpu"))
    row["solver_ours"] = asdict(ours_s) | {"energy": solution.energy, "selected": int(solution.selected.sum())}
    if not args.skip_official_solver:
        # The official solver gets the float32 matrix, as the official weight_from_masks returns it.
        (x_off, _), off_s = measure(
            lambda: _anneal_official(A_cpu.float().numpy(), seed=args.seed), torch.device("cpu")
        )
        energy_off = float(qubo_energy(torch.from_numpy(x_off), A_cpu, config.lambda_reg))
        row["solver_official"] = asdict(off_s) | {"energy": energy_off, "selected": int(x_off.sum())}
        row["solver_speedup"] = off_s.seconds / ours_s.seconds
    approx_solution = solve_qubo(A_approx.cpu(), config=config, seed=args.seed)
    row["mask_res_solution_energy_on_exact"] = float(qubo_energy(approx_solution.selected, A_cpu, config.lambda_reg))

    _, e2e = measure(lambda: merge_qubo(class_logits, mask_logits, image_hw, config=config, seed=args.seed), device)
    row["end_to_end_ours"] = asdict(e2e) | {"seconds_per_view": e2e.seconds / num_views}
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of the measurements."""
    lines = [
        f"{'views':>5} {'stage':<22} {'official s':>11} {'ours s':>9} {'speedup':>8} "
        f"{'official MB':>12} {'ours MB':>9} {'energy official':>16} {'energy ours':>14}"
    ]

    def fmt(value: Any, spec: str) -> str:
        return format(value, spec) if value is not None else "-"

    for r in rows:
        off_w, our_w = r.get("weights_official"), r["weights_ours"]
        lines.append(
            f"{r['views']:>5} {'weights (exact)':<22} {fmt(off_w and off_w['seconds'], '11.2f'):>11} "
            f"{our_w['seconds']:>9.2f} {fmt(r.get('weights_speedup'), '7.1f'):>7}x "
            f"{fmt(off_w and off_w['peak_mb'], '12.0f'):>12} {our_w['peak_mb']:>9.0f}"
        )
        off_s, our_s = r.get("solver_official"), r["solver_ours"]
        lines.append(
            f"{r['views']:>5} {'solver':<22} {fmt(off_s and off_s['seconds'], '11.2f'):>11} {our_s['seconds']:>9.3f} "
            f"{fmt(r.get('solver_speedup'), '7.1f'):>7}x {fmt(off_s and off_s['peak_mb'], '12.0f'):>12} "
            f"{our_s['peak_mb']:>9.0f} {fmt(off_s and off_s['energy'], '16.6f'):>16} {our_s['energy']:>14.6f}"
        )
        approx = r["weights_mask_res"]
        lines.append(
            f"{r['views']:>5} {'weights (mask res)':<22} {'':>11} {approx['seconds']:>9.2f} {'':>8} {'':>12} "
            f"{approx['peak_mb']:>9.0f} {'':>16} {r['mask_res_solution_energy_on_exact']:>14.6f}"
            f"   max |dA|/max|A| = {r['weights_mask_res_rel_error']:.2e}"
        )
        e2e = r["end_to_end_ours"]
        lines.append(
            f"{r['views']:>5} {'merge_qubo end to end':<22} {'':>11} {e2e['seconds']:>9.2f} {'':>8} {'':>12} "
            f"{e2e['peak_mb']:>9.0f}   ({e2e['seconds_per_view']:.3f} s/view)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, nargs="+", default=[8, 32], help="numbers of views to measure")
    parser.add_argument("--queries", type=int, default=200, help="queries Q")
    parser.add_argument("--mask-hw", type=int, nargs=2, default=[192, 256], help="mask resolution H W (image 2x)")
    parser.add_argument("--device", default="cpu", help="torch device of the masks (the solvers run on CPU)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic scene and solver seed")
    parser.add_argument("--skip-official-weights", action="store_true", help="skip the slow official weight loop")
    parser.add_argument("--skip-official-solver", action="store_true", help="skip the official annealing")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    rows = []
    for num_views in args.views:
        logger.info("measuring %d views ...", num_views)
        rows.append(run_views(num_views, args, device))
        logger.info("%s", json.dumps(rows[-1]))
    e2e = {r["views"]: r["end_to_end_ours"]["seconds_per_view"] for r in rows}
    print(f"machine: {machine}")
    print(format_table(rows))
    print("end-to-end seconds per view (linear in views when constant): "
          + ", ".join(f"{v} views: {s:.3f}" for v, s in e2e.items()))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
