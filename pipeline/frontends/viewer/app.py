"""The viser adapter of `panst3r-splat view`: panels, legend, labels, frusta, clicks; the logic lives elsewhere.

A fitted scene is drawn by the browser: its Gaussians go to viser's client-side splat renderer (viser >= 1.0,
`scene.add_gaussian_splats`, WebGL) once, and every mode (RGB, labels, the blend) and edit (select, isolate, hide,
delete) only sends new per-splat colours and opacities (`splats.py`), so moving the camera costs the server nothing
and stays smooth whatever its CPU. The server still rasterises with the project's renderer (`splat.rasterize`) where
exactness matters: a click renders the segment map at the clicked camera and reads the pixel (the same renderer
as the scored label renders; the legend's "px" counts come from that render), the frustum thumbnails, and the depth
mode, whose picture is a server render sent as the scene's background image (preview size while the camera moves,
still size once it stops), the splats hidden meanwhile.
Predictions folders have no splats: their fused point cloud is a plain viser point cloud drawn by the browser.

Everything the user can change is one immutable `ViewState` (`state.py`); every widget swaps in a new state under
a lock and `_apply` redraws what depends on it.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from panst3r_splat.core.transforms import rotation_to_quaternion
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.frontends.viewer import edits
from panst3r_splat.pipeline.frontends.viewer.render import (
    ViewCamera, browser_camera, input_camera_fov, render_segment_map, render_view, scaled_input_camera,
)
from panst3r_splat.pipeline.frontends.viewer.sources import THUMBNAIL_SIZE, PredictionsSource, SceneSource, open_source
from panst3r_splat.pipeline.frontends.viewer.splats import splat_colors, splat_geometry, splat_opacities, splats_note
from panst3r_splat.pipeline.frontends.viewer.state import (
    ColorTable, RenderMode, ViewState, color_table, depth_colors, gaussian_colors, legend, legend_markdown,
    pick_along_ray, segment_at, segment_centers, segment_counts, visible_mask,
)

logger = logging.getLogger(__name__)

SETTLE_S = 0.3
"""The still-size render starts once the camera and the controls have been quiet this long."""
FRAME_CACHE = 8
"""Rendered frames remembered (see `ViewerApp.render_cached`)."""
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
BACKGROUND = (255, 255, 255)
DEFAULT_MAX_SPLATS = 20_000
"""Splats sent to the browser at most by default (`--max-splats`): the largest count that a software-WebGL browser
still drew at 2 frames per second (`benchmarks/viewer_splats.py`, README "The viewer")."""


@dataclass(frozen=True)
class ViewerOptions:
    """Options of `panst3r-splat view` (see its --help)."""

    host: str = "127.0.0.1"
    port: int = 8080
    mode: RenderMode = RenderMode.RGB
    """Render mode the viewer starts in."""
    preview_size: int = 0
    """Depth mode: longer side of the server renders while the camera moves (0: 192 on CPU, 480 on CUDA)."""
    still_size: int = 0
    """Longer side of the depth mode's render once the camera stops and of a click's segment map (0: 640 on CPU,
    1280 on CUDA)."""
    device: torch.device = torch.device("cpu")
    max_splats: int = DEFAULT_MAX_SPLATS
    """Gaussians sent to the browser at most, the most visible ones (0: all)."""


def check_port_free(host: str, port: int) -> None:
    """A one-line error now instead of viser silently moving to the next free port."""
    if not 0 < port < 65536:
        raise UserError(f"--port must be in 1..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise UserError(f"cannot bind to --host {host}: {err.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(address)
        except OSError:
            raise UserError(f"port {port} on {host} is in use: choose another with --port") from None


@dataclass(frozen=True)
class _BrowserCamera:
    """One consistent reading of a browser's camera (its fields are replaced one by one as messages arrive)."""

    wxyz: tuple[float, ...]
    position: tuple[float, ...]
    fov: float
    aspect: float

    @staticmethod
    def read(client) -> "_BrowserCamera":
        # Rounded so that the echo of a camera we set (float32 in the browser) reads as the same camera.
        cam = client.camera
        return _BrowserCamera(wxyz=tuple(np.round(cam.wxyz, 5)), position=tuple(np.round(cam.position, 5)),
                              fov=round(float(cam.fov), 5), aspect=round(float(cam.aspect), 4))

    def view(self, long_side: int) -> ViewCamera:
        return browser_camera(np.array(self.wxyz), np.array(self.position), self.fov, self.aspect, long_side)


class _ClientView:
    """One browser of a fitted scene in the depth mode: renders its view in a thread, preview size while it moves,
    still size after (in the other modes the browser draws the splats itself and this thread idles).

    A frame identical to the last one sent (same camera, state and size) is not rendered again: the browser echoes
    every camera change, and slider drags send values that change nothing."""

    def __init__(self, app: "ViewerApp", client) -> None:
        self.app, self.client = app, client
        self._wake = threading.Event()
        self._stop = False
        self._changed_at = time.monotonic()
        self._pending_preview = True
        self._pending_still = True
        self._last_frame: tuple | None = None
        self.segment_map: np.ndarray | None = None
        self.segment_map_camera: _BrowserCamera | None = None
        client.camera.on_update(lambda _: self.invalidate())
        self._thread = threading.Thread(target=self._loop, name=f"viewer-client-{client.client_id}", daemon=True)
        self._thread.start()

    def invalidate(self) -> None:
        """The camera or the state changed: render again."""
        self._changed_at = time.monotonic()
        self._pending_preview = self._pending_still = True
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def camera(self) -> _BrowserCamera:
        return _BrowserCamera.read(self.client)

    def clear(self) -> None:
        """Leave the depth mode: remove the server frame so the browser's splats show."""
        self._last_frame = None
        self.client.scene.set_background_image(None)

    def _loop(self) -> None:
        while not self._stop:
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            if self.app.state.mode != RenderMode.DEPTH:
                continue  # the pending flags stay: entering the depth mode renders at once
            try:
                if self._pending_preview:
                    self._pending_preview = False
                    self._show(self.camera(), self.app.sizes()[0], quality=70)
                elif self._pending_still and time.monotonic() - self._changed_at >= SETTLE_S:
                    self._pending_still = False
                    camera = self.camera()
                    if self._show(camera, self.app.sizes()[1], quality=90):
                        self._update_segment_map(camera)
            except Exception:  # a failed frame must not end the browser's view; the next change retries
                logger.exception("viewer: rendering failed")

    def _show(self, camera: _BrowserCamera, long_side: int, *, quality: int) -> bool:
        """Render and send a frame unless it is the one on screen; returns whether it sent one."""
        frame = (camera, self.app.state, long_side)
        if frame == self._last_frame:
            return False
        image = self.app.render_cached(frame)
        logger.debug("viewer: client %d frame %dx%d", self.client.client_id, image.rgb.shape[1], image.rgb.shape[0])
        if self._stop or self.app.state.mode != RenderMode.DEPTH:
            return False
        self.client.scene.set_background_image(image.rgb, format="jpeg", jpeg_quality=quality, depth=image.depth)
        self._last_frame = frame
        return True

    def _update_segment_map(self, camera: _BrowserCamera) -> None:
        view = camera.view(self.app.sizes()[0])
        segment_map = self.app.segment_map(view)
        if camera == self.camera():
            self.segment_map, self.segment_map_camera = segment_map, camera
            self.app.set_pixel_counts(segment_counts(segment_map), f"px in view ({view.width}x{view.height})")


class ViewerApp:
    """The viewer of one SCENE or predictions folder on a running viser server."""

    def __init__(self, server, source: SceneSource | PredictionsSource, options: ViewerOptions) -> None:
        self.server, self.source, self.options = server, source, options
        self.is_scene = isinstance(source, SceneSource)
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._splat_lock = threading.Lock()
        """Held while the splats' arrays are swapped or recoloured."""
        self._state = ViewState(mode=options.mode)
        self._stopping = False
        self._views: dict[int, _ClientView] = {}
        self._all_views: list[_ClientView] = []
        """Every browser's view ever opened: `stop` waits for the renders of disconnected ones too."""
        self._visible_cache: tuple | None = None
        self._frames: dict[tuple, object] = {}
        self._pixels: dict[int, int] = dict(getattr(source, "pixel_areas", {}))
        self._pixels_label = "px at the last click" if self.is_scene else "px in views"
        self.renders = 0
        """Server rasterisations so far (frames, click segment maps, thumbnails): the splats cost none."""
        self._labels: list = []
        self._legend_buttons: list = []
        self._frusta: list = []
        self._inside: dict[int, tuple[int, float]] = {}
        """Client id -> (input camera it flew into, when): that camera's frustum is hidden so it does not cover
        the view, until the client moves away from it."""
        self._up = _up_direction(source.cameras)
        self._look_distances = [_look_distance(source, i) for i in range(len(source.cameras))]
        self._frustum_scale = _frustum_scale(source.cameras, self._look_distances)
        server.scene.set_up_direction(tuple(self._up))
        self._splats = self._add_splats() if self.is_scene else None
        self._build_gui()
        self._add_frusta(thumbnails=None if self.is_scene else source.thumbnails)
        self._apply(None, self._state)
        server.on_client_connect(self._on_connect)
        server.on_client_disconnect(self._on_disconnect)
        self._thumbnail_thread = None
        if self.is_scene:
            self._thumbnail_thread = threading.Thread(target=self._render_thumbnails, name="viewer-thumbnails",
                                                      daemon=True)
            self._thumbnail_thread.start()

    # ------------------------------------------------------------------------------------------ state changes

    @property
    def state(self) -> ViewState:
        return self._state

    def update(self, change: Callable[[ViewState], ViewState]) -> None:
        """Swap in `change(state)` and redraw what depends on it."""
        with self._lock:
            old = self._state
            new = change(old)
            if new == old:
                return
            self._state = new
        self._apply(old, new)

    def _apply(self, old: ViewState | None, new: ViewState) -> None:
        visibility = old is None or (old.hidden, old.isolated, old.deleted, old.show_labels) != (
            new.hidden, new.isolated, new.deleted, new.show_labels)
        if visibility or (not self.is_scene and old.conf_threshold != new.conf_threshold):
            self._refresh_labels(new)
        if old is None or old.deleted != new.deleted:
            self._rebuild_legend_buttons(new)
        self._refresh_legend(new)
        if old is not None:  # a change made in code (a test, a script) shows in the widgets too
            if self._mode_dropdown.value != new.mode.value:
                self._mode_dropdown.value = new.mode.value
            if self._blend_slider.value != new.blend:
                self._blend_slider.value = new.blend
        if self.is_scene:
            if old is not None:
                self._refresh_splats(old, new)
            left_depth = old is not None and old.mode == RenderMode.DEPTH and new.mode != RenderMode.DEPTH
            for view in list(self._views.values()):
                if left_depth:
                    view.clear()
                view.invalidate()
        else:
            self._refresh_points(new)

    def set_pixel_counts(self, pixels: dict[int, int], label: str) -> None:
        self._pixels, self._pixels_label = pixels, label
        self._refresh_legend(self._state)

    # ----------------------------------------------------------------------------------------------- splats

    def _choose_splats(self, max_splats: int) -> None:
        """The splats to send: at most `max_splats` (0: all), the most visible."""
        source, gaussians = self.source, self.source.gaussians
        geometry = splat_geometry(source.centers, gaussians.quats.detach().cpu().numpy(),
                                  gaussians.scales.detach().cpu().numpy(),
                                  gaussians.opacities.detach().cpu().numpy(), max_splats)
        self._splat_geometry = geometry
        self._splat_rgb = source.rgb[geometry.index]  # [M, 3] DC colours: viser's splats have no SH
        self._splat_segments = source.segment_ids[geometry.index]  # [M]
        logger.info("view: %s", splats_note(geometry))

    def _add_splats(self):
        """Send the scene's Gaussians (at most `max_splats`, the most visible) to the browser as splats."""
        self._choose_splats(self.options.max_splats)
        if self.source.gaussians.sh_degree > 0:
            logger.info("view: the browser draws the DC colour of each Gaussian (viser's splats take no spherical "
                        "harmonics; the scene has degree %d)", self.source.gaussians.sh_degree)
        geometry, state = self._splat_geometry, self._state
        # Sent in the starting mode's colours: a buffer update queued before a browser's splat renderer is ready
        # can be lost there (viser's own note on `set_gaussians`), which left `--mode panoptic` in RGB at times.
        return self.server.scene.add_gaussian_splats(
            "/splats", centers=geometry.centers, covariances=geometry.covariances, rgbs=self._splat_colors(state),
            opacities=self._splat_opacities(state), visible=state.mode != RenderMode.DEPTH)

    def _splat_colors(self, state: ViewState) -> np.ndarray:
        """[M, 3] colours in [0, 1] of the sent splats under `state`."""
        table = color_table(self.source.segments, state.mode, state.color_seed)
        return splat_colors(self._splat_rgb, self._splat_segments, state, table)

    def _splat_opacities(self, state: ViewState) -> np.ndarray:
        """[M, 1] opacities of the sent splats under `state` (0 where hidden, isolated away or deleted)."""
        return splat_opacities(self._splat_geometry.opacities, self._splat_segments, state)

    def _splats_text(self) -> str:
        """The GUI's note on what the browser draws."""
        text = splats_note(self._splat_geometry)
        degree = self.source.gaussians.sh_degree
        if degree > 0:
            text += f" Colours: the DC term of the degree-{degree} SH (viser's splats have no view dependence)."
        return text

    def resend_splats(self, max_splats: int) -> None:
        """Send another number of splats (the GUI's "Max splats"; 0: all) in the current colours."""
        with self._splat_lock:
            self._choose_splats(max_splats)
            geometry, state = self._splat_geometry, self._state
            self._splats.set_gaussians(geometry.centers, geometry.covariances, self._splat_colors(state),
                                       self._splat_opacities(state))
        self._splats_md.content = self._splats_text()

    def _refresh_splats(self, old: ViewState, new: ViewState) -> None:
        """New colours / opacities for the browser's splats where the change affects them (no render here; the
        starting state's went out with the splats themselves, `_add_splats`)."""
        recolour = (old.mode, old.blend, old.selected, old.color_seed) != (
            new.mode, new.blend, new.selected, new.color_seed)
        reshow = (old.hidden, old.isolated, old.deleted) != (new.hidden, new.isolated, new.deleted)
        with self._splat_lock, self.server.atomic():
            if recolour:
                self._splats.rgbs = self._splat_colors(new)
            if reshow:
                self._splats.opacities = self._splat_opacities(new)
            self._splats.visible = new.mode != RenderMode.DEPTH

    # ----------------------------------------------------------------------------------------------- render

    def sizes(self) -> tuple[int, int]:
        return int(self._preview_slider.value), int(self._still_slider.value)

    def _visible(self, state: ViewState) -> tuple:
        """The visible Gaussians (cached until the visibility sets change)."""
        key = (state.hidden, state.isolated, state.deleted)
        cache = self._visible_cache
        if cache is None or cache[0] != key:
            mask = visible_mask(self.source.segment_ids, state)
            index = torch.from_numpy(np.flatnonzero(mask))
            cache = (key, self.source.gaussians.select(index), mask)
            self._visible_cache = cache
        return cache[1], cache[2]

    def render_cached(self, frame: tuple):
        """`render` of a (browser camera, state, size) frame, remembering the last few: a reloaded page or a second
        browser at the same view gets its first frame at once."""
        with self._lock:
            image = self._frames.get(frame)
        if image is None:
            camera, state, long_side = frame
            image = self.render(camera.view(long_side), state)
            with self._lock:
                self._frames[frame] = image
                while len(self._frames) > FRAME_CACHE:
                    self._frames.pop(next(iter(self._frames)))
        return image

    def render(self, camera: ViewCamera, state: ViewState | None = None):
        """The scene from `camera` under `state` (default: the current state)."""
        state = self._state if state is None else state
        scene, mask = self._visible(state)
        table = color_table(self.source.segments, state.mode, state.color_seed)
        if scene.sh_degree > 0 and len(scene):
            T = torch.as_tensor(camera.T_world_cam, dtype=torch.float32, device=scene.device)[None]
            rgb = scene.colors(T)[0].clamp(0.0, 1.0).cpu().numpy()
        else:
            rgb = self.source.rgb[mask]
        colors = gaussian_colors(rgb, self.source.segment_ids[mask], state, table)
        with self._render_lock:
            self.renders += 1
            image = render_view(scene, colors, camera, background=BACKGROUND)
        if state.mode == RenderMode.DEPTH:
            image = dataclasses.replace(image, rgb=depth_colors(image.depth, image.alpha, background=BACKGROUND))
        return image

    def segment_map(self, camera: ViewCamera) -> np.ndarray:
        scene, _ = self._visible(self._state)
        with self._render_lock:
            self.renders += 1
            return render_segment_map(scene, camera)

    def _render_thumbnails(self) -> None:
        cameras = self.source.cameras
        images = []
        for i in range(len(cameras)):
            if self._stopping:
                return
            camera = scaled_input_camera(cameras, i, THUMBNAIL_SIZE)
            with self._render_lock:
                self.renders += 1
                images.append(render_view(self.source.gaussians, self.source.rgb, camera, background=BACKGROUND).rgb)
        self._add_frusta(thumbnails=images)

    # ---------------------------------------------------------------------------------------------- clients

    def _on_connect(self, client) -> None:
        client.camera.on_update(lambda camera: self._left_camera(camera.client))
        self._fly(client, 0, steps=1)
        if self.is_scene and not self._stopping:
            view = _ClientView(self, client)
            self._views[client.client_id] = view
            self._all_views.append(view)

    def _on_disconnect(self, client) -> None:
        view = self._views.pop(client.client_id, None)
        if view is not None:
            view.stop()
        if self._inside.pop(client.client_id, None) is not None:
            self._show_frusta(self._cameras_checkbox.value)

    def _left_camera(self, client) -> None:
        """Show the frustum a client had flown into again once it moves away (camera messages already on their
        way when the flight ended are ignored for a moment)."""
        inside = self._inside.get(client.client_id)
        if inside is None or time.monotonic() - inside[1] < 0.5:
            return
        centre = self.source.cameras.T_world_cam[inside[0], :3, 3].double().cpu().numpy()
        if np.linalg.norm(np.asarray(client.camera.position) - centre) > 0.5 * self._frustum_scale:
            self._inside.pop(client.client_id, None)
            self._show_frusta(self._cameras_checkbox.value)

    def stop(self) -> None:
        """Stop rendering and wait for the frames in progress (a torch call cut off by the interpreter's exit
        aborts the process)."""
        self._stopping = True
        views = list(self._all_views)
        for view in views:
            view.stop()
        for worker in [*views, self._thumbnail_thread]:
            if worker is not None:
                worker.join(timeout=60.0)

    def _fly(self, client, index: int, *, steps: int = 12) -> None:
        """Move the browser's camera into input camera `index` (orbiting about the point it looks at)."""
        T = self.source.cameras.T_world_cam[index].double().cpu().numpy()
        target_pos = T[:3, 3]
        target_look = target_pos + T[:3, 2] * self._look_distances[index]
        start_pos, start_look = np.array(client.camera.position), np.array(client.camera.look_at)
        self._inside.pop(client.client_id, None)
        client.camera.up_direction = tuple(self._up)
        for k in range(1, steps + 1):
            a = k / steps
            a = a * a * (3.0 - 2.0 * a)  # ease in and out
            with client.atomic():
                client.camera.position = (1.0 - a) * start_pos + a * target_pos
                client.camera.look_at = (1.0 - a) * start_look + a * target_look
            if steps > 1:
                time.sleep(0.4 / steps)
        client.camera.fov = input_camera_fov(self.source.cameras, index)[0]
        self._inside[client.client_id] = (index, time.monotonic())
        self._show_frusta(self._cameras_checkbox.value)

    def _add_frusta(self, thumbnails) -> None:
        cameras = self.source.cameras
        scale = self._frustum_scale
        hidden = {i for i, _ in self._inside.values()}
        frusta = []
        for i in range(len(cameras)):
            fov, aspect = input_camera_fov(cameras, i)
            T = cameras.T_world_cam[i].double().cpu().numpy()
            frustum = self.server.scene.add_camera_frustum(
                f"/cameras/{i:04d}", fov=fov, aspect=aspect, scale=scale, color=(60, 60, 60),
                image=None if thumbnails is None else thumbnails[i], wxyz=rotation_to_quaternion(T[:3, :3]),
                position=T[:3, 3], visible=self._cameras_checkbox.value and i not in hidden)
            frustum.on_click(lambda event, i=i: threading.Thread(target=self._fly, args=(event.client, i),
                                                                 daemon=True).start())
            frusta.append(frustum)
        self._frusta = frusta

    # ------------------------------------------------------------------------------------------------- GUI

    def _build_gui(self) -> None:
        gui = self.server.gui
        # No share button: viser's share link tunnels the viewer (and its save / export buttons) to the internet.
        gui.configure_theme(control_width="large", show_share_button=False)
        with gui.add_folder("Render"):
            modes = [m.value for m in RenderMode]
            mode = self._mode_dropdown = gui.add_dropdown("Mode", modes, initial_value=self._state.mode.value)
            mode.on_update(lambda e: self.update(lambda s: s.with_mode(RenderMode(e.target.value))))
            blend = self._blend_slider = gui.add_slider("Label blend", min=0.0, max=1.0, step=0.05,
                                                        initial_value=self._state.blend,
                                                        hint="0: RGB only, 1: labels only (label modes)")
            blend.on_update(lambda e: self.update(lambda s: s.with_blend(e.target.value)))
            regen = gui.add_button("Regenerate colours")
            regen.on_click(lambda _: self.update(lambda s: s.regenerate_colors()))
            labels = gui.add_checkbox("3D labels", initial_value=self._state.show_labels)
            labels.on_update(lambda e: self.update(lambda s: s.with_labels_shown(e.target.value)))
            self._cameras_checkbox = gui.add_checkbox("Cameras", initial_value=True)
            self._cameras_checkbox.on_update(lambda e: self._show_frusta(e.target.value))
            self._add_source_controls()
        self._build_selection_gui()
        with gui.add_folder("Legend"):
            self._legend_md = gui.add_markdown("")
            self._legend_folder = gui.add_folder("Select", expand_by_default=False)

    def _add_source_controls(self) -> None:
        gui = self.server.gui
        cuda = self.options.device.type == "cuda"
        preview = self.options.preview_size or (480 if cuda else 192)
        still = self.options.still_size or (1280 if cuda else 640)
        self._preview_slider = gui.add_slider("Moving size", min=64, max=2048, step=16, initial_value=preview,
                                              visible=self.is_scene,
                                              hint="depth mode: longer side of the server render while moving")
        self._still_slider = gui.add_slider("Still size", min=64, max=4096, step=16, initial_value=still,
                                            visible=self.is_scene, hint="longer side of the depth mode's render "
                                            "once the camera stops and of a click's segment map")
        for slider in (self._preview_slider, self._still_slider):
            slider.on_update(lambda _: self._apply(self._state, self._state))
        if self.is_scene:
            total = self._splat_geometry.total
            splats = gui.add_number("Max splats", initial_value=len(self._splat_geometry.index), min=1,
                                    max=max(total, 1), step=1,
                                    hint="Gaussians the browser draws, the most visible (--max-splats)")
            splats.on_update(lambda e: self.resend_splats(int(e.target.value)))
            self._splats_md = gui.add_markdown(self._splats_text())
            return
        points = gui.add_checkbox("Point cloud", initial_value=True)
        points.on_update(lambda e: setattr(self._points_handle, "visible", e.target.value))
        top = float(max(np.percentile(self.source.conf, 99), 3.5))
        conf = gui.add_slider("Confidence threshold", min=1.0, max=round(top, 1), step=0.1,
                              initial_value=min(self._state.conf_threshold, round(top, 1)))
        conf.on_update(lambda e: self.update(lambda s: s.with_conf_threshold(e.target.value)))
        self._point_size = gui.add_slider("Point size", min=0.0, max=round(self.source.point_size * 5, 6),
                                          step=round(self.source.point_size / 10, 7),
                                          initial_value=round(self.source.point_size, 6))
        self._point_size.on_update(lambda _: self._refresh_points(self._state))

    def _build_selection_gui(self) -> None:
        gui = self.server.gui
        with gui.add_folder("Selection"):
            self._selection_md = gui.add_markdown("Nothing selected.")
            pick = gui.add_button("Pick in scene", hint="then click an object in the 3D view")
            pick.on_click(lambda e: self._start_pick(e.client))
            self._add_to_selection = gui.add_checkbox("Add to selection", initial_value=False)
            actions = gui.add_button_group("Selection", ("Isolate", "Hide", "Delete", "Clear"))
            actions.on_click(lambda e: self.update(_ACTIONS[e.target.value]))
            undo = gui.add_button_group("Undo", ("Show all", "Restore deleted"))
            undo.on_click(lambda e: self.update(_ACTIONS[e.target.value]))
            stem = self.source.path.resolve()
            if self.is_scene:
                self._save_text = gui.add_text("Edited scene", initial_value=str(stem.parent / f"{stem.name}-edited"))
                save = gui.add_button("Save edited scene", hint="the scene without its deleted segments")
                save.on_click(lambda e: self._save(e.client))
            self._export_text = gui.add_text("Export folder", initial_value=str(stem.parent / f"{stem.name}-exports"))
            export = gui.add_button("Export selection as PLY")
            export.on_click(lambda e: self._export(e.client))

    def _show_frusta(self, visible: bool) -> None:
        hidden = {i for i, _ in self._inside.values()}
        for i, frustum in enumerate(self._frusta):
            frustum.visible = visible and i not in hidden

    def _start_pick(self, client) -> None:
        if client is None:
            return

        client.scene.remove_click_callback()  # a second press of the button re-arms, it does not stack

        @client.scene.on_click()
        def _(event) -> None:
            client.scene.remove_click_callback()
            segment = self._segment_under(event)
            self.update(lambda s: s.select([segment], add=self._add_to_selection.value))

    def _segment_under(self, event) -> int:
        """The segment id under a click. A scene: the segment map rendered on the server at the clicked camera (at
        the still size; exact, the renderer of the scored label renders), whose pixel counts go to the legend. A
        predictions folder: the first point along the click's ray."""
        screen_xy = event.screen_pos[0] if isinstance(event.screen_pos[0], (tuple, list)) else event.screen_pos
        if self.is_scene:
            camera = _BrowserCamera.read(event.client).view(self.sizes()[1])
            segment_map = self.segment_map(camera)
            self.set_pixel_counts(segment_counts(segment_map), f"px at the click ({camera.width}x{camera.height})")
            return segment_at(segment_map, screen_xy)
        state = self._state
        candidates = visible_mask(self.source.segment_ids, state) & (self.source.conf >= state.conf_threshold)
        radii = np.full(len(candidates), float(self._point_size.value))
        index = pick_along_ray(self.source.points, radii, np.array(event.ray_origin), np.array(event.ray_direction),
                               candidates)
        return 0 if index is None else int(self.source.segment_ids[index])

    def _save(self, client) -> None:
        try:
            path = edits.save_edited_scene(self.source, self._state, Path(self._save_text.value))
            _notify(client, "Saved", f"edited scene written to {path}")
        except UserError as err:
            _notify(client, "Not saved", str(err), error=True)

    def _export(self, client) -> None:
        try:
            path = edits.export_selection(self.source, self._state, Path(self._export_text.value))
        except UserError as err:
            _notify(client, "Not exported", str(err), error=True)
            return
        _notify(client, "Exported", f"selection written to {path}")
        if client is not None:
            client.send_file_download(path.name, path.read_bytes())

    # ------------------------------------------------------------------------------------ derived drawings

    def _refresh_labels(self, state: ViewState) -> None:
        for handle in self._labels:
            handle.remove()
        self._labels = []
        if not state.show_labels:
            return
        points = self.source.centers if self.is_scene else self.source.points
        mask = visible_mask(self.source.segment_ids, state)
        if not self.is_scene:
            mask &= self.source.conf >= state.conf_threshold
        centers = segment_centers(points, self.source.segment_ids, mask)
        for s in self.source.segments:
            if s.id in centers:
                text = f"{s.class_name} {s.id}" if s.isthing else s.class_name
                self._labels.append(self.server.scene.add_label(f"/labels/{s.id}", text, position=centers[s.id]))

    def _refresh_legend(self, state: ViewState) -> None:
        counts_from = self.source.segment_ids
        if not self.is_scene:
            counts_from = counts_from[self.source.conf >= state.conf_threshold]
        classes, rows = legend(self.source.segments, counts_from, state, self._pixels)
        text = legend_markdown(classes, rows, pixels_label=self._pixels_label)
        if not self.is_scene:
            text = text.replace("| Gaussians |", "| points |")
        self._legend_md.content = text
        chosen = [r for r in rows if r.selected]
        self._selection_md.content = ("Nothing selected." if not chosen else "Selected: " + ", ".join(
            f"{r.class_name} {r.segment_id}" for r in chosen))

    def _rebuild_legend_buttons(self, state: ViewState) -> None:
        for handle in self._legend_buttons:
            handle.remove()
        classes, rows = legend(self.source.segments, self.source.segment_ids, state, {})
        buttons = []
        with self._legend_folder:
            for c in classes:
                options = ("all",) + tuple(f"#{i}" for i in c.segment_ids)
                group = self.server.gui.add_button_group(c.class_name, options)
                group.on_click(lambda e, ids=c.segment_ids: self.update(
                    lambda s: s.select(ids if e.target.value == "all" else [int(e.target.value[1:])],
                                       add=self._add_to_selection.value)))
                buttons.append(group)
        self._legend_buttons = buttons

    def _refresh_points(self, state: ViewState) -> None:
        source = self.source
        mask = visible_mask(source.segment_ids, state) & (source.conf >= state.conf_threshold)
        if state.mode == RenderMode.DEPTH:
            colors = depth_colors(source.depth[mask], np.ones(int(mask.sum()))).astype(np.float32) / 255.0
        else:
            table: ColorTable = color_table(source.segments, state.mode, state.color_seed)
            colors = gaussian_colors(source.rgb[mask], source.segment_ids[mask], state, table)
        self._points_handle = self.server.scene.add_point_cloud(
            "/points", points=source.points[mask], colors=colors, point_size=float(self._point_size.value),
            point_shape="rounded")


_ACTIONS: dict[str, Callable[[ViewState], ViewState]] = {
    "Isolate": ViewState.isolate, "Hide": ViewState.hide, "Delete": ViewState.delete,
    "Clear": ViewState.clear_selection, "Show all": ViewState.show_all, "Restore deleted": ViewState.restore_deleted,
}


def _notify(client, title: str, body: str, *, error: bool = False) -> None:
    (logger.warning if error else logger.info)("%s: %s", title, body)
    if client is not None:
        client.add_notification(title, body, auto_close=6000, color="red" if error else "green")


def _up_direction(cameras) -> np.ndarray:
    """The scene's up: the mean of the input cameras' up vectors (-y in OpenCV axes)."""
    up = -cameras.T_world_cam[:, :3, 1].double().mean(dim=0).cpu().numpy()
    norm = np.linalg.norm(up)
    return up / norm if norm > 1e-6 else np.array([0.0, -1.0, 0.0])


def _frustum_scale(cameras, look_distances: list[float]) -> float:
    """Frustum size: a fifth of the median spacing of neighbouring cameras (a frustum next to the camera the view
    sits in covers little of it), at most a twentieth of the viewing distance."""
    centers = cameras.T_world_cam[:, :3, 3].double().cpu().numpy()
    limit = 0.05 * float(np.median(look_distances))
    if len(centers) < 2:
        return limit
    gaps = np.linalg.norm(centers[:, None] - centers[None], axis=-1) + np.diag(np.full(len(centers), np.inf))
    spacing = float(np.median(gaps.min(axis=1)))
    return min(limit, spacing / 5.0) if spacing > 0 else limit


def _look_distance(source: SceneSource | PredictionsSource, index: int) -> float:
    """How far in front of input camera `index` the scene lies (median depth of the scene's centres)."""
    points = source.centers if isinstance(source, SceneSource) else source.points
    T = source.cameras.T_world_cam[index].double().cpu().numpy()
    sample = np.asarray(points[:: max(1, len(points) // 20000)], np.float64)
    z = (sample - T[:3, 3]) @ T[:3, 2]
    z = z[z > 0]
    return float(np.median(z)) if len(z) else 1.0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM set `stop` while the viewer serves (previous handlers restored after).

    Explicit handlers, not Python's KeyboardInterrupt: a process started from a script's background job inherits
    SIGINT ignored, and Python then installs no handler, so Ctrl-C (and a test's SIGINT) did nothing; and a plain
    `kill` would otherwise end the viewer without waiting for its renders. Only the main thread can set handlers
    (a viewer served from another thread stops through `stop_event` alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(path: Path, options: ViewerOptions, *, ready: Callable[[str], None] | None = None,
          stop_event: threading.Event | None = None) -> None:
    """Open `path`, serve it until Ctrl-C, SIGTERM (or `stop_event`), and shut down cleanly.

    `ready(url)` is called once the server listens (the command prints the URL).
    """
    import viser

    logging.getLogger("websockets").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    source = open_source(path, options.device)
    if options.host not in LOCAL_HOSTS:
        logger.warning("view: binding to %s makes the viewer (and its save / export buttons, which write files "
                       "on this machine) reachable from the network", options.host)
    check_port_free(options.host, options.port)
    server = viser.ViserServer(host=options.host, port=options.port, label="panst3r-splat", verbose=False)
    if server.get_port() != options.port:  # taken between the check and the bind: viser moved on
        server.stop()
        raise UserError(f"port {options.port} on {options.host} is in use: choose another with --port")
    app = ViewerApp(server, source, options)
    host = f"[{options.host}]" if ":" in options.host else options.host
    stop = stop_event if stop_event is not None else threading.Event()
    try:
        with _stop_on_signals(stop):
            if ready is not None:
                ready(f"http://{host}:{options.port}")
            while not stop.wait(0.2):
                pass
    except KeyboardInterrupt:  # a SIGINT before the handlers were in place
        pass
    finally:
        app.stop()
        server.stop()
