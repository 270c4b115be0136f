"""One fingerprint helper for every resumable stage: what identifies a stage's inputs and settings.

A stage that can be skipped or resumed (the demo's stage cache, `batch`'s per-scene results, `fit`'s training
checkpoint, the nerfstudio dataparser's predictions cache, the training scene bank) keys its saved work by
``digest(...)`` of what shaped it: settings as JSON, arrays and tensors by their bytes, and files by
``file_listing`` (names, sizes and modification times, so a changed photo redoes the work without reading it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np


def digest(*parts: Any, length: Optional[int] = 16) -> str:
    """SHA-256 of ``parts`` in order, as hex (its first ``length`` digits; None: all of them): NumPy arrays and
    tensors by their bytes, anything else as JSON with sorted keys (tuples as lists, other objects by ``str``)."""
    h = hashlib.sha256()
    for part in parts:
        if hasattr(part, "detach") and hasattr(part, "numpy"):  # a torch tensor (torch is not imported here)
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:length] if length is not None else h.hexdigest()


def file_listing(path: Path, *, recursive: bool = True, relative_to: Optional[Path] = None) -> list[list[Any]]:
    """``[name, size, mtime_ns]`` of ``path`` itself when it is a file, else of the files below it (sorted; only
    its direct files unless ``recursive``); names relative to ``relative_to`` (default: ``path``; a file: its
    folder)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(
        p for p in (path.rglob("*") if recursive else path.iterdir()) if p.is_file())
    base = Path(relative_to) if relative_to is not None else (path.parent if path.is_file() else path)
    return [[str(p.relative_to(base)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


__all__ = ["digest", "file_listing"]
