"""Training throughput of `train-model` on this machine: samples per second, as the real loop runs.

    python benchmarks/training.py [--steps 40] [--json FILE]

Rows (each a real `train_model` call in a temporary folder: data worker, criterion, optimiser, logs; held-out
evaluation and periodic checkpoints off). A *sample* is one multi-view training example of the preset:
- `pairs`, torch's default thread count: the first model's recipe as it ran (2 views at 128x96, `builtin_small`);
- `pairs`, one torch thread: the same samples with the training process pinned to one thread, beside its data worker
  (the ratio of these two rows is the speed-up of the pinning, same model, same samples);
- `v2`: the second model's recipe (4 views, 3 of 4 batches at 128x96, the rest at 192x144, `builtin_v2`), which
  costs more per sample (twice the views, the v2 mask path, descriptors).
Seconds per step are measured between the log rows after the first `--warmup` steps (start-up, first scene renders
and the v2 scene bank's first rooms excluded). Other work on the machine inflates every row alike only if it is
steady: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from panst3r_splat.configs.training import get_preset
from panst3r_splat.pipeline.training.loop import train_model

ROWS = (
    ("pairs", None, "first model's recipe, torch default threads"),
    ("pairs", 1, "first model's recipe, one torch thread"),
    ("v2", 1, "second model's recipe, one torch thread"),
)


def measure(preset_name: str, threads: int | None, steps: int, warmup: int) -> dict:
    """Seconds per step after `warmup` steps, and samples per second, of one short real run."""
    preset = dataclasses.replace(get_preset(preset_name), threads=threads, log_every=warmup, eval_every=10**9,
                                 checkpoint_every=10**9, checkpoint_minutes=None, grad_share_every=0)
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.safetensors"
        started = time.perf_counter()
        train_model(preset, out, resume=False, device=torch.device("cpu"), max_steps=steps)
        total = time.perf_counter() - started
        with out.with_suffix(".log.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
    torch.set_num_threads(default_threads)
    first, last = rows[0], rows[-1]
    timed_steps = int(last["step"]) - int(first["step"])
    seconds = (float(last["minutes"]) - float(first["minutes"])) * 60 / timed_steps
    return {"preset": preset_name, "threads": threads or default_threads, "batch": preset.batch_size,
            "views": preset.data.views, "seconds_per_step": seconds,
            "samples_per_second": preset.batch_size / seconds, "timed_steps": timed_steps,
            "run_seconds": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="steps per row (the first --warmup not timed)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps at the start of each row")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    results = []
    for preset, threads, what in ROWS:
        row = measure(preset, threads, args.steps, args.warmup)
        row["what"] = what
        results.append(row)
    base = results[0]["samples_per_second"]
    print(f"{os.cpu_count()} cores, torch {torch.__version__}, 1-minute load average {os.getloadavg()[0]:.2f}")
    print(f"{'recipe':<48} {'threads':>7} {'s/step':>8} {'samples/s':>10} {'vs first':>9}")
    for r in results:
        print(f"{r['what']:<48} {r['threads']:>7} {r['seconds_per_step']:>8.3f} {r['samples_per_second']:>10.2f} "
              f"{r['samples_per_second'] / base:>8.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"load_average_end": os.getloadavg()[0], "rows": results}, indent=2))


if __name__ == "__main__":
    main()
