"""`panst3r-splat view` in a real browser: headless Chromium loads the viewer of a tiny fitted scene and the
screenshot must show the scene (RGB mode: the scene's colours; panoptic mode: the label palette's colours).

Chromium missing: skipped locally, a failure when CI=true (the CI image installs it). Also the one-line errors of
the command (not a scene, port in use), which need no browser.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import PIL.Image
import pytest
import torch

from panst3r_splat.pipeline.commands import view
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.splat.gaussians import Cameras, GaussianScene, rgb_to_sh_dc
from panst3r_splat.splat.scene_io import FittedScene, make_segment, save_scene

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1024, 768)
SCENE_REGION = (slice(160, 740), slice(60, 610))
"""Rows, columns of the screenshot left of viser's control panel (which has colours of its own) and below the
frustum of the camera opposite the start view (whose thumbnail is an RGB render in every mode)."""
FLOOR, CHAIR, SOFA = 1, 5, 9
RGB_OF = {CHAIR: (220, 40, 40), SOFA: (40, 70, 220), FLOOR: (230, 200, 60)}
"""Colours of the three objects of the tiny scene, far from every label colour of theirs."""


def _look_at(position: tuple[float, float, float]) -> np.ndarray:
    """Camera-to-world of a camera at `position` looking at the origin, OpenCV axes, world y pointing down."""
    pos = np.asarray(position, float)
    z = -pos / np.linalg.norm(pos)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, np.cross(z, x), z, pos
    return T


def make_tiny_scene(folder: Path) -> FittedScene:
    """Two opaque blobs (a red chair, a blue sofa) on a yellow floor, 384 Gaussians, four cameras around."""
    rng = np.random.default_rng(0)
    means, colors, segs, scales = [], [], [], []
    for center, seg in (((-0.5, 0.0, 0.0), CHAIR), ((0.5, 0.0, 0.0), SOFA)):
        means.append(rng.normal(center, 0.13, (120, 3)))
        scales.append(np.full((120, 3), 0.05))
        colors += [RGB_OF[seg]] * 120
        segs += [seg] * 120
    grid = np.stack(np.meshgrid(np.linspace(-1.2, 1.2, 12), np.linspace(-1.2, 1.2, 12)), -1).reshape(-1, 2)
    means.append(np.stack([grid[:, 0], np.full(len(grid), 0.35), grid[:, 1]], axis=1))
    scales.append(np.tile([0.09, 0.01, 0.09], (len(grid), 1)))
    colors += [RGB_OF[FLOOR]] * len(grid)
    segs += [FLOOR] * len(grid)
    n = len(segs)
    gaussians = GaussianScene(
        means=torch.tensor(np.concatenate(means), dtype=torch.float32),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        log_scales=torch.tensor(np.log(np.concatenate(scales)), dtype=torch.float32),
        opacity_logits=torch.full((n,), 4.0), sh=rgb_to_sh_dc(torch.tensor(colors) / 255.0)[:, None],
        reg_colors=torch.full((n, 3), 0.5), segment_ids=torch.tensor(segs), label_conf=torch.ones(n))
    angles = np.linspace(0.0, 2.0 * np.pi, 5)[:-1]
    T = np.stack([_look_at((3.0 * np.sin(a), -1.2, -3.0 * np.cos(a))) for a in angles])
    K = torch.tensor([[150.0, 0.0, 79.5], [0.0, 150.0, 59.5], [0.0, 0.0, 1.0]]).repeat(len(T), 1, 1)
    cameras = Cameras(K=K, T_world_cam=torch.tensor(T, dtype=torch.float32), width=160, height=120,
                      names=tuple(f"view{i}" for i in range(len(T))))
    segments = (make_segment(FLOOR, 1, 2, "floor", False), make_segment(CHAIR, 4, 5, "chair", True, 0.9),
                make_segment(SOFA, 5, 6, "sofa", True, 0.8))
    scene = FittedScene(gaussians=gaussians, cameras=cameras, segments=segments)
    save_scene(folder, scene)
    return scene


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing on CI: install the Debian `chromium` package")
        pytest.skip(f"{CHROMIUM} not installed (apt install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FittedScene]:
    folder = tmp_path_factory.mktemp("viewer") / "scene"
    return folder, make_tiny_scene(folder)


@contextmanager
def running_viewer(scene: Path, mode: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`panst3r-splat view` in a subprocess, yielded once it prints its URL; stopped with Ctrl-C (SIGINT)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "panst3r_splat.pipeline", "view", str(scene), "--port", str(port), "--mode", mode,
         "--device", "cpu", "--preview-size", "128", "--still-size", "320"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60.0
        line = ""
        while "serving" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the viewer did not start (exit code {proc.poll()})")
        url = line.split(" at ")[1].split()[0]
        assert url == f"http://127.0.0.1:{port}"
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def screenshot(chromium: Path, url: str, out: Path, budget_ms: int) -> np.ndarray:
    profile = out.parent / f"{out.stem}-profile"
    subprocess.run(
        [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
         f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", url],
        capture_output=True, timeout=120, check=False)
    shutil.rmtree(profile, ignore_errors=True)
    assert out.is_file(), "chromium wrote no screenshot"
    return np.asarray(PIL.Image.open(out).convert("RGB"))


def share_near(image: np.ndarray, color: tuple[int, int, int], tol: int = 32) -> float:
    """Share of the scene region's pixels within `tol` of `color` in every channel (JPEG transport shifts a few)."""
    region = image[SCENE_REGION].astype(np.int64)
    return float((np.abs(region - np.array(color)).max(axis=-1) <= tol).mean())


def shot_until(chromium: Path, url: str, out: Path, ok) -> np.ndarray:
    """A screenshot after a short virtual-time budget, retried once with a long one (a loaded CPU renders late)."""
    image = screenshot(chromium, url, out, 8000)
    return image if ok(image) else screenshot(chromium, url, out, 25000)


@pytest.mark.browser
def test_rgb_mode_shows_the_scene_and_ctrl_c_stops(chromium: Path, tiny_scene, tmp_path: Path) -> None:
    folder, _ = tiny_scene
    with running_viewer(folder, "rgb") as (url, proc):
        image = shot_until(chromium, url, tmp_path / "rgb.png",
                           lambda im: all(share_near(im, c) > 0.005 for c in RGB_OF.values()))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert image.reshape(-1, 3).std(axis=0).max() > 20.0, "blank page"
    for seg, color in RGB_OF.items():
        assert share_near(image, color) > 0.005, f"segment {seg}'s colour {color} is not on screen"
    assert proc.returncode == 0
    assert "stopped" in out


@pytest.mark.browser
def test_label_mode_shows_the_palette(chromium: Path, tiny_scene, tmp_path: Path) -> None:
    folder, scene = tiny_scene
    palette = {s.id: s.color for s in scene.segments}
    with running_viewer(folder, "panoptic") as (url, _):
        image = shot_until(chromium, url, tmp_path / "panoptic.png",
                           lambda im: all(share_near(im, c) > 0.005 for c in palette.values()))
    for seg, color in palette.items():
        assert share_near(image, color) > 0.005, f"segment {seg}'s label colour {color} is not on screen"
    # Labels replace the RGB colours entirely at the default blend of 1.
    assert share_near(image, RGB_OF[CHAIR]) < 0.001 and share_near(image, RGB_OF[SOFA]) < 0.001


def test_view_refuses_a_folder_that_is_neither(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="neither a fitted scene"):
        view(tmp_path, device="cpu")
    with pytest.raises(UserError, match="not a folder"):
        view(tmp_path / "missing", device="cpu")
    (tmp_path / "config.yml").write_text("method: x\n")
    with pytest.raises(UserError, match="ns-train output"):
        view(tmp_path, device="cpu")


def test_view_refuses_a_port_in_use(tiny_scene) -> None:
    folder, _ = tiny_scene
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} .* in use"):
            view(folder, port=port, device="cpu")


def test_cli_prints_one_line_for_a_bad_folder(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "panst3r_splat.pipeline", "view", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "neither a fitted scene" in result.stderr
