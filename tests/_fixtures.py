"""Paths of the data files the tests ship with (a fresh clone runs every test; a missing file fails, never skips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PARITY_FIXTURE = Path(__file__).resolve().parent / "data" / "official_tiny_v1"
"""A tiny random-weight PanSt3R in the official checkpoint format with the official code's outputs (its README)."""


def write_grey_video(path: Path, frames: int = 10, height: int = 48, width: int = 64) -> Path:
    """An H.264 video whose frame i is uniformly grey at level 20 i + 10 (decoders keep it within a few levels)."""
    import imageio.v2 as iio

    with iio.get_writer(path, format="FFMPEG", fps=10, codec="libx264", quality=9, macro_block_size=16) as writer:
        for i in range(frames):
            writer.append_data(np.full((height, width, 3), 20 * i + 10, dtype=np.uint8))
    return path
