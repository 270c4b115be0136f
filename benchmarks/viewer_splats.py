"""How many splats a software-WebGL browser draws smoothly in the viewer: the measurement behind `view --max-splats`.

    python benchmarks/viewer_splats.py                          # 50k ... 2M splats, a few minutes
    python benchmarks/viewer_splats.py --sizes 100000 400000 --seconds 3

For each size, random Gaussians (centres in a 4 m cube, standard deviations 5 to 30 mm, random colours, opacities
0.3 to 1) go to viser's client-side splat renderer (`scene.add_gaussian_splats`, as `view` sends a scene) and a
headless Chromium (SwiftShader WebGL, `--disable-gpu`: the software path of CI and of machines without a GPU) opens
the page. Reported: seconds until the splats first show (transfer, upload and first sort), and the frames the page
draws per second while the server orbits the camera at 20 Hz (a requestAnimationFrame counter in the page, so a
frame that takes longer to draw lowers it). On a loaded 2-core machine the numbers move by tens of percent from run
to run; they are what the default rests on, not a promise.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import threading
import time
from pathlib import Path

import numpy as np

from chromium_page import ChromiumPage
from panst3r_splat.pipeline.frontends.viewer.splats import covariances

WINDOW = (1024, 768)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_splats(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays `add_gaussian_splats` takes for `n` random Gaussians."""
    rng = np.random.default_rng(seed)
    quats = rng.normal(size=(n, 4))
    scales = np.exp(rng.uniform(np.log(0.005), np.log(0.03), (n, 3)))
    return {"centers": rng.uniform(-2.0, 2.0, (n, 3)).astype(np.float32),
            "covariances": covariances(quats, scales).astype(np.float32),
            "rgbs": rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32),
            "opacities": rng.uniform(0.3, 1.0, (n, 1)).astype(np.float32)}


def _orbit(client, stop: threading.Event) -> None:
    """Move the browser's camera around the cube at 20 Hz until `stop`."""
    angle = 0.0
    while not stop.is_set():
        angle += 0.05
        with client.atomic():
            client.camera.position = (6.0 * math.sin(angle), -1.5, 6.0 * math.cos(angle))
            client.camera.look_at = (0.0, 0.0, 0.0)
        time.sleep(0.05)


def measure(n: int, seconds: float) -> dict[str, float]:
    """Load time and frames per second of `n` splats in a fresh server and browser."""
    import viser

    port = _free_port()
    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    try:
        server.scene.add_gaussian_splats("/splats", **random_splats(n))
        start = time.monotonic()
        with ChromiumPage(f"http://127.0.0.1:{port}", window=WINDOW) as page:
            while not server.get_clients() and time.monotonic() - start < 120:
                time.sleep(0.05)
            client = next(iter(server.get_clients().values()))
            client.camera.position, client.camera.look_at = (0.0, -1.5, 6.0), (0.0, 0.0, 0.0)
            # Shown: some of the left half (clear of the control panel) is no longer the white background.
            page.screenshot_until(lambda im: (im[150:700, 50:600].min(axis=-1) < 200).mean() > 0.002, 300)
            loaded = time.monotonic() - start
            stop = threading.Event()
            mover = threading.Thread(target=_orbit, args=(client, stop), daemon=True)
            mover.start()
            try:
                fps = page.frames_per_second(seconds)
            finally:
                stop.set()
                mover.join()
        return {"splats": n, "load_s": round(loaded, 2), "fps_orbiting": round(fps, 1)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 500_000, 1_000_000, 2_000_000])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each frame-rate measurement")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = []
    print(f"{'splats':>10} {'first shown (s)':>16} {'frames/s orbiting':>18}")
    for n in args.sizes:
        row = measure(n, args.seconds)
        rows.append(row)
        print(f"{row['splats']:>10,} {row['load_s']:>16.2f} {row['fps_orbiting']:>18.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
