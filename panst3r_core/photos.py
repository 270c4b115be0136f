"""Where a predictions folder's input photos are (``PRED/photos.json``), so a later stage can use them at their own
resolution (``fit --fit-size``) instead of the model's.

One record per view, in input order: the image file (or the video and its frame index), its size in pixels and its
size in bytes when read. :func:`check_photos` tells a photo that moved or changed since ``predict`` (a one-line error
that says what to do), and :func:`read_photo` loads one at full resolution. Folders written before the file existed
have no record (:func:`read_photos` returns None).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from jaxtyping import UInt8

from panst3r_splat.core.images import VIDEO_EXTENSIONS, list_inputs, read_image

log = logging.getLogger(__name__)

PHOTOS_FILE = "photos.json"
PHOTOS_FORMAT = 1


@dataclass(frozen=True)
class PhotoRecord:
    """One input view's photo as ``predict`` read it."""

    name: str
    """The view's name in ``predictions.npz`` (``image_names``)."""
    path: str
    """Absolute path of the image file, or of the video the frame comes from."""
    height: int
    width: int
    """Size of the photo (the frame) in pixels, EXIF orientation applied."""
    bytes: int
    """Size of the file when ``predict`` read it (a changed photo is refused)."""
    frame: Optional[int] = None
    """Frame index in the video; None for an image file."""


def photo_records(source: Path | Sequence[Path], names: Sequence[str],
                  orig_hw: np.ndarray) -> tuple[PhotoRecord, ...]:
    """The records of the views ``load_images(source)`` returned (``names`` and ``orig_hw`` in its order)."""
    paths = list_inputs(source)
    video = len(paths) == 1 and paths[0].suffix.lower() in VIDEO_EXTENSIONS
    if not video and len(paths) != len(names):
        raise ValueError(f"{len(paths)} input files for {len(names)} views")
    records = []
    for i, name in enumerate(names):
        path = paths[0] if video else paths[i]
        frame = _frame_index(name) if video else None
        records.append(PhotoRecord(name=str(name), path=str(path.resolve()), height=int(orig_hw[i][0]),
                                   width=int(orig_hw[i][1]), bytes=path.stat().st_size, frame=frame))
    return tuple(records)


def _frame_index(name: str) -> int:
    """The index in ``<stem>_frame<index>``, the names ``read_video_frames`` gives."""
    head, sep, index = name.rpartition("_frame")
    if not sep or not index.isdigit():
        raise ValueError(f"video frame name {name!r} does not end in _frame<index>")
    return int(index)


def write_photos(folder: Path, records: Sequence[PhotoRecord]) -> None:
    """``folder/photos.json``."""
    payload = {"format": PHOTOS_FORMAT, "views": [asdict(r) for r in records]}
    (Path(folder) / PHOTOS_FILE).write_text(json.dumps(payload, indent=1) + "\n")


def read_photos(folder: Path) -> Optional[tuple[PhotoRecord, ...]]:
    """The records of ``folder/photos.json``; None when the folder has none (written before it existed)."""
    path = Path(folder) / PHOTOS_FILE
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        if payload.get("format") != PHOTOS_FORMAT:
            raise ValueError(f"format {payload.get('format')!r}, expected {PHOTOS_FORMAT}")
        return tuple(PhotoRecord(**view) for view in payload["views"])
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path} is not a valid photos record ({err}); re-run `panst3r-splat predict`") from None


def check_photos(records: Sequence[PhotoRecord]) -> None:
    """Raise ``ValueError`` naming the first photo that is missing or changed since ``predict`` read it."""
    for record in records:
        path = Path(record.path)
        if not path.is_file():
            raise ValueError(f"photo {record.path} (view {record.name}) is no longer there: move it back, or fit at the "
                             "model's resolution with --fit-size 0")
        if path.stat().st_size != record.bytes:
            raise ValueError(f"photo {record.path} changed since predict ({path.stat().st_size} bytes, "
                             f"{record.bytes} then): re-run `panst3r-splat predict`, or use --fit-size 0")


def read_photo(record: PhotoRecord) -> UInt8[np.ndarray, "H W 3"]:
    """The photo of one record at full resolution (its size is checked against the record)."""
    if record.frame is None:
        rgb = read_image(Path(record.path))
    else:
        import imageio.v2 as iio  # only video input needs the ffmpeg plugin

        reader = iio.get_reader(record.path, format="FFMPEG")
        try:
            rgb = np.array(np.asarray(reader.get_data(record.frame))[..., :3], dtype=np.uint8)
        finally:
            reader.close()
    if rgb.shape[:2] != (record.height, record.width):
        raise ValueError(f"photo {record.path} is {rgb.shape[1]}x{rgb.shape[0]} but was "
                         f"{record.width}x{record.height} at predict: re-run `panst3r-splat predict`")
    return rgb


__all__ = ["PHOTOS_FILE", "PhotoRecord", "check_photos", "photo_records", "read_photo", "read_photos",
           "write_photos"]
