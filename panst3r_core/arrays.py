"""Arrays at the boundary of the file formats: values (NumPy arrays or tensors) coerced to the declared dtype and
rank, refusing lossy kind changes, with errors that name the key."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_numpy(value: Any) -> np.ndarray:
    """A tensor (detached, on the CPU) or anything array-like as a NumPy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def coerce_array(name: str, value: Any, dtype: np.dtype | type, ndim: int) -> np.ndarray:
    """``value`` as an array of ``dtype`` with ``ndim`` dimensions, refusing lossy kind changes (int -> bool, ...)."""
    arr = as_numpy(value)
    dtype = np.dtype(dtype)
    if dtype.kind == "U":
        if arr.dtype.kind == "O" and all(isinstance(x, str) for x in arr.ravel()):
            arr = arr.astype(str)
        if arr.dtype.kind != "U":
            raise ValueError(f"{name} must be an array of strings, got dtype {arr.dtype}")
    elif dtype.kind == "b":
        if arr.dtype.kind != "b":
            raise ValueError(f"{name} must be a bool array, got dtype {arr.dtype}")
    elif dtype.kind in "iu":
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ValueError(f"{name} has values outside the {dtype} range")
        arr = arr.astype(dtype)
    elif dtype.kind == "f":
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be a float array, got dtype {arr.dtype}")
        arr = arr.astype(dtype)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


__all__ = ["as_numpy", "coerce_array"]
