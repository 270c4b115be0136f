"""The project's benchmark: one table of figures measured in one run on this machine, written as JSON and a plot.

    python benchmarks/run.py --json bench.json --plot bench.png     # the full run (minutes on 2 CPU cores)
    python benchmarks/run.py --quick                                # a smoke version (well under a minute)

Sections (each prints its table as soon as it is measured):

1. **Pipeline vs views** (8, 16, 32, 64 input views of a synthetic room at the built-in model's 192x144): wall
   time, CPU time and peak memory of each stage: predict + merge (`run_predict` with the built-in model), the merge
   alone (the model's default merge and QUBO, re-run on the stored logits), the fit (a fixed number of steps from
   the predictions; its training and lifting times apart) and the render of every input view.
2. **Predict + merge vs resolution** (8 views, long sides 128 to 384, 4:3 views so nothing is cropped).
3. **QUBO vs the official-style annealing** (`benchmarks/merge.py`'s `run_views`: the exact weights of the official
   loop vs ours, the official annealing vs our solver, energies on the same matrix).
4. **Lifting vs one render pass** (label lifting of 16 views against one forward + backward RGB render of each;
   the scene and cameras of `benchmarks/rasterize.py`).
5. **CPU rasteriser training steps per second vs Gaussians** (1k, 5k, 20k; 128x96 and 192x144; one thread and all
   cores): the compiled numba backend (the CPU default) and the plain-torch reference, timed alternately; plus the
   gsplat backend on CUDA.
6. **Compiled CPU rasteriser vs the reference** (`benchmarks/rasterize.py --compare` and `benchmarks/fit_step.py`):
   the cold compile time of the Numba kernels, single-view training steps at 5k/20k/100k Gaussians and
   128x96/256x192/512x384 (ratios pair by pair), whole demo fits (the demo's scene and settings) with each backend,
   and the time of a demo fit at the demo's step default.

On a CUDA machine sections 1 and 2 are measured on the GPU too (peak allocated GPU memory beside the RSS).
Peak memory is the process's resident-set peak during a stage (VmHWM, reset before each stage; see
`panst3r_splat.pipeline.jobs.demo.measure`), and the rise over the stage's starting RSS. The pipeline sections run with
`--threads` torch threads (1 by default, as the demo: on a busy 2-core machine a second thread costs far more than it
gains; section 5 shows both). Everything synthetic is generated here: the benchmark needs no data.

The JSON also names the machine (CPU, cores, torch, CUDA), the date and the load averages at the start and the end
of the run (other work on the machine slows every figure). `benchmarks/readme.py JSON README.md` renders it into the
README's performance section.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np

from panst3r_splat.pipeline.openmp import quiet_openmp_waits

quiet_openmp_waits()  # as the console command does, before torch loads OpenMP (pipeline/openmp.py)

import torch  # noqa: E402

from panst3r_splat.core.predictions import load_predictions
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene
from panst3r_splat.pipeline.jobs.demo.measure import Usage, machine_info, measure
from panst3r_splat.pipeline.jobs.demo.options import DEFAULT_FIT_STEPS, fit_conf_threshold, synth_resolution
from panst3r_splat.pipeline.stages.fit import FitOptions, fit_scene, inputs_from_predictions
from panst3r_splat.pipeline.stages.merge import merge_predictions
from panst3r_splat.pipeline.stages.predict import PredictOptions, run_predict
from panst3r_splat.pipeline.stages.render import RenderOptions, TrainCameras, render_scene
from panst3r_splat.splat.lifting import LiftOptions, lift_segments
from panst3r_splat.splat.train import TrainConfig

logger = logging.getLogger("benchmarks.run")

SEED = 1_000_001
"""The demo's held-out room."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run measures (the full run or the quick one)."""

    views: tuple[int, ...] = (8, 16, 32, 64)
    size: str = "default"
    """Long side of the views-sweep images ('default': the built-in model's)."""
    resolutions: tuple[int, ...] = (128, 192, 256, 384)
    resolution_views: int = 8
    fit_steps: int = 100
    merge_views: tuple[int, ...] = (8, 32)
    merge_queries: int = 200
    merge_mask_hw: tuple[int, int] = (192, 256)
    official_weights_max_views: int = 8
    """The official weight loop holds Q x V x H x W floats twice: above this many views it is skipped (memory)."""
    lift_views: int = 16
    lift_size: tuple[int, int] = (128, 96)
    lift_segments: tuple[int, ...] = (20, 200)
    raster_counts: tuple[int, ...] = (1000, 5000, 20000)
    raster_sizes: tuple[tuple[int, int], ...] = ((128, 96), (192, 144))
    compare_counts: tuple[int, ...] = (5000, 20000, 100000)
    compare_sizes: tuple[tuple[int, int], ...] = ((128, 96), (256, 192), (512, 384))
    fit_ratio_steps: int = 100
    """Steps of each whole fit timed with the compiled backend and the torch reference (section 6)."""
    demo_fit_steps: int = DEFAULT_FIT_STEPS
    repeats: int = 3


QUICK = Plan(views=(3, 4), size="64", resolutions=(64, 96), resolution_views=3, fit_steps=5, merge_views=(2,),
             merge_queries=60, merge_mask_hw=(48, 64), lift_views=4, lift_size=(64, 48), lift_segments=(20,),
             raster_counts=(2000,), raster_sizes=((64, 48),), compare_counts=(2000,), compare_sizes=((64, 48),),
             fit_ratio_steps=3, demo_fit_steps=5, repeats=1)


def sibling(name: str) -> ModuleType:
    """A benchmark script next to this one, loaded from its file (the folder is not a package)."""
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def usage_json(usage: Usage) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(usage).items()}


# ------------------------------------------------------------------------------------------------ pipeline stages


def synth_scene(folder: Path, views: int, width: int, height: int) -> Path:
    """A synthetic room with `views` input views (no held-out ones) written as a Panoptic Lifting scene."""
    config = SynthConfig(train_views=views, test_views=0, width=width, height=height)
    return write_scene(generate_scene(config, SEED), folder)


def pipeline_row(work: Path, views: int, long_side: int, plan: Plan, device: torch.device, *,
                 full: bool) -> dict[str, Any]:
    """Every stage on one synthetic scene; `full=False` measures predict + merge only."""
    width, height = synth_resolution(str(long_side))
    scene, usage = measure(lambda: synth_scene(work / "scene", views, width, height), device)
    row: dict[str, Any] = {"views": views, "width": width, "height": height, "device": str(device),
                           "synth": usage_json(usage)}
    predict = PredictOptions(size=str(width), device=device)  # the 4:3 bucket of that long side: no crop
    result, usage = measure(lambda: run_predict(scene, work / "pred", predict), device)
    row["predict_merge"] = usage_json(usage) | {"merge": result.merge, "segments": len(result.segments),
                                                "keyframes": len(result.predictions.keyframes)}
    if not full:
        return row
    pred = load_predictions(work / "pred")
    for name in dict.fromkeys((result.merge, "qubo")):
        merged, usage = measure(lambda: merge_predictions(pred, name, device=device), device)
        row[f"merge_{name}"] = usage_json(usage) | {"segments": len(merged.segments)}
    threshold, _ = fit_conf_threshold(pred.conf)
    inputs = inputs_from_predictions(work / "pred", conf_threshold=threshold)
    options = FitOptions(train=TrainConfig(steps=plan.fit_steps, progress=False))
    fit, usage = measure(lambda: fit_scene(inputs, work / "fit", options, device), device)
    row["fit"] = usage_json(usage) | {"steps": plan.fit_steps, "train_seconds": fit.seconds["train"],
                                      "lift_seconds": fit.seconds["lift"],
                                      "gaussians": len(fit.scene.gaussians) if fit.scene is not None else 0}
    render, usage = measure(lambda: render_scene(work / "fit", work / "render", TrainCameras(),
                                                 RenderOptions(video=False), device=device), device)
    row["render"] = usage_json(usage) | {"views": len(render.names), "seconds_per_view": render.seconds_per_view}
    return row


def pipeline_vs_views(plan: Plan, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    long_side = int(synth_resolution(plan.size)[0])
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        # A first predict pays one-off costs (file cache, lazy initialisation) that no size should be charged.
        logger.info("pipeline: warm-up on %s ...", device)
        pipeline_row(Path(work), min(plan.views), long_side, plan, device, full=False)
    for views in plan.views:
        logger.info("pipeline: %d views on %s ...", views, device)
        with tempfile.TemporaryDirectory(prefix="bench-") as work:
            rows.append(pipeline_row(Path(work), views, long_side, plan, device, full=True))
        logger.info("%s", json.dumps(rows[-1]))
    return rows


def predict_vs_resolution(plan: Plan, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for long_side in plan.resolutions:
        logger.info("predict: %d views at long side %d on %s ...", plan.resolution_views, long_side, device)
        with tempfile.TemporaryDirectory(prefix="bench-") as work:
            rows.append(pipeline_row(Path(work), plan.resolution_views, long_side, plan, device, full=False))
    return rows


# ------------------------------------------------------------------------------------------ merge, lift, raster


def merge_vs_official(plan: Plan) -> list[dict[str, Any]]:
    """`benchmarks/merge.py` rows (CPU, as the official solver runs)."""
    bench = sibling("merge")
    rows = []
    for views in plan.merge_views:
        logger.info("merge: QUBO vs official-style annealing, %d views ...", views)
        args = argparse.Namespace(queries=plan.merge_queries, mask_hw=list(plan.merge_mask_hw), seed=0,
                                  skip_official_weights=views > plan.official_weights_max_views,
                                  skip_official_solver=False)
        rows.append(bench.run_views(views, args, torch.device("cpu")))
    return rows


def lifting_vs_render(plan: Plan) -> dict[str, Any]:
    """Label lifting of `lift_views` views vs one forward + backward RGB render of each (CPU, torch backend)."""
    bench = sibling("rasterize")
    n, (w, h) = 5000, plan.lift_size
    scene = bench.room_scene(n)
    viewmats, Ks = bench.orbit_cameras(plan.lift_views, w, h)
    passes = [bench.train_step_time(scene, viewmats[i:i + 1], Ks[i:i + 1], w, h, plan.repeats)
              for i in range(plan.lift_views)]
    render_wall, render_cpu = sum(p[0] for p in passes), sum(p[1] for p in passes)
    out: dict[str, Any] = {"gaussians": n, "views": plan.lift_views, "width": w, "height": h,
                           "render_pass_seconds": render_wall, "render_pass_cpu_seconds": render_cpu, "lifting": []}
    for segments in plan.lift_segments:
        labels = bench._block_labels(plan.lift_views, h, w, segments)
        wall, cpu = bench.time_it(lambda: lift_segments(scene["means"], scene["quats"], scene["scales"],
                                                        scene["opacities"], viewmats, Ks, labels,
                                                        LiftOptions(backend="torch")), plan.repeats)
        out["lifting"].append({"segments": segments, "seconds": wall, "cpu_seconds": cpu,
                               "ratio_to_render_pass": wall / render_wall})
    return out


def rasteriser_steps(plan: Plan, cpu_threads: tuple[int, ...]) -> list[dict[str, Any]]:
    """Training steps per second (forward + backward of an L1 loss on one view) vs Gaussians, sizes and threads;
    on CUDA also through gsplat."""
    bench = sibling("rasterize")
    rows = []
    for n in plan.raster_counts:
        scene = bench.room_scene(n)
        for w, h in plan.raster_sizes:
            viewmats, Ks = bench.orbit_cameras(1, w, h)
            for threads in cpu_threads:
                with torch_threads(threads):  # both CPU backends alternately, so they see the same load
                    pair = bench.time_pair(bench.train_step(scene, viewmats, Ks, w, h, "torch"),
                                           bench.train_step(scene, viewmats, Ks, w, h, "numba"), plan.repeats)
                for backend, (wall, cpu) in zip(("torch", "numba"), pair):
                    rows.append({"gaussians": n, "width": w, "height": h, "device": "cpu", "threads": threads,
                                 "backend": backend, "seconds": wall, "cpu_seconds": cpu,
                                 "steps_per_second": 1 / wall})
            if torch.cuda.is_available():
                rows.append(gsplat_step(scene, viewmats, Ks, w, h, plan.repeats) | {"gaussians": n})
    return rows


def compiled_vs_reference(plan: Plan, threads: int) -> dict[str, Any]:
    """Section 6: cold compile, the backend comparison table (with `threads` torch threads and with one per core)
    and whole demo fits (`threads` torch threads)."""
    raster, fit_bench = sibling("rasterize"), sibling("fit_step")
    out: dict[str, Any] = {"threads": threads, "cold_compile": raster.cold_compile_seconds(), "steps": []}
    for n in dict.fromkeys((threads, os.cpu_count() or 1)):  # the pipeline's threads, then every core
        with torch_threads(n):
            out["steps"] += [row | {"threads": n} for row in
                             raster.compare_backends(plan.compare_counts, plan.compare_sizes, plan.repeats)]
    with torch_threads(threads):
        with tempfile.TemporaryDirectory(prefix="bench-fit-") as work:
            inputs = fit_bench.demo_inputs(Path(work))
            checkpoint = Path(work) / "train.ckpt"
            pairs = fit_bench.ratio(inputs, plan.fit_ratio_steps, 1, checkpoint)
            out["fit"] = {"steps": plan.fit_ratio_steps, "reference_seconds": pairs[0][0], "numba_seconds": pairs[0][1],
                          "ratio": pairs[0][0] / pairs[0][1]}
            seconds = fit_bench.fit(inputs, plan.demo_fit_steps, "numba", checkpoint)
            out["demo_fit"] = {"steps": plan.demo_fit_steps, "seconds": seconds,
                               "seconds_per_step": seconds / plan.demo_fit_steps}
    return out


def gsplat_step(scene: dict[str, torch.Tensor], viewmats: torch.Tensor, Ks: torch.Tensor, w: int, h: int,
                repeats: int) -> dict[str, Any]:
    """The same training step on CUDA through gsplat (synchronised timing)."""
    from panst3r_splat.splat.rasterize import rasterize

    device = torch.device("cuda")
    params = {k: v.to(device).clone().requires_grad_() for k, v in scene.items()}
    viewmats, Ks = viewmats.to(device), Ks.to(device)
    target = torch.rand(1, h, w, 3, device=device)

    def step() -> None:
        render, _, _ = rasterize(params["means"], params["quats"], params["scales"], params["opacities"],
                                 params["colors"], viewmats, Ks, w, h, backend="gsplat")
        (render - target).abs().mean().backward()
        torch.cuda.synchronize(device)

    step()
    start = time.perf_counter()
    for _ in range(max(repeats, 10)):
        step()
    seconds = (time.perf_counter() - start) / max(repeats, 10)
    return {"width": w, "height": h, "device": "cuda", "threads": None, "backend": "gsplat", "seconds": seconds,
            "cpu_seconds": None, "steps_per_second": 1 / seconds}


class torch_threads:
    """Run a block with `n` torch CPU threads (restored afterwards)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


# ----------------------------------------------------------------------------------------------------- output


def _stage_cells(row: dict[str, Any], key: str) -> str:
    u = row.get(key)
    if u is None:
        return f"{'-':>22}"
    gpu = f"/{u['cuda_peak_mb']:.0f}" if u.get("cuda_peak_mb") is not None else ""
    return f"{u['seconds']:>8.2f} {u['user_seconds'] + u['system_seconds']:>6.1f} {u['peak_rss_mb']:>5.0f}{gpu:<6}"


def format_pipeline(rows: list[dict[str, Any]], keys: tuple[str, ...], label: str) -> str:
    """One line per size: wall s, CPU s and peak MB (/GPU MB) of each stage."""
    head = f"{label:>12} {'device':<6}" + "".join(f"{k:>22}" for k in keys)
    sub = f"{'':>12} {'':<6}" + "".join(f"{'wall s  CPU s  peakMB':>22}" for _ in keys)
    lines = [head, sub]
    for r in rows:
        size = f"{r['views']} @{r['width']}x{r['height']}"
        lines.append(f"{size:>12} {r['device']:<6}" + "".join(f"{_stage_cells(r, k):>22}" for k in keys))
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, pipeline threads "
             f"{report['settings']['threads']}, OpenMP wait policy {m.get('omp_wait_policy', 'default')}"
             + (f", GPU {m['gpu']}" if "gpu" in m else ""), ""]
    views = report["pipeline_vs_views"]
    keys = tuple(k for k in ("synth", "predict_merge", "merge_standard_v2", "merge_qubo", "fit", "render")
                 if any(k in r for r in views))
    lines += ["1. pipeline vs views (fit: %d steps; render: every input view)" % report["settings"]["fit_steps"],
              format_pipeline(views, keys, "views"), ""]
    for r in views:
        if "fit" in r:
            lines.append(f"   {r['views']:>3} views on {r['device']}: fit train {r['fit']['train_seconds']:.1f} s, "
                         f"lift {r['fit']['lift_seconds']:.2f} s, render {r['render']['seconds_per_view']:.3f} s/view, "
                         f"{r['predict_merge']['segments']} segments, {r['predict_merge']['keyframes']} keyframes")
    lines += ["", "2. predict + merge vs resolution",
              format_pipeline(report["predict_vs_resolution"], ("predict_merge",), "views"), ""]
    bench = sibling("merge")
    lines += ["3. QUBO merge: ours vs the official-style weights and annealing (CPU)",
              bench.format_table(report["merge_qubo_vs_official"]), ""]
    lift = report["lifting_vs_render"]
    lines.append(f"4. lifting vs one render pass: {lift['views']} views {lift['width']}x{lift['height']}, "
                 f"{lift['gaussians']} Gaussians; RGB forward+backward of every view "
                 f"{lift['render_pass_seconds']:.3f} s")
    lines += [f"   {x['segments']:>5} segments: lifting {x['seconds']:.3f} s = {x['ratio_to_render_pass']:.2f}x the "
              "render pass" for x in lift["lifting"]]
    lines += ["", "5. rasteriser training steps per second (one view, forward + backward)",
              f"{'gaussians':>10} {'size':>9} {'device':<6} {'backend':<7} {'threads':>7} {'steps/s':>8} "
              f"{'wall s':>8} {'CPU s':>7}"]
    for r in report["rasteriser"]:
        cpu = f"{r['cpu_seconds']:.3f}" if r["cpu_seconds"] is not None else "-"
        lines.append(f"{r['gaussians']:>10} {r['width']:>4}x{r['height']:<4} {r['device']:<6} {r['backend']:<7} "
                     f"{str(r['threads'] or '-'):>7} {r['steps_per_second']:>8.2f} {r['seconds']:>8.3f} {cpu:>7}")
    comp = report["compiled_vs_reference"]
    lines += ["", f"6. compiled CPU rasteriser vs the torch reference ({comp['threads']} torch thread(s)); cold compile "
              f"{comp['cold_compile']['cold_first_call_seconds']:.1f} s",
              f"{'gaussians':>10} {'size':>9} {'threads':>7} {'reference s':>12} {'numba s':>9} {'ratio':>7} "
              f"{'ratio CPU':>9}"]
    lines += [f"{r['gaussians']:>10} {r['width']:>4}x{r['height']:<4} {r.get('threads', comp['threads']):>7} "
              f"{r['torch_seconds']:>12.4f} {r['numba_seconds']:>9.4f} {r['ratio']:>6.1f}x {r['ratio_cpu']:>8.1f}x"
              for r in comp["steps"]]
    fit, demo = comp["fit"], comp["demo_fit"]
    lines.append(f"   demo fit, {fit['steps']} steps: reference {fit['reference_seconds']:.1f} s, numba "
                 f"{fit['numba_seconds']:.1f} s ({fit['ratio']:.1f}x); demo fit of {demo['steps']} steps "
                 f"{demo['seconds']:.1f} s ({1e3 * demo['seconds_per_step']:.0f} ms/step)")
    lines.append(f"\ntotal benchmark time {report['seconds']:.0f} s")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Time vs views of the pipeline stages (log-log), one line style per device."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, Callable[[dict[str, Any]], Optional[float]]] = {
        "predict + merge": lambda r: r["predict_merge"]["seconds"],
        "merge (default) alone": lambda r: next((r[k]["seconds"] for k in r if k.startswith("merge_")
                                                 and k != "merge_qubo"), None),
        "merge (QUBO) alone": lambda r: r.get("merge_qubo", {}).get("seconds"),
        "fit: training": lambda r: r.get("fit", {}).get("train_seconds"),
        "fit: lifting": lambda r: r.get("fit", {}).get("lift_seconds"),
        "render every view": lambda r: r.get("render", {}).get("seconds"),
    }
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for device, style in (("cpu", "-o"), ("cuda", "--s")):
        rows = [r for r in report["pipeline_vs_views"] if r["device"].startswith(device)]
        for i, (name, get) in enumerate(series.items()):
            points = [(r["views"], get(r)) for r in rows if get(r) is not None]
            if points:
                x, y = zip(*points)
                ax.plot(x, y, style, color=f"C{i}", label=f"{name} ({device})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    views = sorted({r["views"] for r in report["pipeline_vs_views"]})
    ax.set_xticks(views, [str(v) for v in views])
    ax.minorticks_off()
    ax.set_xlabel("input views")
    ax.set_ylabel("seconds")
    m = report["machine"]
    ax.set_title(f"panst3r-splat stage times vs views\n{m['cpu']}, {m['cores']} cores, torch {m['torch']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------- main


def run(plan: Plan, threads: int) -> dict[str, Any]:
    """Every section, in one run."""
    start = time.perf_counter()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    report: dict[str, Any] = {"machine": machine_info(devices[-1]) | {"cuda": torch.cuda.is_available()},
                              "settings": dataclasses.asdict(plan) | {"threads": threads, "seed": SEED},
                              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "load_average": {"start": load_average()}}
    with torch_threads(threads):
        report["pipeline_vs_views"] = [r for d in devices for r in pipeline_vs_views(plan, d)]
        report["predict_vs_resolution"] = [r for d in devices for r in predict_vs_resolution(plan, d)]
        report["merge_qubo_vs_official"] = merge_vs_official(plan)
        report["lifting_vs_render"] = lifting_vs_render(plan)
    report["rasteriser"] = rasteriser_steps(plan, tuple(dict.fromkeys((1, torch.get_num_threads()))))
    report["compiled_vs_reference"] = compiled_vs_reference(plan, threads)
    report["seconds"] = time.perf_counter() - start
    report["load_average"]["end"] = load_average()
    return report


def load_average() -> Optional[list[float]]:
    """The 1-, 5- and 15-minute load averages (None where the OS has none): other work on the machine while it
    ran, which the timings include."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot of stage time vs views")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of every section")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the pipeline sections")
    parser.add_argument("--note", default=None,
                        help="a sentence about the conditions of the run, kept in the JSON (e.g. other work on the "
                             "machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    report = run(QUICK if args.quick else Plan(), args.threads)
    if args.note:
        report["note"] = args.note
    sys.stdout.write(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
        sys.stdout.write(f"figures written to {args.json}\n")
    if args.plot is not None:
        plot(report, args.plot)
        sys.stdout.write(f"plot written to {args.plot}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
