"""Writing output folders atomically: build under a temporary name, then swap into place."""

from __future__ import annotations

import shutil
from pathlib import Path


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
