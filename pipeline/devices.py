"""The `--device auto|cpu|cuda` option."""

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
