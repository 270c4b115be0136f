"""A live headless Chromium page driven over the DevTools protocol (CDP) for the viewer's tests and benchmark
(`benchmarks/viewer_splats.py`): screenshots of a page that stays open, so a
test can change something on the server side and see the same page change (a `--screenshot` run loads a new page
every time). WebGL runs in SwiftShader (software), as on CI.

Only the standard library and `websockets` (a viser requirement); the browser listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import PIL.Image

CHROMIUM = Path("/usr/bin/chromium")


class ChromiumPage:
    """One headless Chromium with one page open at `url`; use as a context manager."""

    def __init__(self, url: str, *, window: tuple[int, int] = (1024, 768), chromium: Path = CHROMIUM) -> None:
        self.url, self.window, self.chromium = url, window, chromium
        self._next_id = 0

    def __enter__(self) -> "ChromiumPage":
        from websockets.sync.client import connect

        self._profile = Path(tempfile.mkdtemp(prefix="chromium-cdp-"))
        self._proc = subprocess.Popen(
            [str(self.chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile}", f"--window-size={self.window[0]},{self.window[1]}", self.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._devtools_port(timeout=60.0)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
                pages = [t for t in json.load(reply) if t.get("type") == "page"]
            if not pages:
                raise RuntimeError("chromium opened no page")
            self._ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
            # Headless windows lose some height to (invisible) browser chrome: pin the page's viewport instead.
            self.call("Emulation.setDeviceMetricsOverride", width=self.window[0], height=self.window[1],
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self._close_browser()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._ws.close()
        finally:
            self._close_browser()

    def _devtools_port(self, timeout: float) -> int:
        """The port chromium picked (it writes it to DevToolsActivePort in the profile once it listens)."""
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self._proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def _close_browser(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, **params) -> dict:
        """One CDP command; returns its result (events arriving meanwhile are dropped)."""
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=120))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def screenshot(self) -> np.ndarray:
        """The page as it is now, (H, W, 3) uint8."""
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(PIL.Image.open(io.BytesIO(data)).convert("RGB"))

    def screenshot_until(self, ok: Callable[[np.ndarray], bool], timeout: float) -> np.ndarray:
        """Screenshots every half second until one satisfies `ok` or `timeout` runs out (then the last one)."""
        deadline = time.monotonic() + timeout
        while True:
            image = self.screenshot()
            if ok(image) or time.monotonic() > deadline:
                return image
            time.sleep(0.5)

    def frames_per_second(self, seconds: float) -> float:
        """Animation frames the page drew per second over `seconds` (a fixed requestAnimationFrame counter run in
        the page: the rate drops when drawing a frame takes longer than the display interval)."""
        counter = ("new Promise(done => { let n = 0; const t0 = performance.now(); function tick() { n += 1; "
                   f"const dt = performance.now() - t0; if (dt < {1000.0 * seconds}) requestAnimationFrame(tick); "
                   "else done(1000.0 * n / dt); } requestAnimationFrame(tick); })")
        result = self.call("Runtime.evaluate", expression=counter, awaitPromise=True, returnByValue=True)
        return float(result["result"]["value"])
