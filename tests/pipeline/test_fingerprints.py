"""The one fingerprint helper: what changes a digest and what does not."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from panst3r_splat.pipeline.fingerprints import digest, file_listing


def test_digest_reads_settings_arrays_and_tensors() -> None:
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})  # key order does not matter
    assert digest({"a": (1, 2)}) == digest({"a": [1, 2]}) and len(digest("x")) == 16
    assert digest({"p": Path("/tmp")}) == digest({"p": "/tmp"})
    a = np.arange(6, dtype=np.float32)
    assert digest(a) == digest(torch.from_numpy(a)) != digest(a + 1)
    assert digest(a, [1]) != digest([1], a) and len(digest(a, length=None)) == 64


def test_file_listing_tells_a_changed_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(b"1")
    (tmp_path / "sub" / "b.png").write_bytes(b"22")
    listing = file_listing(tmp_path)
    assert [row[:2] for row in listing] == [["a.png", 1], ["sub/b.png", 2]]
    assert [row[0] for row in file_listing(tmp_path, recursive=False)] == ["a.png"]
    assert file_listing(tmp_path / "a.png")[0][0] == "a.png"
    assert file_listing(tmp_path, relative_to=tmp_path.parent)[0][0] == f"{tmp_path.name}/a.png"
    before = digest(listing)
    stat = (tmp_path / "a.png").stat()
    os.utime(tmp_path / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert digest(file_listing(tmp_path)) != before
