"""`panst3r-splat view` in a real browser: headless Chromium loads the viewer of a tiny fitted scene and the
screenshot must show the scene (RGB mode: the scene's colours; panoptic mode: the label palette's colours).

Chromium missing: skipped locally, a failure when CI=true (the CI image installs it). Also, without a browser: the
one-line errors of the command (not a scene, port in use) and the viser adapter driven in process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import PIL.Image
import pytest
import torch

from _script_modules import load_script

from panst3r_splat.core.predictions import read_points_ply, save_predictions
from panst3r_splat.core.transforms import rotation_to_quaternion
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.frontends.commands import ViewArgs, view
from panst3r_splat.pipeline.frontends.viewer import edits
from panst3r_splat.pipeline.frontends.viewer.app import ViewerApp, ViewerOptions, _BrowserCamera
from panst3r_splat.pipeline.frontends.viewer.render import input_camera_fov, scaled_input_camera
from panst3r_splat.pipeline.frontends.viewer.sample import CHAIR, SAMPLE_RGB, SOFA, sample_predictions, sample_scene
from panst3r_splat.pipeline.frontends.viewer.sources import PredictionsSource, open_source
from panst3r_splat.pipeline.frontends.viewer.state import RenderMode, ViewState
from panst3r_splat.splat.scene_io import FittedScene, save_scene

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1024, 768)
SCENE_REGION = (slice(160, 740), slice(60, 610))
"""Rows, columns of the screenshot left of viser's control panel (which has colours of its own) and below the
frustum of the camera opposite the start view (whose thumbnail is an RGB render in every mode)."""
RGB_OF = SAMPLE_RGB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_page():
    """The DevTools-protocol page driver (a script of benchmarks/, shared with the viewer benchmark)."""
    return sys.modules.get("chromium_page") or load_script("benchmarks/chromium_page.py", "chromium_page")


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
    scene = sample_scene()
    save_scene(folder, scene)
    return folder, scene


@contextmanager
def running_viewer(scene: Path, mode: str, *, sigint_ignored: bool = False) -> Iterator[tuple[str, subprocess.Popen]]:
    """`panst3r-splat view` in a subprocess, yielded once it prints its URL; stopped with Ctrl-C (SIGINT).

    `sigint_ignored`: started as a script's background job starts it, with SIGINT ignored (`trap "" INT`, kept
    across `exec`); Python then installs no KeyboardInterrupt handler of its own."""
    port = _free_port()
    command = [sys.executable, "-m", "panst3r_splat.pipeline", "view", str(scene), "--port", str(port), "--mode",
               mode, "--device", "cpu", "--preview-size", "128", "--still-size", "320"]
    if sigint_ignored:
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60.0
        line = ""
        while "serving" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the viewer did not start (exit code {proc.poll()})")
        url = line.split(" at ")[1].split()[0]
        assert url == f"http://127.0.0.1:{port}"
        assert _listening_addresses(port) == {"127.0.0.1"}, "the viewer must bind to the loopback interface only"
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _listening_addresses(port: int) -> set[str]:
    """IPv4 / IPv6 addresses with a socket listening on `port` (Linux: /proc/net/tcp*)."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.is_file():
            continue
        for row in table.read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if len(raw) == 4:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    if not Path("/proc/net/tcp").is_file():
        pytest.skip("no /proc/net/tcp to read the listening sockets from")
    return found


def share_near(image: np.ndarray, color: tuple[int, int, int], tol: int = 32) -> float:
    """Share of the scene region's pixels within `tol` of `color` in every channel (JPEG transport shifts a few)."""
    region = image[SCENE_REGION].astype(np.int64)
    return float((np.abs(region - np.array(color)).max(axis=-1) <= tol).mean())


def shot_until(chromium: Path, url: str, out: Path, ok) -> np.ndarray:
    """A screenshot of a live page (CDP) that satisfies `ok`, or the last one after 120 s (saved to `out`). (A
    `--screenshot` run with a virtual time budget does not wait for viser's splat-sorting worker.)"""

    with chromium_page().ChromiumPage(url, window=WINDOW, chromium=chromium) as page:
        image = page.screenshot_until(ok, 120)
    PIL.Image.fromarray(image).save(out)
    return image


@pytest.mark.browser
def test_rgb_mode_shows_the_scene_and_ctrl_c_stops(chromium: Path, tiny_scene, tmp_path: Path) -> None:
    folder, _ = tiny_scene
    with running_viewer(folder, "rgb") as (url, proc):
        image = shot_until(chromium, url, tmp_path / "rgb.png",
                           lambda im: all(share_near(im, c) > 0.005 for c in RGB_OF.values()))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)  # it waits for renders in progress (`ViewerApp.stop`)
    assert image.reshape(-1, 3).std(axis=0).max() > 20.0, "blank page"
    for seg, color in RGB_OF.items():
        assert share_near(image, color) > 0.005, f"segment {seg}'s colour {color} is not on screen"
    assert proc.returncode == 0
    assert "stopped" in out


@pytest.mark.parametrize("sig, sigint_ignored", [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["sigterm", "ctrl-c-inherited-ignored"])
def test_viewer_stops_cleanly_on_sigterm_and_on_ctrl_c_from_a_background_job(tiny_scene, sig: int,
                                                                             sigint_ignored: bool) -> None:
    """`kill` (SIGTERM) stops the viewer as Ctrl-C does (renders finished, "stopped", exit 0); so does Ctrl-C when
    the viewer was started with SIGINT ignored, as a script's background job (or a CI runner's) starts it: Python
    then raises no KeyboardInterrupt, and the viewer used to serve on."""
    folder, _ = tiny_scene
    with running_viewer(folder, "rgb", sigint_ignored=sigint_ignored) as (_, proc):
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
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


@pytest.mark.browser
def test_browser_draws_the_splats_and_the_camera_moves_without_server_renders(chromium: Path, tiny_scene,
                                                                             tmp_path: Path) -> None:
    """One page stays open (CDP): the splats show the label palette; the camera, moved from the server through
    viser's client handle, changes the picture; a mode change recolours it; the server renders nothing meanwhile."""
    import viser


    folder, scene = tiny_scene
    source = open_source(folder, torch.device("cpu"))
    port = _free_port()
    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    app = ViewerApp(server, source, ViewerOptions(device=torch.device("cpu"), mode=RenderMode.PANOPTIC))
    palette = {s.id: s.color for s in scene.segments}
    try:
        app._thumbnail_thread.join(timeout=120)  # the thumbnails are server renders, made once at start
        renders = app.renders
        with chromium_page().ChromiumPage(f"http://127.0.0.1:{port}", window=WINDOW, chromium=chromium) as page:
            labels = page.screenshot_until(lambda im: all(share_near(im, c) > 0.005 for c in palette.values()), 120)
            assert labels.reshape(-1, 3).std(axis=0).max() > 20.0, "blank page"
            for seg, color in palette.items():
                assert share_near(labels, color) > 0.005, f"segment {seg}'s label colour {color} is not on screen"
            assert share_near(labels, RGB_OF[CHAIR]) < 0.001 and share_near(labels, RGB_OF[SOFA]) < 0.001
            client = next(iter(server.get_clients().values()))
            app._fly(client, 2, steps=1)  # the camera opposite the start view: the sofa moves to the left
            moved = page.screenshot_until(lambda im: _changed(im, labels) > 0.1, 60)
            PIL.Image.fromarray(labels).save(tmp_path / "labels.png")
            PIL.Image.fromarray(moved).save(tmp_path / "moved.png")
            assert _changed(moved, labels) > 0.1, "moving the camera did not change the picture"
            app.update(lambda s: s.with_mode(RenderMode.RGB))
            rgb = page.screenshot_until(lambda im: all(share_near(im, c) > 0.005 for c in RGB_OF.values()), 60)
            PIL.Image.fromarray(rgb).save(tmp_path / "rgb.png")
            for seg, color in RGB_OF.items():
                assert share_near(rgb, color) > 0.005, f"segment {seg}'s colour {color} is not on screen in rgb mode"
        assert app.renders == renders, "the browser drew every frame: no server render in between"
    finally:
        app.stop()
        server.stop()


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the scene region's pixels that differ by more than 40 in some channel."""
    return float((np.abs(a[SCENE_REGION].astype(int) - b[SCENE_REGION].astype(int)).max(axis=-1) > 40).mean())


def test_view_refuses_a_folder_that_is_neither(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="neither a fitted scene"):
        view(ViewArgs(tmp_path, device="cpu"))
    with pytest.raises(UserError, match="not a folder"):
        view(ViewArgs(tmp_path / "missing", device="cpu"))
    (tmp_path / "config.yml").write_text("method_name: x\n")
    with pytest.raises(UserError, match="ns-train panst3r-splat"):
        view(ViewArgs(tmp_path, device="cpu"))


def test_max_splats_default_is_one_number_and_negative_counts_are_refused(tiny_scene) -> None:
    from panst3r_splat.pipeline.frontends.viewer.app import DEFAULT_MAX_SPLATS

    assert ViewArgs(tiny_scene[0]).max_splats == DEFAULT_MAX_SPLATS == ViewerOptions().max_splats
    with pytest.raises(UserError, match="--max-splats must be >= 0"):
        view(ViewArgs(tiny_scene[0], max_splats=-1, device="cpu"))


def test_view_refuses_a_port_in_use(tiny_scene) -> None:
    folder, _ = tiny_scene
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} .* in use"):
            view(ViewArgs(folder, port=port, device="cpu"))


def test_cli_prints_one_line_for_a_bad_folder(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "panst3r_splat.pipeline", "view", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "neither a fitted scene" in result.stderr


# ------------------------------------------------------------------------- the viser adapter, in process


@pytest.fixture()
def viser_server():
    import viser

    server = viser.ViserServer(host="127.0.0.1", port=_free_port(), verbose=False)
    yield server
    server.stop()


def _client_at(source, index: int) -> SimpleNamespace:
    """A stand-in for a browser whose camera sits in input camera `index` (what a click event carries)."""
    fov, aspect = input_camera_fov(source.cameras, index)
    T = source.cameras.T_world_cam[index].double().numpy()
    return SimpleNamespace(camera=SimpleNamespace(wxyz=rotation_to_quaternion(T[:3, :3]), position=T[:3, 3], fov=fov,
                                                  aspect=aspect))


def _click_on(app: ViewerApp, source, segment: int, index: int = 0) -> SimpleNamespace:
    """A click event of that browser on the projection of a segment's mean centre."""
    client = _client_at(source, index)
    camera = _BrowserCamera.read(client).view(app.sizes()[1])
    target = source.centers[source.segment_ids == segment].mean(axis=0)
    local = (target - camera.T_world_cam[:3, 3]) @ camera.T_world_cam[:3, :3]  # world -> camera, OpenCV
    u, v = (camera.K @ (local / local[2]))[:2]
    screen = ((u + 0.5) / camera.width, (v + 0.5) / camera.height)
    return SimpleNamespace(client=client, client_id=-1, screen_pos=screen, ray_origin=None, ray_direction=None)


def test_adapter_applies_every_action_to_a_scene(viser_server, tiny_scene, tmp_path: Path) -> None:
    folder, scene = tiny_scene
    source = open_source(folder, torch.device("cpu"))
    app = ViewerApp(viser_server, source, ViewerOptions(device=torch.device("cpu")))
    camera = scaled_input_camera(source.cameras, 0, 160)
    splats = app._splats
    try:
        assert len(splats.rgbs) == len(source.segment_ids), "the tiny scene is sent whole"
        app._thumbnail_thread.join(timeout=120)
        renders = app.renders
        for change in (lambda s: s.with_mode(RenderMode.PANOPTIC), lambda s: s.with_blend(0.5),
                       lambda s: s.select([CHAIR]), ViewState.isolate, ViewState.regenerate_colors,
                       lambda s: s.with_labels_shown(False)):
            app.update(change)
        assert app.renders == renders, "modes and edits change the splats, they do not render on the server"
        sofa = source.segment_ids == SOFA
        chair = source.segment_ids == CHAIR
        assert (splats.opacities[sofa] == 0).all() and (splats.opacities[chair] > 0).all()
        app.update(lambda s: s.with_mode(RenderMode.DEPTH))
        assert not splats.visible and app.render(camera).rgb.shape == (120, 160, 3)
        app.update(lambda s: s.show_all().clear_selection().with_mode(RenderMode.RGB).regenerate_colors())
        assert splats.visible and (splats.opacities > 0).all()
        np.testing.assert_allclose(splats.rgbs, np.round(source.rgb * 255), atol=1)
        app.update(lambda s: s.with_blend(1.0).select([CHAIR]).isolate().clear_selection())
        image = app.render(camera).rgb.astype(int)
        near = lambda rgb: (np.abs(image - np.array(rgb)).max(-1) <= 8).sum()  # noqa: E731
        assert near(SAMPLE_RGB[CHAIR]) > 50 and near(SAMPLE_RGB[SOFA]) == 0, "isolating the chair hides the sofa"
        # A click renders the segment map at the clicked camera (one server render) and reads the pixel.
        app.update(ViewState.show_all)
        renders = app.renders
        assert app._segment_under(_click_on(app, source, CHAIR)) == CHAIR
        assert app.renders == renders + 1
        assert app._pixels[CHAIR] > 0 and "px at the click" in app._pixels_label
        assert app._segment_under(_click_on(app, source, SOFA)) == SOFA
        app.update(lambda s: s.select([SOFA]).delete())
        assert app._segment_under(_click_on(app, source, SOFA)) != SOFA
    finally:
        app.stop()


def test_starting_mode_colours_are_sent_with_the_splats(viser_server, tiny_scene, monkeypatch) -> None:
    """`--mode panoptic`: the splats are created in the label colours, and no splat update is queued at start
    (a buffer update that reaches a browser before its splat renderer is ready can be lost, which showed RGB)."""
    from viser._scene_handles import SceneNodeHandle

    folder, _ = tiny_scene
    source = open_source(folder, torch.device("cpu"))
    updates: list[tuple[str, str]] = []
    original = SceneNodeHandle._queue_update
    monkeypatch.setattr(SceneNodeHandle, "_queue_update",
                        lambda self, name, value: (updates.append((self.name, name)), original(self, name, value)))
    app = ViewerApp(viser_server, source, ViewerOptions(device=torch.device("cpu"), mode=RenderMode.PANOPTIC))
    try:
        assert not [u for u in updates if u[0] == "/splats"], f"splat updates queued at start: {updates}"
        palette = {s.id: s.color for s in source.segments}
        ids = source.segment_ids[app._splat_geometry.index]
        for seg, color in palette.items():
            assert (np.abs(app._splats.rgbs[ids == seg].astype(int) - color).max(axis=1) <= 1).all(), seg
        app.update(lambda s: s.with_mode(RenderMode.RGB))
        assert ("/splats", "buffer") in updates, "a later mode change recolours the splats"
    finally:
        app.stop()


def test_max_splats_sends_the_most_visible(viser_server, tiny_scene) -> None:
    folder, _ = tiny_scene
    source = open_source(folder, torch.device("cpu"))
    app = ViewerApp(viser_server, source, ViewerOptions(device=torch.device("cpu"), max_splats=100))
    try:
        assert len(app._splats.rgbs) == 100 and "100 most visible of 384" in app._splats_md.content
        assert len(source.segment_ids) == 384, "the scene itself stays whole"
        assert app.render(scaled_input_camera(source.cameras, 0, 64)).rgb.shape == (48, 64, 3)
        app.update(lambda s: s.with_mode(RenderMode.PANOPTIC).select([SOFA]).hide())
        app.resend_splats(300)  # the GUI's "Max splats"
        index = app._splat_geometry.index
        assert len(app._splats.rgbs) == 300 and "300 most visible of 384" in app._splats_md.content
        sofa = source.segment_ids[index] == SOFA
        assert sofa.any() and (app._splats.opacities[sofa] == 0).all(), "the new splats keep the edits"
        chair = source.segment_ids[index] == CHAIR
        palette = {s.id: s.color for s in source.segments}
        assert (np.abs(app._splats.rgbs[chair].astype(int) - palette[CHAIR]).max(axis=1) <= 1).all()
        app.resend_splats(0)
        assert len(app._splats.rgbs) == 384 and app._splats_md.content == "Drawing all 384 Gaussians in the browser."
    finally:
        app.stop()


def test_adapter_shows_a_predictions_folder(viser_server, tiny_scene, tmp_path: Path) -> None:
    _, scene = tiny_scene
    pred, segments = sample_predictions(scene, long_side=64)
    save_predictions(pred, tmp_path / "pred", segments)
    source = open_source(tmp_path / "pred", torch.device("cpu"))
    assert isinstance(source, PredictionsSource) and len(source.thumbnails) == len(scene.cameras)
    assert source.pixel_areas[CHAIR] == int((pred.panoptic == CHAIR).sum())
    app = ViewerApp(viser_server, source, ViewerOptions(device=torch.device("cpu")))
    try:
        for change in (lambda s: s.with_conf_threshold(6.0), lambda s: s.with_conf_threshold(3.0),
                       lambda s: s.with_mode(RenderMode.DEPTH), lambda s: s.with_mode(RenderMode.INSTANCE),
                       lambda s: s.select([SOFA]), ViewState.hide):
            app.update(change)
        path = edits.export_selection(source, app.state.show_all().select([CHAIR]), tmp_path / "exports")
        points, _ = read_points_ply(path)
        assert len(points) == int(((source.segment_ids == CHAIR) & (source.conf >= 3.0)).sum()) > 0
    finally:
        app.stop()
