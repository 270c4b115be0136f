"""Curves of a `train-model` run from its CSV logs: losses, gradient norms per term, held-out metrics.

    .venv/bin/python scripts/plot_training.py docs/training/builtin_v2/model.safetensors [--out curves.png]

Reads `<run>.log.csv` and `<run>.eval.csv` beside the model path and writes one PNG (default `<run>.curves.png`)
with three panels: the loss terms (log scale), each term's gradient norm on the MUSt3R trunk with the clip share, and
the held-out metrics (descriptor matching accuracy, local depth error, semantic mIoU).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

LOSS_PREFIXES = ("loss_", "descriptor_nce")
EVAL_KEYS = ("desc_match_acc_2px", "local_depth_rel_err", "semantic_miou")


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a log as floats (blank cells dropped); a missing file gives no rows."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows that have `key` with a finite value."""
    pairs = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(r[key])]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot(run: Path, out: Path) -> Path:
    """Draw the three panels of `run`'s logs into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log, held_out = read_csv(run.with_suffix(".log.csv")), read_csv(run.with_suffix(".eval.csv"))
    if not log:
        raise SystemExit(f"no training log at {run.with_suffix('.log.csv')}: give the model path of a train-model run")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    keys = sorted({k for r in log for k in r if k.startswith(LOSS_PREFIXES)})
    for key in keys:
        axes[0].plot(*series(log, key), label=key)
    axes[0].set_yscale("log")
    axes[0].set_title("losses (mean over each log window)")
    for key in sorted({k for r in log for k in r if k.startswith("gnorm/")}):
        axes[1].plot(*series(log, key), label=key.removeprefix("gnorm/"))
    axes[1].plot(*series(log, "grad_norm"), label="total (all parameters)", color="k", linewidth=1)
    axes[1].set_yscale("log")
    axes[1].set_title("gradient norm per term on the MUSt3R trunk")
    if any("clipped" in r for r in log):
        twin = axes[1].twinx()
        twin.plot(*series(log, "clipped"), color="grey", linestyle=":", label="clip share")
        twin.set_ylim(0, 1)
        twin.set_ylabel("share of steps clipped")
    for key in EVAL_KEYS:
        axes[2].plot(*series(held_out, key), marker="o", label=key)
    axes[2].set_title("held-out scenes")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(str(run.parent.name))
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="model path of the run (its .log.csv and .eval.csv sit beside it)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: <run>.curves.png)")
    args = parser.parse_args()
    print(plot(args.run, args.out or args.run.with_suffix(".curves.png")))


if __name__ == "__main__":
    main()
