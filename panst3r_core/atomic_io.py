"""Writing outputs atomically: a file or folder is built under a temporary name, then renamed into place, so a
reader never sees half of it and an interruption leaves the previous one intact."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def swap_into_place(tmp: Path, folder: Path, tag: str) -> None:
    """Rename `tmp` to `folder`, keeping the old folder until the new one is in place (restored on failure).

    Args:
        tmp: the finished folder, written under a temporary name next to `folder`.
        folder: where it goes; an existing folder there is replaced.
        tag: a unique suffix for the old folder's temporary name.
    """
    if not folder.exists():
        tmp.rename(folder)
        return
    old = folder.parent / f".{folder.name}.old-{tag}"
    folder.rename(old)
    try:
        tmp.rename(folder)
    except BaseException:
        old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
