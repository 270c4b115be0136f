"""A tour of `panst3r-splat view` on a fitted scene in a live headless Chromium (software WebGL), and the README's
viewer picture.

    .venv/bin/python scripts/viewer_tour.py demo_out/posed/scene --out /tmp/tour --picture docs/viewer.png

Every mode (rgb, semantic, instance, panoptic, depth, the RGB/labels blend) and every edit (a real mouse click
through *Pick in scene*, isolate, show all, hide, export, delete, save, restore) is applied to the running viewer;
after each step the script waits for the page to change, saves a screenshot to `--out`, and prints one row: how much
of the picture changed and how many server renders the step cost (the splats should cost none; a click and the
depth mode cost renders by design). The last picture (panoptic at blend 0.6 with the clicked segment selected) is
written to `--picture` when given.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import socket
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from panst3r_splat.pipeline.frontends.viewer import edits
from panst3r_splat.pipeline.frontends.viewer.app import ViewerApp, ViewerOptions
from panst3r_splat.pipeline.frontends.viewer.sources import open_source
from panst3r_splat.pipeline.frontends.viewer.state import RenderMode, ViewState

ROOT = Path(__file__).resolve().parents[1]
WINDOW = (1024, 640)
REGION = (slice(60, 600), slice(0, 600))
"""Rows, columns of the screenshot left of the control panel."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a[REGION].astype(int) - b[REGION].astype(int)).max(axis=-1) > 30).mean())


def _click(page, x: int, y: int) -> None:
    """A left click on the page at (x, y) pixels, as a mouse would."""
    page.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    for kind in ("mousePressed", "mouseReleased"):
        page.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def _steps(app: ViewerApp, page, out: Path):
    """The tour: (name, action) pairs; an action changes the viewer (and may return a note)."""
    def pick():
        client = next(iter(app.server.get_clients().values()))
        app._start_pick(client)
        time.sleep(1.0)
        _click(page, 300, 330)
        deadline = time.monotonic() + 60
        while not app.state.selected and time.monotonic() < deadline:
            time.sleep(0.2)
        return f"selected {sorted(app.state.selected)}"

    def save():
        return f"saved {edits.save_edited_scene(app.source, app.state, out / 'edited')}"

    def export():
        return f"exported {edits.export_selection(app.source, app.state, out / 'exports')}"

    return [
        ("semantic", lambda: app.update(lambda s: s.with_mode(RenderMode.SEMANTIC))),
        ("instance", lambda: app.update(lambda s: s.with_mode(RenderMode.INSTANCE))),
        ("panoptic", lambda: app.update(lambda s: s.with_mode(RenderMode.PANOPTIC))),
        ("blend 0.6", lambda: app.update(lambda s: s.with_blend(0.6))),
        ("regenerate colours", lambda: app.update(ViewState.regenerate_colors)),
        ("depth (server render)", lambda: app.update(lambda s: s.with_mode(RenderMode.DEPTH))),
        ("rgb", lambda: app.update(lambda s: s.with_mode(RenderMode.RGB))),
        ("click: pick (server render)", pick),
        ("isolate", lambda: app.update(ViewState.isolate)),
        ("show all", lambda: app.update(ViewState.show_all)),
        ("hide", lambda: app.update(lambda s: s.hide())),
        ("show all", lambda: app.update(ViewState.show_all)),
        ("click: pick again", pick),
        ("export selection", export),
        ("delete", lambda: app.update(ViewState.delete)),
        ("save edited scene", save),
        ("restore deleted", lambda: app.update(ViewState.restore_deleted)),
        ("camera: step back", lambda: _step_back(app)),
        ("picture: panoptic, blend 0.6", lambda: app.update(
            lambda s: s.with_mode(RenderMode.PANOPTIC).with_blend(0.6))),
    ]


def _step_back(app: ViewerApp) -> None:
    """Move the browser's camera back along its view direction, to see the whole scene (no server render)."""
    client = next(iter(app.server.get_clients().values()))
    position, look_at = np.asarray(client.camera.position), np.asarray(client.camera.look_at)
    client.camera.position = look_at + 1.8 * (position - look_at)


def _chromium_page():
    """benchmarks/chromium_page.py (the DevTools page driver the viewer's tests and benchmark use), by its path."""
    spec = importlib.util.spec_from_file_location("chromium_page", ROOT / "benchmarks" / "chromium_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tour(scene: Path, out: Path, picture: Path | None) -> None:
    import viser

    ChromiumPage = _chromium_page().ChromiumPage

    out.mkdir(parents=True, exist_ok=True)
    source = open_source(scene, torch.device("cpu"))
    port = _free_port()
    server = viser.ViserServer(host="127.0.0.1", port=port, label="panst3r-splat", verbose=False)
    app = ViewerApp(server, source, ViewerOptions(device=torch.device("cpu")))
    try:
        app._thumbnail_thread.join(timeout=300)
        with ChromiumPage(f"http://127.0.0.1:{port}", window=WINDOW) as page:
            image = page.screenshot_until(lambda im: (im[REGION].min(axis=-1) < 200).mean() > 0.2, 120)
            _click(page, 288, 100)  # close viser's "software WebGL" notice, which covers the top left
            PIL.Image.fromarray(image).save(out / "00-rgb.png")
            print(f"{'step':<30} {'changed':>8} {'server renders':>15}  note")
            for k, (name, action) in enumerate(_steps(app, page, out), start=1):
                renders = app.renders
                note = action() or ""
                after = page.screenshot_until(lambda im: _changed(im, image) > 0.02, 20)
                time.sleep(1.0)
                after = page.screenshot()
                print(f"{name:<30} {_changed(after, image):>8.3f} {app.renders - renders:>15}  {note}", flush=True)
                PIL.Image.fromarray(after).save(out / f"{k:02d}-{name.split(':')[0].replace(' ', '-')}.png")
                image = after
            if picture is not None:
                PIL.Image.fromarray(image).save(picture)
    finally:
        app.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scene", type=Path, help="a fitted scene folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the screenshots and the saved edits")
    parser.add_argument("--picture", type=Path, help="where to write the last screenshot (the README's picture)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tour(args.scene, args.out, args.picture)


if __name__ == "__main__":
    main()
