"""Time the rasteriser and label lifting on CPU; prints one table per measurement.

    python benchmarks/rasterize.py              # full tables (a few minutes on 2 cores)
    python benchmarks/rasterize.py --quick      # the 128x96, 5k-Gaussian training step only
    python benchmarks/rasterize.py --compare    # only the numba-vs-torch table and the cold compile time

The comparison table times the compiled CPU backend ("numba", the CPU default) against the plain-torch reference
("torch") on the same Gaussians, cameras and loss, forward + backward, the two alternating repeat by repeat so both
see the same load; the ratio is reference time / numba time. The cold compile time is the first call in a fresh
process with an empty Numba cache (then the same with the cache filled).

The scene imitates a 3DGS initialisation in a room: Gaussians on the walls, floor and boxes of a 4 x 3 x 4 room,
scales from the distance to their 3 nearest neighbours (as 3DGS initialises them), opacities uniform in
[0.1, 0.9], seen by cameras inside the room looking at its walls. Times are medians over repeats.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

from panst3r_splat.pipeline.openmp import quiet_openmp_waits

quiet_openmp_waits()  # as the console command does, before torch loads OpenMP (pipeline/openmp.py)

import torch  # noqa: E402

from panst3r_splat.splat.lifting import LiftOptions, lift_segments
from panst3r_splat.splat.rasterize import rasterize


def room_scene(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """`n` Gaussians on the walls, floor and two boxes of a room corner seen from the front (y down, z forward)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 2, generator=g)
    surface = torch.randint(0, 5, (n,), generator=g)
    pts = torch.empty(n, 3)
    planes = [  # (origin, axis u, axis v): back wall, left wall, floor, two box fronts
        ([-2.2, -1.6, 4.0], [4.4, 0, 0], [0, 3.2, 0]),
        ([-2.2, -1.6, 1.5], [0, 0, 2.5], [0, 3.2, 0]),
        ([-2.2, 1.6, 1.5], [4.4, 0, 0], [0, 0, 2.5]),
        ([-1.0, 0.4, 2.6], [0.9, 0, 0], [0, 1.2, 0]),
        ([0.5, -0.2, 3.0], [1.0, 0, 0], [0, 1.8, 0]),
    ]
    for i, (o, a, b) in enumerate(planes):
        sel = surface == i
        pts[sel] = torch.tensor(o) + u[sel, :1] * torch.tensor(a) + u[sel, 1:] * torch.tensor(b)
    knn = torch.cat([torch.cdist(part, pts).topk(4, largest=False).values[:, 1:] for part in pts.split(2048)])
    scale = knn.mean(-1).clamp(min=1e-3)
    return {
        "means": pts,
        "quats": torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
        "scales": scale[:, None].repeat(1, 3),
        "opacities": torch.rand(n, generator=g) * 0.8 + 0.1,
        "colors": torch.rand(n, 3, generator=g),
    }


def orbit_cameras(n_views: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """T_cam_world and K of cameras on a +-20 degree arc around the room centre, looking at it (70 degree FOV)."""
    centre = torch.tensor([0.0, 0.0, 2.8])
    viewmats = []
    for i in range(n_views):
        a = math.radians(-20 + 40 * i / max(n_views - 1, 1))
        R_world_cam = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
        position = centre - R_world_cam[:, 2] * 2.8
        T = torch.eye(4)
        T[:3, :3] = R_world_cam.T
        T[:3, 3] = -R_world_cam.T @ position
        viewmats.append(T)
    f = 0.5 * width / math.tan(math.radians(35))
    K = torch.tensor([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    return torch.stack(viewmats), K[None].repeat(n_views, 1, 1)


def time_it(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU seconds of `fn` (CPU time is steadier on a shared machine)."""
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def train_step(scene: dict, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
               backend: str = "torch"):
    """A closure: forward + backward of an L1 loss through one RGB render of every given camera (one call)."""
    params = {k: v.clone().requires_grad_() for k, v in scene.items()}
    target = torch.rand(viewmats.shape[0], height, width, 3, generator=torch.Generator().manual_seed(0))

    def step() -> None:
        render, _, info = rasterize(params["means"], params["quats"], params["scales"], params["opacities"],
                                    params["colors"], viewmats, Ks, width, height, backend=backend)
        info["means2d"].retain_grad()
        (render - target).abs().mean().backward()
        for p in params.values():
            p.grad = None

    return step


def train_step_time(scene: dict, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
                    repeats: int, backend: str = "torch") -> tuple[float, float]:
    """Median wall and CPU seconds of `train_step`."""
    return time_it(train_step(scene, viewmats, Ks, width, height, backend), repeats)


def time_pair(fn_a, fn_b, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Medians (wall, CPU) of two functions timed alternately, so both see the same load on a shared machine."""
    fn_a(), fn_b()  # warm-up
    times: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    for _ in range(repeats):
        for i, fn in enumerate((fn_a, fn_b)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[i].append((time.perf_counter() - t0, time.process_time() - c0))
    return tuple((statistics.median(t[0] for t in times[i]), statistics.median(t[1] for t in times[i]))
                 for i in (0, 1))  # type: ignore[return-value]


def compare_backends(counts: tuple[int, ...], sizes: tuple[tuple[int, int], ...], repeats: int) -> list[dict]:
    """Training step of the numba backend vs the plain-torch reference, same scene and loss; prints a table."""
    print("\nnumba vs torch reference: single-view training step (forward + backward of an L1 loss on RGB)")
    print(f"{'gaussians':>10} {'size':>8} {'torch s (cpu)':>16} {'numba s (cpu)':>16} {'ratio wall':>11} "
          f"{'ratio cpu':>10}")
    rows = []
    for n in counts:
        scene = room_scene(n)
        for w, h in sizes:
            viewmats, Ks = orbit_cameras(1, w, h)
            (t_wall, t_cpu), (n_wall, n_cpu) = time_pair(train_step(scene, viewmats, Ks, w, h, "torch"),
                                                         train_step(scene, viewmats, Ks, w, h, "numba"), repeats)
            rows.append({"gaussians": n, "width": w, "height": h, "torch_seconds": t_wall, "torch_cpu": t_cpu,
                         "numba_seconds": n_wall, "numba_cpu": n_cpu, "ratio": t_wall / n_wall,
                         "ratio_cpu": t_cpu / n_cpu})
            print(f"{n:>10} {f'{w}x{h}':>8} {f'{t_wall:.3f} ({t_cpu:.3f})':>16} {f'{n_wall:.4f} ({n_cpu:.4f})':>16} "
                  f"{t_wall / n_wall:>10.1f}x {t_cpu / n_cpu:>9.1f}x")
    return rows


_FIRST_CALL = """
import time
t0 = time.perf_counter()
import torch
from panst3r_splat.splat.rasterize import rasterize
t1 = time.perf_counter()
means = torch.rand(50, 3) + torch.tensor([0.0, 0.0, 2.0])
params = [means, torch.randn(50, 4), torch.rand(50, 3) * 0.1, torch.rand(50), torch.rand(50, 3)]
params = [p.requires_grad_() for p in params]
K = torch.tensor([[[40.0, 0, 20], [0, 40.0, 15], [0, 0, 1]]])
render, _, _ = rasterize(*params, torch.eye(4)[None], K, 40, 30, backend="numba")
render.sum().backward()
print(t1 - t0, time.perf_counter() - t1)
"""


def cold_compile_seconds() -> dict[str, float]:
    """First numba render (forward + backward, float32) in a fresh process: with an empty Numba cache (compiles
    every kernel) and again with the cache it filled (loads them). Import time reported apart."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "cached"):
            res = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True,
                                 check=True)
            imp, first = (float(x) for x in res.stdout.split())
            out[f"{label}_first_call_seconds"], out[f"{label}_import_seconds"] = first, imp
    print(f"\nnumba backend, first forward + backward in a fresh process: {out['cold_first_call_seconds']:.1f} s "
          f"with an empty cache (compiling), {out['cached_first_call_seconds']:.2f} s from the cache "
          f"(imports {out['cold_import_seconds']:.1f} s apart)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the 128x96, 5k-Gaussian single-view step")
    parser.add_argument("--compare", action="store_true", help="only the numba-vs-torch table and compile time")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, load {load:.1f}")
    print("times: median wall-clock seconds (median process CPU seconds, all threads)")
    if args.compare:
        cold_compile_seconds()
        compare_backends((5000, 20000, 100000), ((128, 96), (256, 192), (512, 384)), args.repeats)
        return

    sizes = [(128, 96)] if args.quick else [(128, 96), (256, 192)]
    counts = [5000] if args.quick else [1000, 5000, 20000]
    print("\nsingle-view training step of the torch reference (forward + backward of an L1 loss on RGB)")
    print(f"{'gaussians':>10} {'visible':>8} " + " ".join(f"{f'{w}x{h}':>18}" for w, h in sizes))
    for n in counts:
        scene = room_scene(n)
        row = []
        for w, h in sizes:
            viewmats, Ks = orbit_cameras(1, w, h)
            wall, cpu = train_step_time(scene, viewmats, Ks, w, h, args.repeats)
            row.append(f"{wall:.3f} ({cpu:.3f})")
        print(f"{n:>10} {_visible(scene, viewmats, Ks, w, h):>8} " + " ".join(f"{r:>18}" for r in row))
    if args.quick:
        return
    cold_compile_seconds()
    compare_backends((5000, 20000, 100000), ((128, 96), (256, 192), (512, 384)), args.repeats)

    n, (w, h), n_views = 5000, (128, 96), 16
    scene = room_scene(n)
    viewmats, Ks = orbit_cameras(n_views, w, h)
    rgb = [train_step_time(scene, viewmats[i : i + 1], Ks[i : i + 1], w, h, 3) for i in range(n_views)]
    rgb_wall, rgb_cpu = sum(t[0] for t in rgb), sum(t[1] for t in rgb)
    print(f"\nlabel lifting, {n_views} views {w}x{h}, {n} Gaussians; one forward+backward RGB render of every view: "
          f"{rgb_wall:.3f} s ({rgb_cpu:.3f})")
    for n_segments in (20, 200, 2000):
        labels = _block_labels(n_views, h, w, n_segments)
        wall, cpu = time_it(lambda: lift_segments(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                                                  viewmats, Ks, labels, LiftOptions(backend="torch")), 3)
        print(f"{n_segments:>5} segments: {wall:.3f} s ({cpu:.3f}); ratio to the RGB pass {wall / rgb_wall:.2f} "
              f"({cpu / rgb_cpu:.2f})")


def _visible(scene: dict, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int) -> int:
    """Gaussians with a non-zero radius in the first camera."""
    with torch.no_grad():
        _, _, info = rasterize(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
                               viewmats[:1], Ks[:1], width, height, backend="torch")
    return int((info["radii"] > 0).sum())


def _block_labels(n_views: int, height: int, width: int, n_segments: int, per_view: int = 30) -> torch.Tensor:
    """Label maps of 8x8-pixel blocks; each view shows up to `per_view` segments drawn from ids 1..n_segments,
    plus void (0): like panoptic maps, where a scene has many segments and a view shows a few dozen."""
    g = torch.Generator().manual_seed(1)
    maps = []
    for _ in range(n_views):
        ids = torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(n_segments, generator=g)[:per_view] + 1])
        coarse = ids[torch.randint(0, len(ids), (math.ceil(height / 8), math.ceil(width / 8)), generator=g)]
        maps.append(coarse.repeat_interleave(8, 0).repeat_interleave(8, 1)[:height, :width])
    return torch.stack(maps)


if __name__ == "__main__":
    main()
