"""The `--device auto|cpu|cuda` option, and the CPU thread pools of a worker process."""

from __future__ import annotations

import torch

from panst3r_splat.pipeline.errors import UserError


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when available, else CPU; `cuda` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def pin_threads(num_cpus: int) -> None:
    """Keep torch's pool and the BLAS / OpenMP pools of this process to `num_cpus` threads (a data-loader or Ray
    worker: one thread per core per process, or busy processes on few cores slow each other down many times)."""
    torch.set_num_threads(max(1, num_cpus))
    from threadpoolctl import threadpool_limits

    threadpool_limits(max(1, num_cpus))
