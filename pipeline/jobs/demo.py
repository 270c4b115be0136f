"""`panst3r-splat demo`: the main job end to end on the built-in defaults, every stage measured.

    result = run_demo(DemoOptions(out=Path("demo_out")))
    print(format_summary(result))

Synthetic mode (the default) chains the public stage functions:

    synth (generate_scene, write_scene)          -> OUT/data/              Panoptic Lifting scene, 8 input + 4 held-out
    predict + merge (run_predict)                -> OUT/predictions/       PanSt3R on the input views, merged panoptic
    fit (inputs_from_predictions, fit_scene)     -> OUT/scene/             labelled 3DGS (the `view` target)
    render held-out (render_scene, dataset:...)  -> OUT/renders/test/      novel views at the held-out cameras (*)
    render orbit (render_scene, orbit)           -> OUT/renders/orbit/     orbit frames + video.mp4
    fit + render under the scene's poses         -> OUT/posed/scene/, OUT/posed/renders/   the paper's protocol (**)
    eval (evaluate_folders)                      -> OUT/scores/            direct (predictions, train split) and
                                                                           lifted (renders, test split) scores, pose-
                                                                           free ("lifted") and posed ("lifted_posed")
    with --oracle: fit + render from ground truth -> OUT/oracle/scene/, OUT/oracle/renders/ (scored in OUT/scores/)

(*) A scene fitted from predictions is placed in the dataset's frame through the similarity between its predicted
input cameras and the dataset's; when the model's cameras admit none (a weak model), the input views are rendered
and scored instead, and the summary says so.
(**) The same predictions fitted under the scene's own cameras (`fit --poses dataset:OUT/data`: each view's local
pointmap scaled by image matches under those cameras, never from the scene's depth), so the held-out views are
rendered in the dataset's frame without any alignment: PanSt3R + LUDVIG as the paper evaluates it, a real novel-view
result while the model's own cameras improve.

`--images DIR` (a user's photos) runs predict + merge -> fit -> render orbit, with no ground truth and no scores.

Every stage writes a hidden partial folder next to its final one and renames it into place when it is complete, so
an interrupted run never leaves a half-written stage. Each finished stage folder holds `.stage.json`: a digest of
its settings and of the stages it read, and its measurements. A re-run reuses every stage whose digest is
unchanged (reporting the measurements of the run that made it), redoes the rest (a changed `--fit-steps` redoes
the fit and what follows), and `--overwrite` redoes everything. An interrupted fit resumes from its training
checkpoint (kept beside the partial folder, whose name carries the digest).

Measurements per stage: wall time, CPU time (user and system; the machine may be shared, CPU time is the steadier
figure), the process's peak resident set during the stage (`VmHWM` of /proc/self/status, reset before each stage
through /proc/self/clear_refs after freed heap memory is handed back to the OS; tracemalloc would miss torch's
allocations) and, on CUDA, the peak allocated GPU
memory (`torch.cuda.max_memory_allocated`). The demo runs with one torch CPU thread unless told otherwise
(`DEFAULT_THREADS` says why).
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import json
import logging
import os
import platform
import resource
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from panst3r_splat.core.atomic_io import swap_into_place
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.fingerprints import digest, file_listing

logger = logging.getLogger(__name__)

DEMO_SEED = 1_000_001
"""A held-out synthetic room (seeds from 1,000,000 up never enter model training) with six visible thing instances
of five classes (two chairs, two bags, a bed, a toilet) among twelve classes: repeats of a class, several things
and stuff, all in the eight input views."""
DEFAULT_VIEWS = 8
DEFAULT_TEST_VIEWS = 4
DEFAULT_FIT_STEPS = 1500
"""Fit steps of the default run, from a measured curve (`scripts/fit_steps_curve.py`, docs/fit_speed.md): held-out
PSNR under the scenes' poses on two rooms other than the demo's, 22.0 dB after 400 steps, 24.0 after 800, 24.4 after
1,500. With the vectorised CPU rasteriser the whole default run (two fits of 1,500 steps) took 3 min 50 s on a
shared 2-core machine whose other core trained a model (209 s of CPU), inside the 5-minute budget."""
DEFAULT_THREADS = 1
"""Torch CPU threads of the demo. Its tensors are small (192x144 views, tiles of 16x16 pixels), so a second thread
gains little, and on a machine whose cores are busy with other work the threads' fork/join waits cost far more:
measured on a shared 2-core machine, the default run took 27 s with one thread and over 5 minutes with two."""
DEFAULT_BUDGET = 5000
"""Initial Gaussians of the default run: the CPU rasteriser's step time grows with them, and a few thousand cover a
192x144 room in few steps."""
DEFAULT_ORBIT_FRAMES = 60
ORBIT_FPS = 15
SYNTH_ASPECT = (3, 4)
"""Height : width of the synthetic views: 4:3 is one of the model's aspect buckets, so no view is cropped."""
MIN_CONFIDENT_FRACTION = 0.1
"""When fewer predicted points than this share reach the fit's confidence threshold, the fit starts from the more
confident half of the points instead (a weak model's confidences can all sit near their floor of 1)."""

STAGE_FILE = ".stage.json"
MARKER_FILE = ".panst3r-splat-demo"
SUMMARY_JSON = "summary.json"
SUMMARY_TXT = "summary.txt"
DATA, PREDICTIONS, SCENE = "data", "predictions", "scene"
RENDERS_TEST, RENDERS_ORBIT, SCORES = "renders/test", "renders/orbit", "scores"
ORACLE_SCENE, ORACLE_RENDERS = "oracle/scene", "oracle/renders"
POSED_SCENE, POSED_RENDERS = "posed/scene", "posed/renders"
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class DemoOptions:
    """What `run_demo` does (see `commands.demo` for the command-line meaning of each field)."""

    out: Path
    """Output folder; every stage writes a sub-folder."""
    device: torch.device = torch.device("cpu")
    views: int = DEFAULT_VIEWS
    """Input views of the synthetic scene."""
    test_views: int = DEFAULT_TEST_VIEWS
    """Held-out views of the synthetic scene (the lifted scores and PSNR are measured on them)."""
    size: str = "default"
    """``default`` (the model's training long side), a long side in pixels, or (``--images`` only) ``native``."""
    seed: int = DEMO_SEED
    """Synthetic scene seed."""
    fit_steps: int = DEFAULT_FIT_STEPS
    budget: int = DEFAULT_BUDGET
    orbit_frames: int = DEFAULT_ORBIT_FRAMES
    merge: Optional[str] = None
    """Merge method; None: the model's default."""
    oracle: bool = False
    """Also fit, render and score from ground truth, as a reference for the splatting and lifting alone."""
    images: Optional[Path] = None
    """A user's photos instead of the synthetic scene: predict -> fit -> orbit, no scores."""
    overwrite: bool = False
    """Redo every stage even when a finished one with the same settings exists."""
    cameras: str = "auto"
    """Camera source of the predict stage (``predict --cameras``)."""
    threads: int = DEFAULT_THREADS
    """Torch CPU threads while the demo runs (0: leave torch's setting); restored afterwards."""


@dataclass(frozen=True)
class Usage:
    """Resources one stage used."""

    seconds: float
    """Wall-clock time."""
    user_seconds: float
    """CPU time in user mode, all threads."""
    system_seconds: float
    peak_rss_mb: float
    """Peak resident set of the process during the stage (the process-wide peak so far where it cannot be reset)."""
    rss_rise_mb: float
    """That peak minus the resident set at the start of the stage: the stage's own working memory."""
    cuda_peak_mb: Optional[float] = None
    """Peak allocated CUDA memory during the stage (CUDA runs only)."""


@dataclass(frozen=True)
class StageRecord:
    """One stage of a demo run."""

    key: str
    """Stable name (synth, predict, fit, render_test, render_orbit, posed_fit, posed_render, eval, oracle_fit,
    oracle_render)."""
    title: str
    folder: str
    """Output folder, relative to the demo's --out."""
    digest: str
    """Digest of the stage's settings and of the digests of the stages it read."""
    usage: Usage
    details: dict[str, Any] = field(default_factory=dict)
    """What the stage made (counts, scores, paths), JSON-ready."""
    reused: bool = False
    """Reused from an earlier run (its usage is that run's)."""


@dataclass(frozen=True)
class DemoResult:
    """Everything the summary reports."""

    out: Path
    mode: str
    """``synthetic`` or ``images``."""
    stages: tuple[StageRecord, ...]
    scores: dict[str, dict[str, Any]]
    """``direct``, ``lifted`` (pose-free), ``lifted_posed`` (the scene's poses) and (with --oracle) ``oracle``:
    PQ^scene, SQ, RQ, mIoU, PSNR, frames, split."""
    paths: dict[str, str]
    """What to look at: scene, renders, video, scores, summary."""
    view_command: str
    notes: tuple[str, ...]
    seconds: float
    """Wall time of this run (reused stages cost nothing)."""
    user_seconds: float
    machine: dict[str, Any]
    settings: dict[str, Any]


# ---------------------------------------------------------------------------------------------------- measuring


def _status_kb(key: str) -> Optional[int]:
    """A ``kB`` line of /proc/self/status (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc's ``malloc_trim``): the resident set at the start of a stage is
    then what is alive, not what earlier stages freed but the allocator kept, so each stage's peak is its own."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peaks then include memory kept from earlier stages
        pass


def _peak_rss_kb() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, kB elsewhere


def measure(fn: Callable[[], Any], device: torch.device) -> tuple[Any, Usage]:
    """Run ``fn`` once; its result and the resources it used (see the module docstring)."""
    _release_free_memory()
    _reset_peak_rss()
    rss_start = _status_kb("VmRSS") or _peak_rss_kb()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    usage_start = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = fn()
    cuda_peak = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20
    seconds = time.perf_counter() - start
    usage_end = resource.getrusage(resource.RUSAGE_SELF)
    peak = _peak_rss_kb()
    return result, Usage(seconds=seconds, user_seconds=usage_end.ru_utime - usage_start.ru_utime,
                         system_seconds=usage_end.ru_stime - usage_start.ru_stime, peak_rss_mb=peak / 1024,
                         rss_rise_mb=max(peak - rss_start, 0) / 1024, cuda_peak_mb=cuda_peak)


def threads_default() -> int:
    """Torch's own CPU thread count (what `--threads 0` keeps)."""
    return torch.get_num_threads()


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, torch version and threads, and the device: what the timings were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
                            "torch_threads": torch.get_num_threads(), "device": str(device),
                            "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ------------------------------------------------------------------------------------------------------ stages


def _digest(settings: dict[str, Any]) -> str:
    return digest(settings)


def _write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename (a reader never sees half a file)."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def _read_stage(folder: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((folder / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _record_from_json(data: dict[str, Any]) -> StageRecord:
    record = dict(data["record"])
    record["usage"] = Usage(**record["usage"])
    record["reused"] = True
    return StageRecord(**record)


def _clear_partials(final: Path, keep: Path, resume: bool) -> None:
    """Remove partial folders of this stage left by interrupted runs, and fit checkpoints other than the one of
    these settings (that one too unless `resume`)."""
    for path in final.parent.glob(f".partial-{final.name}-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in final.parent.glob(f"..partial-{final.name}-*.train.*"):
        if not (resume and path.name.startswith(f".{keep.name}.")):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Stage:
    key: str
    title: str
    folder: str
    settings: dict[str, Any]
    produce: Callable[[Path], dict[str, Any]]
    """Writes the stage into the given (new) folder; returns its details."""
    after: tuple[StageRecord, ...] = ()
    """Stages it reads (their digests enter its own)."""


def run_stage(stage: _Stage, options: DemoOptions, index: int, total: int) -> StageRecord:
    """Reuse the finished stage when its digest matches, else run it into a partial folder and swap it in."""
    final = Path(options.out) / stage.folder
    digest = _digest({"layout": LAYOUT_VERSION, "stage": stage.key, **stage.settings,
                      "after": [s.digest for s in stage.after]})
    partial = final.parent / f".partial-{final.name}-{digest}"
    previous = _read_stage(final)
    reuse = not options.overwrite and previous is not None and previous.get("digest") == digest
    if final.parent.is_dir():
        # An interrupted fit resumes only from inputs this run did not remake (a remade input may differ slightly).
        _clear_partials(final, keep=partial,
                        resume=not reuse and not options.overwrite and all(s.reused for s in stage.after))
    if reuse:
        logger.info("demo [%d/%d] %s: reusing %s (finished earlier with the same settings)", index, total,
                    stage.title, final)
        return _record_from_json(previous)
    final.parent.mkdir(parents=True, exist_ok=True)
    logger.info("demo [%d/%d] %s -> %s", index, total, stage.title, final)
    try:
        details, usage = measure(lambda: stage.produce(partial), options.device)
    except BaseException:
        # Never resumable itself (a fit resumes from the checkpoint beside it, which stays).
        shutil.rmtree(partial, ignore_errors=True)
        raise
    record = StageRecord(key=stage.key, title=stage.title, folder=stage.folder, digest=digest, usage=usage,
                         details=details)
    _write_json(partial / STAGE_FILE, {"digest": digest, "settings": stage.settings,
                                       "record": dataclasses.asdict(record)})
    swap_into_place(partial, final, f"{os.getpid()}-{digest}")
    logger.info("demo [%d/%d] %s: done in %.1f s (%.1f s CPU, peak %.0f MB)", index, total, stage.title,
                usage.seconds, usage.user_seconds + usage.system_seconds, usage.peak_rss_mb)
    return record


# ------------------------------------------------------------------------------------------------- what stages do


def model_long_side() -> int:
    """The built-in model's training long side (from the checkpoint's metadata, without loading the weights)."""
    from safetensors import safe_open

    from panst3r_splat.core.model.config import config_from_dict
    from panst3r_splat.pipeline.stages.predict import default_checkpoint_path

    path = default_checkpoint_path()
    if not path.is_file():
        raise UserError(f"the built-in model {path} is not installed; reinstall panst3r-splat (see README)")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
    return int(config_from_dict(json.loads(metadata["architecture"])).image_size)


def synth_resolution(size: str) -> tuple[int, int]:
    """(width, height) of the synthetic views: long side ``size`` (or the model's), the 4:3 bucket's short side."""
    from panst3r_splat.core.images import bucket_resolutions, select_resolution

    long_side = model_long_side() if size == "default" else _long_side(size)
    try:
        height, width = select_resolution(SYNTH_ASPECT[0], SYNTH_ASPECT[1], bucket_resolutions(long_side))
    except ValueError as err:
        raise UserError(f"--size {size}: {err}") from None
    return width, height


def _long_side(size: str) -> int:
    if not size.isdigit() or int(size) <= 0:
        raise UserError(f"--size must be 'default' or a long side in pixels (a multiple of 16, e.g. 192); got {size!r}"
                        + (" ('native' applies to --images only)" if size == "native" else ""))
    return int(size)


def _synth_stage(options: DemoOptions, width: int, height: int) -> _Stage:
    from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene

    config = SynthConfig(train_views=options.views, test_views=options.test_views, width=width, height=height)

    def produce(folder: Path) -> dict[str, Any]:
        scene = generate_scene(config, options.seed)
        write_scene(scene, folder)
        things = [i for i in scene.description["instances"] if i["visible"]]
        classes = sorted(set(np.unique(scene.semantics).tolist()) - {0})
        return {"seed": options.seed, "views": options.views, "test_views": options.test_views,
                "width": width, "height": height, "things": len(things), "classes": len(classes)}

    return _Stage("synth", "synth", DATA,
                  {"config": dataclasses.asdict(config), "seed": options.seed}, produce)


def _predict_stage(options: DemoOptions, source: Path, size: str, after: tuple[StageRecord, ...]) -> _Stage:
    from panst3r_splat.pipeline.stages.predict import PredictOptions, default_checkpoint_path, run_predict

    predict = PredictOptions(size=size, merge=options.merge, split="train", device=options.device,
                             cameras=options.cameras)  # type: ignore[arg-type]  # checked by run_predict
    checkpoint = default_checkpoint_path()

    def produce(folder: Path) -> dict[str, Any]:
        result = run_predict(source, folder, predict)
        pred = result.predictions
        void = float((pred.panoptic == 0).mean())
        V, H, W = pred.panoptic.shape
        return {"views": V, "width": W, "height": H, "merge": result.merge, "segments": len(result.segments),
                "things": sum(bool(s["isthing"]) for s in result.segments), "void_fraction": void,
                "keyframes": len(pred.keyframes), "camera_source": pred.camera_source,
                "cameras_connected": int(pred.camera_ok.sum())}

    settings = {"source": _source_fingerprint(Path(source), Path(options.out)), "size": size, "merge": options.merge,
                "cameras": options.cameras,
                "checkpoint": [str(checkpoint), checkpoint.stat().st_size if checkpoint.is_file() else None,
                               checkpoint.stat().st_mtime if checkpoint.is_file() else None]}
    return _Stage("predict", "predict + merge", PREDICTIONS, settings,
                  produce, after)


def _source_fingerprint(source: Path, out: Path) -> list[Any]:
    """What identifies the predict input: a stage of this run by its relative path (its digest covers it), a
    user's folder by its files' names, sizes and modification times (changed photos redo the predictions)."""
    try:
        return ["OUT", str(source.resolve().relative_to(out.resolve()))]
    except ValueError:
        pass
    return [str(source.resolve()), file_listing(source, recursive=False)]


def fit_conf_threshold(conf: np.ndarray) -> tuple[float, Optional[str]]:
    """The fit's point-confidence threshold: the `fit` default, or the median confidence when fewer than
    `MIN_CONFIDENT_FRACTION` of the points reach the default (then also a note saying so)."""
    from panst3r_splat.core.predictions import POINT_CONF_THRESHOLD

    if float((conf >= POINT_CONF_THRESHOLD).mean()) >= MIN_CONFIDENT_FRACTION:
        return POINT_CONF_THRESHOLD, None
    median = float(np.median(conf))
    note = (f"only {100 * float((conf >= POINT_CONF_THRESHOLD).mean()):.1f} % of the predicted points reach "
            f"confidence {POINT_CONF_THRESHOLD:g} (max {float(conf.max()):.6g}): the splats start from the more "
            f"confident half (threshold {median:.6g})")
    return median, note


def _fit_stage(options: DemoOptions, key: str, folder: str, source: Path, oracle: bool,
               after: tuple[StageRecord, ...], poses: Optional[Path] = None) -> _Stage:
    """Fit from ground truth (`oracle`), or from the predictions: under their own cameras, or (`poses`, a dataset
    scene) under that scene's cameras with the local pointmaps placed by multi-view consistency."""
    from panst3r_splat.pipeline.stages.fit import FitOptions, fit_scene, inputs_from_dataset, inputs_from_predictions
    from panst3r_splat.pipeline.stages.fit_resolution import DEFAULT_FIT_SIZE, at_photo_resolution
    from panst3r_splat.splat.train import TrainConfig

    fit = FitOptions(train=TrainConfig(steps=options.fit_steps), budget=options.budget)

    def produce(out: Path) -> dict[str, Any]:
        note = None
        if oracle:
            inputs = inputs_from_dataset(source, split="train")
            threshold = None
        else:
            with np.load(source / "predictions.npz", allow_pickle=False) as npz:
                threshold, note = fit_conf_threshold(npz["conf"])
            if note:
                logger.warning("fit: %s", note)
            inputs = inputs_from_predictions(source, conf_threshold=threshold, poses=poses)
            inputs = at_photo_resolution(inputs, source, DEFAULT_FIT_SIZE)  # the synthetic views: unchanged
        result = fit_scene(inputs, out, fit, options.device)
        info = result.scene.info if result.scene is not None else {}
        return {"steps": result.steps_done, "views": len(inputs.cameras), "points": len(inputs.points),
                "gaussians": len(result.scene.gaussians) if result.scene is not None else 0,
                "segments": len(inputs.legend), "segments_lifted": info.get("segments_lifted"),
                "final_loss": info.get("final_loss"), "conf_threshold": threshold, "note": note,
                "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
                "scales": inputs.source.get("poses", {}).get("scales")}

    title = ("fit (oracle, from ground truth)" if oracle else "fit (predictions, scene's poses)" if poses
             else "fit (from the predictions)")
    settings = {"fit": dataclasses.asdict(fit), "oracle": oracle, "poses": None if poses is None else "dataset"}
    return _Stage(key, title, folder, settings, produce, after)


def _render_stage(options: DemoOptions, key: str, folder: str, scene: Path, cameras: str,
                  after: tuple[StageRecord, ...]) -> _Stage:
    from panst3r_splat.pipeline.stages.render import (
        DatasetCameras, RenderOptions, TrainCameras, alignment_failure, parse_cameras, render_scene,
    )

    spec = parse_cameras(cameras, orbit_frames=options.orbit_frames)
    render = RenderOptions(fps=ORBIT_FPS)

    def produce(out: Path) -> dict[str, Any]:
        reason = alignment_failure(scene, spec.path) if isinstance(spec, DatasetCameras) else None
        if reason is not None:
            logger.warning("render: the held-out views cannot be placed in the scene (%s); rendering the input "
                           "views instead, so the lifted labels are scored on them", reason)
        summary = render_scene(scene, out, TrainCameras() if reason else spec, render, device=options.device)
        details: dict[str, Any] = {"views": len(summary.names), "void_fraction": summary.void_fraction,
                                   "seconds_per_view": summary.seconds_per_view,
                                   "split": "train" if reason else "test"}
        if reason:
            details["fallback"] = reason
            details.update(_input_view_psnr(out, spec.path))
        if summary.psnr:
            details["psnr"] = float(np.mean(list(summary.psnr.values())))
        if summary.alignment is not None:
            details["alignment"] = {"scale": summary.alignment.scale, "residual": summary.alignment.residual,
                                    "rotation_error_deg": summary.alignment.rotation_error_deg}
        if cameras == "orbit":
            details["video"] = str(Path(options.out) / folder / "video.mp4")
        return details

    what = "orbit + video" if cameras == "orbit" else "held-out views"
    tag = " (oracle)" if key.startswith("oracle") else " (scene's poses)" if key.startswith("posed") else ""
    title = f"render{tag} {what}"
    settings = {"cameras": cameras.replace(str(Path(options.out)), "OUT"), "render": dataclasses.asdict(render)}
    if cameras == "orbit":
        settings["orbit_frames"] = options.orbit_frames
    return _Stage(key, title, folder, settings, produce, after)


def _input_view_psnr(renders: Path, dataset: Path) -> dict[str, float]:
    """Mean PSNR of the renders of the input views against the dataset's images of the same frames (where the
    sizes agree: the synthetic views are not cropped), as `render` measures it at dataset cameras."""
    from panst3r_splat.pipeline.datasets.panoptic_lifting import read_panoptic_lifting
    from panst3r_splat.pipeline.stages.render import psnr

    data = read_panoptic_lifting(dataset, split="train", parts=("color",))
    scores = []
    for name, image in zip(data.frame_names, data.images):
        path = renders / "rgb" / f"{name}.png"
        if path.is_file():
            with Image.open(path) as f:
                rendered = np.asarray(f.convert("RGB"), dtype=np.float32) / 255.0
            if rendered.shape == image.shape:
                scores.append(psnr(rendered, image))
    return {"psnr": float(np.mean(scores))} if scores else {}


def _scores(report: Any) -> dict[str, Any]:
    return {"pq_scene": report.pq_scene.all.pq, "sq": report.pq_scene.all.sq, "rq": report.pq_scene.all.rq,
            "pq_things": report.pq_scene.things.pq, "pq_stuff": report.pq_scene.stuff.pq,
            "miou": report.miou.miou, "pq_per_view": report.pq_per_view.all.pq,
            "pred_void_fraction": report.pred_void_fraction, "frames": len(report.frames), "split": report.split}


def _eval_stage(options: DemoOptions, targets: dict[str, tuple[Path, str]], after: tuple[StageRecord, ...]
                ) -> _Stage:
    from panst3r_splat.pipeline.evaluation import evaluate_folders, format_table, report_to_json

    data = Path(options.out) / DATA

    def produce(out: Path) -> dict[str, Any]:
        out.mkdir(parents=True)
        scores = {}
        for name, (pred, split) in targets.items():
            report = evaluate_folders(data, pred, split=split)
            (out / f"{name}.txt").write_text(format_table(report))
            (out / f"{name}.json").write_text(json.dumps(report_to_json(report), indent=2) + "\n")
            scores[name] = _scores(report)
            logger.info("eval %s (%s split): PQ^scene %.3f, mIoU %.3f", name, split, scores[name]["pq_scene"],
                        scores[name]["miou"])
        return {"scores": scores}

    settings = {"targets": {k: [str(p.relative_to(options.out)), s] for k, (p, s) in targets.items()}}
    return _Stage("eval", "eval", SCORES, settings, produce, after)


# ------------------------------------------------------------------------------------------------------- running


def check_options(options: DemoOptions) -> None:
    """One-line errors for bad options and an unusable --out, before any work."""
    out = Path(options.out)
    for name, value, low in (("--views", options.views, 1), ("--fit-steps", options.fit_steps, 1),
                             ("--budget", options.budget, 1), ("--orbit-frames", options.orbit_frames, 2),
                             ("--seed", options.seed, 0), ("--threads", options.threads, 0)):
        if value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")
    if options.images is None and options.views < 3:
        raise UserError(f"--views must be at least 3 for the synthetic scene (the held-out cameras are aligned to the "
                        f"predicted frame through the input views), got {options.views}")
    if options.images is None and options.test_views < 1:
        raise UserError(f"--test-views must be at least 1 (the lifted scores are measured on them), got "
                        f"{options.test_views}")
    if options.images is not None:
        if options.oracle:
            raise UserError("--oracle needs the synthetic scene's ground truth; drop --images or --oracle")
        if not Path(options.images).exists():
            raise UserError(f"--images {options.images} does not exist: give a folder of your photos (or a video)")
    if options.merge is not None:
        from panst3r_splat.core.merging import MERGE_NAMES

        if options.merge not in MERGE_NAMES:
            raise UserError(f"unknown --merge {options.merge!r}; choose one of {', '.join(MERGE_NAMES)}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER_FILE).is_file():
        raise UserError(f"--out {out} exists and is not a demo folder; choose a new --out folder or empty it")


def _stages(options: DemoOptions) -> list[Callable[[list[StageRecord]], _Stage]]:
    """The stage builders of this run, in order; each gets the records of the stages before it."""
    out = Path(options.out)
    by = lambda done, *keys: tuple(r for r in done if r.key in keys)  # noqa: E731
    if options.images is not None:
        return [
            lambda done: _predict_stage(options, Path(options.images), options.size, ()),
            lambda done: _fit_stage(options, "fit", SCENE, out / PREDICTIONS, False, by(done, "predict")),
            lambda done: _render_stage(options, "render_orbit", RENDERS_ORBIT, out / SCENE, "orbit",
                                       by(done, "fit")),
        ]
    width, height = synth_resolution(options.size)
    test_cameras = f"dataset:{out / DATA}:test"
    stages = [
        lambda done: _synth_stage(options, width, height),
        lambda done: _predict_stage(options, out / DATA, str(width), by(done, "synth")),
        lambda done: _fit_stage(options, "fit", SCENE, out / PREDICTIONS, False, by(done, "predict")),
        lambda done: _render_stage(options, "render_test", RENDERS_TEST, out / SCENE, test_cameras,
                                   by(done, "synth", "fit")),
        lambda done: _render_stage(options, "render_orbit", RENDERS_ORBIT, out / SCENE, "orbit", by(done, "fit")),
    ]
    stages += [  # the paper's protocol: the predictions under the scene's own cameras
        lambda done: _fit_stage(options, "posed_fit", POSED_SCENE, out / PREDICTIONS, False,
                                by(done, "synth", "predict"), poses=out / DATA),
        lambda done: _render_stage(options, "posed_render", POSED_RENDERS, out / POSED_SCENE, test_cameras,
                                   by(done, "synth", "posed_fit")),
    ]
    if options.oracle:
        stages += [
            lambda done: _fit_stage(options, "oracle_fit", ORACLE_SCENE, out / DATA, True, by(done, "synth")),
            lambda done: _render_stage(options, "oracle_render", ORACLE_RENDERS, out / ORACLE_SCENE, test_cameras,
                                       by(done, "synth", "oracle_fit")),
        ]
    stages.append(lambda done: _eval_stage(options, _eval_targets(out, done),
                                           by(done, "synth", "predict", "render_test", "posed_render",
                                              "oracle_render")))
    return stages


def _eval_targets(out: Path, done: Sequence[StageRecord]) -> dict[str, tuple[Path, str]]:
    """Folders to score, with their split: the predictions on the input views, and the renders (of the held-out
    views, or of the input views where the held-out ones could not be aligned)."""
    targets = {"direct": (out / PREDICTIONS, "train")}
    names = {"render_test": "lifted", "posed_render": "lifted_posed", "oracle_render": "oracle"}
    for record in done:
        if record.key in names:
            targets[names[record.key]] = (out / record.folder, record.details.get("split", "test"))
    return targets


def run_demo(options: DemoOptions) -> DemoResult:
    """Run (or resume) every stage, write summary.json and summary.txt under --out, and return the result."""
    check_options(options)
    out = Path(options.out)
    builders = _stages(options)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).write_text("panst3r-splat demo output folder (stages are reused by a re-run)\n")
    start, cpu_start = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    records: list[StageRecord] = []
    threads = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        for index, build in enumerate(builders, start=1):
            records.append(run_stage(build(records), options, index, len(builders)))
    finally:
        torch.set_num_threads(threads)
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    result = _result(options, records, time.perf_counter() - start, cpu_end.ru_utime - cpu_start.ru_utime)
    _write_json(out / SUMMARY_JSON, result_to_json(result))
    text = format_summary(result)
    tmp = out / f".{SUMMARY_TXT}.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / SUMMARY_TXT)
    return result


def _result(options: DemoOptions, records: Sequence[StageRecord], seconds: float, user_seconds: float
            ) -> DemoResult:
    out = Path(options.out)
    by_key = {r.key: r for r in records}
    scores: dict[str, dict[str, Any]] = dict(by_key["eval"].details["scores"]) if "eval" in by_key else {}
    for name, key in (("lifted", "render_test"), ("lifted_posed", "posed_render"), ("oracle", "oracle_render")):
        if name in scores and "psnr" in by_key[key].details:
            scores[name] = {**scores[name], "psnr": by_key[key].details["psnr"]}
    paths = {"scene": str(out / SCENE), "orbit video": str(out / RENDERS_ORBIT / "video.mp4"),
             "orbit renders": str(out / RENDERS_ORBIT), "predictions": str(out / PREDICTIONS)}
    if options.images is None:
        paths = {"data": str(out / DATA), **paths, "held-out renders": str(out / RENDERS_TEST),
                 "scores": str(out / SCORES)}
    if options.images is None:
        paths["scene (poses)"] = str(out / POSED_SCENE)
        paths["renders (poses)"] = str(out / POSED_RENDERS)
    if options.oracle:
        paths["oracle scene"] = str(out / ORACLE_SCENE)
    paths["summary"] = str(out / SUMMARY_JSON)
    settings = {k: (str(v) if isinstance(v, (Path, torch.device)) else v)
                for k, v in dataclasses.asdict(options).items()}
    return DemoResult(out=out, mode="images" if options.images is not None else "synthetic", stages=tuple(records),
                      scores=scores, paths=paths, view_command=f"panst3r-splat view {shlex.quote(str(out / SCENE))}",
                      notes=tuple(_notes(options, by_key, scores)), seconds=seconds, user_seconds=user_seconds,
                      machine={**machine_info(options.device), "torch_threads": options.threads or threads_default()},
                      settings=settings)


def _notes(options: DemoOptions, by_key: dict[str, StageRecord], scores: dict[str, dict[str, Any]]) -> list[str]:
    """What a reader of the numbers should know (weak model, fallbacks, void pixels, seeds)."""
    from panst3r_splat.pipeline.datasets.synth import HELD_OUT_SEED_START
    from panst3r_splat.pipeline.stages.merge import VOID_WARNING_FRACTION

    notes = []
    if options.images is None and options.seed < HELD_OUT_SEED_START:
        notes.append(f"seed {options.seed} is in the training range (< {HELD_OUT_SEED_START}): the model may have "
                     "seen this room while training")
    predict = by_key["predict"].details
    if predict["void_fraction"] >= VOID_WARNING_FRACTION:
        notes.append(f"the {predict['merge']} merge left {100 * predict['void_fraction']:.1f} % of the input pixels "
                     "unassigned (void); they count against PQ^scene")
    for key in ("render_test", "posed_render", "oracle_render"):
        if key in by_key and by_key[key].details.get("fallback"):
            reason = by_key[key].details["fallback"]
            notes.append(f"the held-out views could not be placed in the fitted scene ({reason}): the lifted scores "
                         "and PSNR are measured on the input views instead")
    if by_key["fit"].details.get("note"):
        notes.append(by_key["fit"].details["note"])
    direct = scores.get("direct", {}).get("pq_scene")
    oracle = scores.get("oracle", {}).get("pq_scene")
    if direct is not None and direct < 0.5:
        gap = (f"the oracle row ({oracle:.3f} from ground-truth inputs) shows what the splatting and lifting reach"
               if oracle is not None else "run with --oracle to see what the splatting and lifting reach from "
               "ground-truth inputs")
        notes.append(f"direct PQ^scene is {direct:.3f} with {predict['segments']} merged segments: the built-in "
                     f"model is small and still being trained, and its segments bound the lifted scores; {gap}")
    if any(r.reused for r in by_key.values()):
        notes.append("stages marked 'reused' were finished by an earlier run with the same settings (their figures "
                     "are from that run); pass --overwrite to redo them")
    return notes


# ------------------------------------------------------------------------------------------------------- output


def _fmt(x: Optional[float], spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def _stage_comment(record: StageRecord) -> str:
    d = record.details
    if record.key == "synth":
        return (f"{d['views']} input + {d['test_views']} held-out views, {d['width']}x{d['height']}, "
                f"{d['things']} things")
    if record.key == "predict":
        return (f"{d['views']} views at {d['width']}x{d['height']}, {d['merge']}: {d['segments']} segments "
                f"({d['things']} things), {100 * d['void_fraction']:.1f} % void")
    if record.key in ("fit", "posed_fit", "oracle_fit"):
        return f"{d['steps']} steps, {d['gaussians']} Gaussians, {d['segments_lifted']}/{d['segments']} segments lifted"
    if record.key in ("render_test", "posed_render", "oracle_render", "render_orbit"):
        psnr = f", PSNR {d['psnr']:.2f} dB" if "psnr" in d else ""
        fallback = " (the input views: see notes)" if d.get("fallback") else ""
        return f"{d['views']} views{fallback}, {d['seconds_per_view']:.2f} s/view{psnr}"
    return ", ".join(f"{k} PQ {_fmt(v['pq_scene'])}" for k, v in d.get("scores", {}).items())


def format_summary(result: DemoResult) -> str:
    """The summary table: stages with time and memory, scores, paths, notes and the command to run next."""
    m = result.machine
    cuda = any(r.usage.cuda_peak_mb is not None for r in result.stages)
    lines = [f"panst3r-splat demo ({result.mode}) on {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
             f"(threads: {m['torch_threads']}), device {m['device']}{' (' + m['gpu'] + ')' if 'gpu' in m else ''}", ""]
    header = f"{'stage':<34}{'wall s':>8}{'CPU s':>8}{'peak MB':>9}{'rise MB':>9}" + (f"{'GPU MB':>8}" if cuda else "")
    lines += [header, "-" * len(header)]
    for r in result.stages:
        u = r.usage
        row = (f"{r.title[:33]:<34}{u.seconds:>8.1f}{u.user_seconds + u.system_seconds:>8.1f}"
               f"{u.peak_rss_mb:>9.0f}{u.rss_rise_mb:>9.0f}" + (f"{_fmt(u.cuda_peak_mb, '.0f'):>8}" if cuda else ""))
        lines.append(row + ("  reused" if r.reused else ""))
        lines.append(f"{'':4}{_stage_comment(r)} -> {Path(result.out) / r.folder}")
    total_wall = sum(r.usage.seconds for r in result.stages)
    total_cpu = sum(r.usage.user_seconds + r.usage.system_seconds for r in result.stages)
    lines += ["-" * len(header), f"{'total (all stages)':<34}{total_wall:>8.1f}{total_cpu:>8.1f}",
              f"this run: {result.seconds:.1f} s wall, {result.user_seconds:.1f} s user CPU"]
    if result.scores:
        lines += ["", f"{'scores':<34}{'PQ^scene':>9}{'SQ':>7}{'RQ':>7}{'mIoU':>7}{'PSNR dB':>9}  on"]
        labels = {"direct": "direct (PanSt3R predictions)", "lifted": "lifted, pose-free (model cameras)",
                  "lifted_posed": "lifted, scene's poses (paper)", "oracle": "oracle (splats from ground truth)"}
        for name, s in result.scores.items():
            where = (f"{s['frames']} input views (--split train)" if s["split"] == "train"
                     else f"{s['frames']} held-out views (--split test)")
            lines.append(f"{labels.get(name, name):<34}{_fmt(s['pq_scene']):>9}{_fmt(s['sq']):>7}{_fmt(s['rq']):>7}"
                         f"{_fmt(s['miou']):>7}{_fmt(s.get('psnr'), '.2f'):>9}  {where}")
    lines += ["", "written:"] + [f"  {k:<17}{v}" for k, v in result.paths.items()]
    if result.notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in result.notes]
    lines += ["", f"next: {result.view_command}"]
    return "\n".join(lines) + "\n"


def result_to_json(result: DemoResult) -> dict[str, Any]:
    """summary.json: every figure of the table, machine-readable."""
    data = dataclasses.asdict(result)
    data["out"] = str(result.out)
    data["stages"] = [dataclasses.asdict(r) for r in result.stages]
    data["scores"] = {k: {kk: (None if isinstance(vv, float) and np.isnan(vv) else vv) for kk, vv in v.items()}
                      for k, v in result.scores.items()}
    return data


__all__ = [
    "DEFAULT_BUDGET", "DEFAULT_FIT_STEPS", "DEFAULT_ORBIT_FRAMES", "DEFAULT_TEST_VIEWS", "DEFAULT_THREADS",
    "DEFAULT_VIEWS", "DEMO_SEED",
    "DemoOptions", "DemoResult", "StageRecord", "Usage", "check_options", "fit_conf_threshold", "format_summary",
    "machine_info", "measure", "model_long_side", "result_to_json", "run_demo", "run_stage", "synth_resolution",
]
