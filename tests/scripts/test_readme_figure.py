"""`scripts/readme_figure.py` on a tiny real demo run: every tile is the demo's own image (pixel for pixel before the
palette is applied), the sections follow the demo's folders, the PNG is written; a folder that is not a finished
demo is refused with a one-line message."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from _script_modules import load_script
import torch
from PIL import Image

from panst3r_splat.pipeline.frontends.cli import main as cli_main

TINY = ["--views", "3", "--test-views", "1", "--size", "64", "--fit-steps", "2", "--budget", "200",
        "--orbit-frames", "3", "--device", "cpu", "--threads", "1"]


figure_script = load_script("scripts/readme_figure.py", "scripts_readme_figure")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("figure") / "demo"
    before = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(["demo", "--out", str(out), "--oracle", *TINY])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return out


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_tiles_are_the_demos_images(demo: Path) -> None:
    figure = figure_script.build_figure(demo, inputs=2, held_out=1, orbit=1)
    headers = [s.header for s in figure.sections]
    assert headers[0].startswith("Input views (2 of 3") and "merged panoptic" in headers[1]
    assert "Held-out views" in headers[2] and "pose-free" in headers[2] and "scene's own cameras" in headers[3]
    assert "ground truth" in headers[4] and headers[5].startswith("Orbit")
    assert [len(s.tiles) for s in figure.sections] == [2, 2, 4, 4, 4, 2]
    assert 1 in figure.classes and 0 not in figure.classes  # wall is predicted; void has no legend entry
    held_out = json.loads((demo / "data" / "splits.json").read_text())["test"][0]
    # The pose-free row shows the held-out view, or an input view where the held-out cameras could not be placed
    # in the scene fitted under the model's cameras (the header says so).
    shown = json.loads((demo / "renders" / "test" / "render.json").read_text())["views"][0]
    assert (shown == held_out) != ("could not be placed" in headers[2])
    photo, rendered, panoptic, _ = figure.sections[2].tiles
    assert photo.title == f"photo {shown}"
    np.testing.assert_array_equal(photo.image, _rgb(demo / "data" / "color" / f"{shown}.png"))
    np.testing.assert_array_equal(rendered.image, _rgb(demo / "renders" / "test" / "rgb" / f"{shown}.png"))
    np.testing.assert_array_equal(panoptic.image, _rgb(demo / "renders" / "test" / "panoptic" / f"{shown}.png"))
    posed = figure.sections[3].tiles[2].image
    np.testing.assert_array_equal(posed, _rgb(demo / "posed" / "renders" / "panoptic" / f"{held_out}.png"))
    oracle = figure.sections[4].tiles[2].image
    np.testing.assert_array_equal(oracle, _rgb(demo / "oracle" / "renders" / "panoptic" / f"{held_out}.png"))
    # The composed canvas holds the first input photo unchanged, under one header line and its title band.
    canvas = np.asarray(figure_script.compose(figure, tile_width=64))
    first = _rgb(demo / "data" / "color" / "0000.png")
    top, left = figure_script.MARGIN_PX + figure_script.HEADER_PX + figure_script.TITLE_PX, figure_script.MARGIN_PX
    np.testing.assert_array_equal(canvas[top:top + first.shape[0], left:left + first.shape[1]], first)
    footer = " ".join(figure.footer)
    assert "PQ^scene" in footer and "held-out views" in footer and "oracle" in footer and "scene's poses" in footer


def test_command_writes_the_png(demo: Path, tmp_path: Path) -> None:
    target = tmp_path / "docs" / "teaser.png"
    with contextlib.redirect_stdout(io.StringIO()):
        assert figure_script.main([str(demo), "--out", str(target), "--orbit", "2", "--tile-width", "64"]) == 0
    with Image.open(target) as image:
        assert image.format == "PNG" and image.mode == "P"
        assert image.width == 2 * figure_script.MARGIN_PX + 4 * 64 + 3 * figure_script.GAP_PX  # tiles of 64 px
    assert target.stat().st_size < 400 * 1024


def test_not_a_demo_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert figure_script.main([str(tmp_path / "missing")]) == 2
    assert "run `panst3r-splat demo --out" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    assert figure_script.main([str(tmp_path / "half"), "--out", str(tmp_path / "x.png")]) == 2
    assert "summary.json is missing" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
