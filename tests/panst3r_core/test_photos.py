"""The photos' record of a predictions folder: image files and video frames, read back at full resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from _fixtures import write_grey_video

from panst3r_splat.core import images as im
from panst3r_splat.core.photos import check_photos, photo_records, read_photo, read_photos, write_photos


def test_image_records_round_trip_and_read_the_full_photo(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    PIL.Image.fromarray(rgb).save(tmp_path / "a.png")
    PIL.Image.fromarray(rgb[::-1]).save(tmp_path / "b.png")
    loaded = im.load_images(tmp_path, size=64)
    records = photo_records(tmp_path, loaded.names, loaded.orig_hw)
    assert [(r.name, r.height, r.width, r.frame) for r in records] == [("a.png", 60, 80, None), ("b.png", 60, 80, None)]
    write_photos(tmp_path, records)
    assert read_photos(tmp_path) == records
    check_photos(records)
    np.testing.assert_array_equal(read_photo(records[1]), rgb[::-1])
    assert read_photos(tmp_path / "elsewhere") is None


def test_video_records_name_their_frames(tmp_path: Path) -> None:
    path = write_grey_video(tmp_path / "clip.mp4")
    loaded = im.load_images(path, size=64, max_video_frames=4)
    records = photo_records(path, loaded.names, loaded.orig_hw)
    assert [r.frame for r in records] == [0, 3, 6, 9] and {r.path for r in records} == {str(path.resolve())}
    assert abs(float(read_photo(records[2]).mean()) - 130) < 8  # frame 6 at full resolution


def test_a_photo_of_another_size_is_refused(tmp_path: Path) -> None:
    PIL.Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "a.png")
    (record,) = photo_records([tmp_path / "a.png"], ["a.png"], np.array([[60, 80]]))
    PIL.Image.fromarray(np.zeros((80, 60, 3), np.uint8)).save(tmp_path / "a.png")  # same bytes, rotated
    with pytest.raises(ValueError, match="60x80 but was 80x60"):
        read_photo(record)
