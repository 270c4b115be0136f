"""`panst3r-splat batch`: a folder of scenes fanned out as Ray tasks, resumable, with a summary in the paper's layout.

    result = run_batch(Path("data/replica"), Path("runs/replica"), BatchOptions(fit_steps=1500))

Every sub-folder of ROOT that is a Panoptic Lifting scene (or a folder of images) is one job, run in-process by
`run_scene` in a Ray task:

    predict (train split) -> fit -> render the test split (dataset: cameras) -> eval
                                     -> predict again on those renders ("render-then-predict") -> eval

and writes `OUT/<scene>/` (predictions/, scene/, renders/test/, render_predict/, scores/ as the single commands write
them, plus `scores.json`) through a partial folder renamed into place, so an interrupted job leaves nothing half
written. Scores: direct (the merged predictions on the input views, PanSt3R's own multi-view prediction), lifted
(the labels lifted onto the splats, rendered at the held-out cameras: "PanSt3R + LUDVIG" in the paper's Table 2) and
render-then-predict (PanSt3R on RGB rendered at the held-out cameras: the paper's "PanSt3R" row). A scene without
ground truth, or without a test split, is done with the scores it cannot have left null.

Resume: `scores.json` carries a fingerprint of the settings (checkpoint, cameras, poses, merge, size, fit steps,
budget) and of the scene's files; a scene whose fingerprint matches is not redone. Failures: a bad-input error
(`UserError`) is recorded at once (and kept for the same fingerprint, so a fixed scene is redone); worker crashes
and other exceptions are retried up to `max_retries` times by the driver; a scene past `timeout` seconds is
cancelled and recorded as failed. The driver caps the tasks in flight at what the cluster can run at once, so a
task's clock starts when it can start.

Ray: `ray.init()` starts a local instance on this machine's cores when no address is given (and is shut down at the
end); an address joins a running cluster (`ray start --head` / `ray start --address`), which must see ROOT and OUT at
the same paths and run the same panst3r-splat version. Each task declares `num_cpus` and pins torch's and the BLAS
libraries' threads to it, and asks for one GPU only where the cluster has GPUs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.fingerprints import digest, file_listing

logger = logging.getLogger(__name__)

SCORES_FILE = "scores.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
LOG_FILE = "log.txt"
PREDICTIONS, SCENE, RENDERS_TEST, RENDER_PREDICT, SCORES = (
    "predictions", "scene", "renders/test", "render_predict", "scores")
LAYOUT_VERSION = 1
"""Part of every fingerprint: a new layout of OUT/<scene>/ redoes every scene."""
SCORE_KEYS = ("pq_direct", "pq_lifted", "pq_render_predict", "miou_direct", "miou_lifted", "psnr", "seconds")
"""Per-scene numbers of summary.json (null where a scene cannot have them), averaged in its `mean`."""
POLL_SECONDS = 1.0
"""How often the driver checks the running tasks' clocks against the timeout."""

Poses = Literal["predicted", "dataset"]


@dataclass(frozen=True)
class BatchOptions:
    """Settings of a batch run (see `commands.BatchArgs` for the command-line meaning of each field)."""

    checkpoint: Optional[Path] = None
    """Model checkpoint; None: the built-in model."""
    merge: Optional[str] = None
    """Merge method; None: the checkpoint's default."""
    cameras: str = "auto"
    """Camera source of predict (``predict --cameras``)."""
    poses: Poses = "predicted"
    """``predicted``: fit on the predicted cameras and points (the paper's setting). ``dataset``: fit on the scene's
    own cameras and depth, with the predicted labels (isolates the labels from the predicted geometry)."""
    size: str = "default"
    """Model input size of predict (``predict --size``)."""
    fit_steps: int = 1500
    budget: int = 20_000
    """Initial Gaussians of the fit."""
    render_predict: bool = True
    """Also score the render-then-predict strategy."""
    num_cpus: int = 1
    """CPU cores each task declares (and pins its torch / BLAS threads to)."""
    max_retries: int = 1
    """Extra attempts after a worker crash or an unexpected exception (not after bad input or a timeout)."""
    timeout: Optional[float] = None
    """Seconds a scene may run (per attempt) before it is cancelled and recorded as failed."""
    address: Optional[str] = None
    """Ray cluster address; None: a local instance on this machine (or the one this process already runs)."""
    progress: bool = True


def job_settings(options: BatchOptions) -> dict[str, Any]:
    """What a scene's results depend on (the fingerprint's settings part); the checkpoint by name, size and date."""
    checkpoint = options.checkpoint
    if checkpoint is None:
        from panst3r_splat.pipeline.stages.predict import default_checkpoint_path

        checkpoint = default_checkpoint_path()
    stat = Path(checkpoint).stat() if Path(checkpoint).is_file() else None
    return {"layout": LAYOUT_VERSION, "checkpoint": [Path(checkpoint).name, stat.st_size if stat else None,
                                                     stat.st_mtime_ns if stat else None],
            "cameras": options.cameras, "poses": options.poses, "merge": options.merge, "size": options.size,
            "fit_steps": options.fit_steps, "budget": options.budget, "render_predict": options.render_predict}


def source_fingerprint(scene: Path) -> str:
    """Digest of the names, sizes and modification times of every file of the scene (a changed file redoes it)."""
    return digest(file_listing(Path(scene)))


def fingerprint(settings: dict[str, Any], source: str) -> str:
    return digest([settings, source])


# ------------------------------------------------------------------------------------------------------ scenes


def find_scenes(root: Path) -> list[Path]:
    """The sub-folders of ROOT that are jobs: Panoptic Lifting scenes (splits.json or color/) or image folders.

    Hidden folders and folders with neither are skipped (logged)."""
    from panst3r_splat.core.images import IMAGE_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--scenes {root} is not a folder; give a folder whose sub-folders are scenes")
    scenes = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (sub / "splits.json").exists() or (sub / "color").is_dir() or any(
                p.suffix.lower() in IMAGE_EXTENSIONS for p in sub.iterdir() if p.is_file()):
            scenes.append(sub)
        else:
            logger.info("batch: skipping %s (neither a Panoptic Lifting scene nor a folder of images)", sub)
    if not scenes:
        raise UserError(f"--scenes {root} has no scene sub-folders (Panoptic Lifting scenes or folders of images)")
    return scenes


def _has_split(scene: Path, split: str) -> bool:
    try:
        return bool(json.loads((scene / "splits.json").read_text()).get(split))
    except (OSError, ValueError, AttributeError):
        return False


def _has_ground_truth(scene: Path) -> bool:
    return (scene / "splits.json").is_file() and (scene / "rs_semantics").is_dir() and (scene / "rs_instance").is_dir()


# ----------------------------------------------------------------------------------------------- one scene's job


def _scores(report: Any) -> dict[str, Any]:
    return {"pq_scene": report.pq_scene.all.pq, "sq": report.pq_scene.all.sq, "rq": report.pq_scene.all.rq,
            "pq_things": report.pq_scene.things.pq, "pq_stuff": report.pq_scene.stuff.pq, "miou": report.miou.miou,
            "frames": len(report.frames), "split": report.split}


def _evaluate(gt: Path, pred: Path, split: str, out: Path, name: str) -> dict[str, Any]:
    from panst3r_splat.pipeline.evaluation import evaluate_folders, format_table, report_to_json

    report = evaluate_folders(gt, pred, split=split)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.txt").write_text(format_table(report))
    (out / f"{name}.json").write_text(json.dumps(report_to_json(report), indent=2) + "\n")
    return _scores(report)


@dataclass(frozen=True)
class SceneJob:
    """One scene's job, as a Ray task receives it (plain values only)."""

    scene: str
    out: str
    """OUT/<scene>: where its results go."""
    options: dict[str, Any]
    """`BatchOptions` as a dict (paths as strings)."""
    fingerprint: str
    attempt: int = 1


def _options(job: SceneJob) -> BatchOptions:
    values = dict(job.options)
    values["checkpoint"] = Path(values["checkpoint"]) if values.get("checkpoint") else None
    return BatchOptions(**values)


def run_scene(job: SceneJob) -> dict[str, Any]:
    """Run one scene's job into a partial folder, write `scores.json`, swap it into place; return the scores.

    A bad-input error is returned as a failed result (it would fail again); anything else propagates (the driver
    retries it)."""
    from panst3r_splat.core.atomic_io import swap_into_place
    from panst3r_splat.pipeline.devices import pin_threads

    options = _options(job)
    pin_threads(options.num_cpus)
    out = Path(job.out)
    partial = out.parent / f".partial-{out.name}-{job.fingerprint}"
    shutil.rmtree(partial, ignore_errors=True)  # a crashed attempt's leftovers: start afresh
    partial.mkdir(parents=True)
    handler = logging.FileHandler(partial / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root_logger = logging.getLogger()
    root_logger.addHandler(handler)
    root_logger.setLevel(min(root_logger.level or logging.INFO, logging.INFO))
    start = time.perf_counter()
    record: dict[str, Any] = {"name": out.name, "scene": job.scene, "fingerprint": job.fingerprint,
                              "settings": job.options, "attempt": job.attempt}
    try:
        try:
            record.update(status="done", reason=None, **_stages(Path(job.scene), partial, options))
        except UserError as err:
            logger.error("batch: %s failed: %s", out.name, err)
            for sub in (PREDICTIONS, SCENE, "renders", RENDER_PREDICT, SCORES):
                shutil.rmtree(partial / sub, ignore_errors=True)
            record.update(status="failed", reason=str(err).splitlines()[0] if str(err) else type(err).__name__,
                          retry=False)
        record["seconds"] = time.perf_counter() - start
        (partial / SCORES_FILE).write_text(json.dumps(record, indent=1, default=str) + "\n")
    finally:
        root_logger.removeHandler(handler)
        handler.close()
    swap_into_place(partial, out, f"{os.getpid()}-{job.fingerprint}")
    return record


def _stages(scene: Path, out: Path, options: BatchOptions) -> dict[str, Any]:
    """predict -> fit -> render test -> eval (-> render-then-predict -> eval) into `out`; the scores."""
    import numpy as np

    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.stages.fit import FitOptions, fit_scene, inputs_from_predictions
    from panst3r_splat.pipeline.stages.predict import PredictOptions, is_panoptic_lifting_scene, run_predict
    from panst3r_splat.pipeline.stages.render import DatasetCameras, RenderOptions, alignment_failure, render_scene
    from panst3r_splat.pipeline.stages.render_predict import render_then_predict
    from panst3r_splat.splat.train import TrainConfig

    device = resolve_device("auto")
    predict = PredictOptions(checkpoint=options.checkpoint, size=options.size, merge=options.merge, split="train",
                             device=device, cameras=options.cameras)  # type: ignore[arg-type]  # checked there
    panli = is_panoptic_lifting_scene(scene)
    gt = panli and _has_ground_truth(scene)
    test = panli and _has_split(scene, "test")
    if options.poses == "dataset" and not panli:
        raise UserError(f"--poses dataset needs Panoptic Lifting scenes with cameras; {scene} is a folder of images")
    scores: dict[str, Any] = {key: None for key in SCORE_KEYS if key != "seconds"}
    notes: list[str] = []
    predicted = run_predict(scene, out / PREDICTIONS, predict)
    if gt:
        direct = _evaluate(scene, out / PREDICTIONS, "train", out / SCORES, "direct")
        scores.update(pq_direct=direct["pq_scene"], miou_direct=direct["miou"])
    fit = FitOptions(train=dataclasses.replace(TrainConfig(), steps=options.fit_steps), budget=options.budget)
    # --poses dataset: the paper's protocol, the local pointmaps placed under the scene's own cameras with scales from
    # multi-view consistency (`fit --poses dataset:SCENE`, never the scene's depth).
    inputs = inputs_from_predictions(out / PREDICTIONS, poses=scene if options.poses == "dataset" else None)
    fit_scene(inputs, out / SCENE, fit, device)
    if not test:
        notes.append("no test split: lifted, render-then-predict and PSNR scores are null" if panli
                     else "a folder of images: no ground truth, no scores")
        return {**scores, "notes": notes, "merge": predicted.merge}
    reason = alignment_failure(out / SCENE, scene)
    if reason is not None:
        notes.append(f"the held-out views cannot be placed in the fitted scene ({reason}): lifted, "
                     "render-then-predict and PSNR scores are null")
        return {**scores, "notes": notes, "merge": predicted.merge}
    rendered = render_scene(out / SCENE, out / RENDERS_TEST, DatasetCameras(scene, "test"), RenderOptions(),
                            device=device)
    if rendered.psnr:
        scores["psnr"] = float(np.mean(list(rendered.psnr.values())))
    if gt:
        lifted = _evaluate(scene, out / RENDERS_TEST, "test", out / SCORES, "lifted")
        scores.update(pq_lifted=lifted["pq_scene"], miou_lifted=lifted["miou"])
    if options.render_predict:
        try:  # the second strategy may not apply (e.g. one test view with --cameras matches): the rest stands
            render_then_predict(out / RENDERS_TEST, out / RENDER_PREDICT, predict)
        except UserError as err:
            notes.append(f"render-then-predict: {err}")
            return {**scores, "notes": notes, "merge": predicted.merge}
        if gt:
            scores["pq_render_predict"] = _evaluate(scene, out / RENDER_PREDICT, "test", out / SCORES,
                                                    "render_predict")["pq_scene"]
    return {**scores, "notes": notes, "merge": predicted.merge}


# ------------------------------------------------------------------------------------------------------ driver


@dataclass
class SceneOutcome:
    """A scene's line of the summary."""

    name: str
    status: str
    """``done`` or ``failed``."""
    reason: Optional[str] = None
    scores: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    attempts: int = 0


@dataclass(frozen=True)
class BatchResult:
    out: Path
    scenes: tuple[SceneOutcome, ...]
    settings: dict[str, Any]

    @property
    def failed(self) -> tuple[SceneOutcome, ...]:
        return tuple(s for s in self.scenes if s.status != "done")


def _read_scores(folder: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((folder / SCORES_FILE).read_text())
    except (OSError, ValueError):
        return None


def _one_line(err: BaseException) -> str:
    """A one-line reason: the task's own exception (inside Ray's wrapper), its type and first line."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _ray_session(address: Optional[str]) -> bool:
    """Connect to Ray (starting a local instance without an address); True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    for attempt in (1, 2):  # a local start gives its raylet 30 s to register; a very busy machine can miss that once
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return True
        except ConnectionError as err:
            raise UserError(f"cannot reach the Ray cluster at --address {address} ({err}); start it with `ray start "
                            "--head` or drop --address for a local run") from None
        except Exception as err:  # noqa: BLE001  # Ray raises a bare Exception when its node times out at start-up
            ray.shutdown()
            if attempt == 2:
                raise UserError(f"Ray could not start ({_one_line(err)}); try again when the machine is less busy, "
                                "or join a running cluster with --address") from None
            logger.warning("batch: Ray did not start (%s); trying once more", _one_line(err))
    return True


def _capacity(num_cpus: int) -> tuple[int, int]:
    """(tasks the cluster can run at once, GPUs per task)."""
    import ray

    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", 0))
    if cpus < num_cpus:
        raise UserError(f"--num-cpus {num_cpus} is more than the Ray cluster has ({cpus} CPUs); lower --num-cpus")
    gpus = int(resources.get("GPU", 0))
    slots = cpus // num_cpus
    return (min(slots, gpus), 1) if gpus else (slots, 0)


def check_options(options: BatchOptions) -> None:
    for name, value, low in (("--fit-steps", options.fit_steps, 1), ("--budget", options.budget, 1),
                             ("--num-cpus", options.num_cpus, 1), ("--max-retries", options.max_retries, 0)):
        if value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")
    if options.timeout is not None and options.timeout <= 0:
        raise UserError(f"--timeout must be a positive number of seconds, got {options.timeout}")
    if options.poses not in ("predicted", "dataset"):
        raise UserError(f"--poses must be predicted or dataset, got {options.poses!r}")
    if options.checkpoint is not None and not Path(options.checkpoint).is_file():
        raise UserError(f"--checkpoint {options.checkpoint} is not a file; give a .pth or .safetensors checkpoint")


def run_batch(root: Path, out: Path, options: BatchOptions,
              job_fn: Callable[[SceneJob], dict[str, Any]] = run_scene) -> BatchResult:
    """Run (or resume) every scene of ROOT on Ray, write OUT/summary.json and OUT/summary.md, return the result.

    `job_fn` is what each task runs (default `run_scene`; tests wrap it)."""
    check_options(options)
    out = Path(out)
    scenes = find_scenes(Path(root))
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    out.mkdir(parents=True, exist_ok=True)
    settings = job_settings(options)
    plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()}
    outcomes: dict[str, SceneOutcome] = {}
    todo: list[SceneJob] = []
    for scene in scenes:
        digest = fingerprint(settings, source_fingerprint(scene))
        previous = _read_scores(out / scene.name)
        if previous is not None and previous.get("fingerprint") == digest:
            outcomes[scene.name] = SceneOutcome(scene.name, previous["status"], previous.get("reason"),
                                                _pick_scores(previous), reused=True, attempts=0)
            continue
        todo.append(SceneJob(scene=str(scene.resolve()), out=str((out / scene.name).resolve()), options=plain,
                             fingerprint=digest))
    logger.info("batch: %d scenes, %d to do, %d finished earlier with the same settings", len(scenes), len(todo),
                len(scenes) - len(todo))
    if todo:
        for outcome in _run_on_ray(todo, options, job_fn):
            outcomes[outcome.name] = outcome
    result = BatchResult(out=out, scenes=tuple(outcomes[s.name] for s in scenes), settings=settings)
    write_summary(result, options)
    return result


def _pick_scores(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in SCORE_KEYS}


def _run_on_ray(todo: Sequence[SceneJob], options: BatchOptions, job_fn: Callable[[SceneJob], dict[str, Any]]
                ) -> list[SceneOutcome]:
    """Submit the jobs (at most as many in flight as the cluster runs at once), retry, time out, collect."""
    import ray
    from tqdm.auto import tqdm

    started_here = _ray_session(options.address)
    try:
        slots, gpus = _capacity(options.num_cpus)
        task = ray.remote(job_fn).options(num_cpus=options.num_cpus, num_gpus=gpus, max_retries=0,
                                          retry_exceptions=False)
        queue = list(todo)
        running: dict[Any, tuple[SceneJob, float]] = {}
        outcomes: list[SceneOutcome] = []
        bar = tqdm(total=len(todo), desc="scenes", unit="scene", disable=not options.progress)
        while queue or running:
            while queue and len(running) < max(slots, 1):
                job = queue.pop(0)
                running[task.remote(job)] = (job, time.monotonic())
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                job, _ = running.pop(ref)
                outcome, retry = _collect(ref, job, options)
                if retry is not None:
                    queue.insert(0, retry)
                    continue
                outcomes.append(outcome)
                bar.update(1)
                bar.set_postfix_str(f"{outcome.name}: {outcome.status}")
            if options.timeout is not None:
                now = time.monotonic()
                for ref, (job, since) in list(running.items()):
                    if now - since > options.timeout:
                        ray.cancel(ref, force=True)
                        running.pop(ref)
                        logger.warning("batch: %s timed out after %g s; cancelled", Path(job.out).name,
                                       options.timeout)
                        outcomes.append(SceneOutcome(Path(job.out).name, "failed",
                                                     f"timed out after {options.timeout:g} s (--timeout)",
                                                     attempts=job.attempt))
                        bar.update(1)
        bar.close()
        return outcomes
    finally:
        if started_here:
            ray.shutdown()


def _collect(ref: Any, job: SceneJob, options: BatchOptions) -> tuple[Optional[SceneOutcome], Optional[SceneJob]]:
    """The outcome of a finished task, or the job to try again."""
    import ray

    name = Path(job.out).name
    try:
        record = ray.get(ref)
    except Exception as err:  # noqa: BLE001  # a crashed worker (RayError) or an unexpected exception in the task
        reason = _one_line(err)
        if job.attempt <= options.max_retries:
            logger.warning("batch: %s, attempt %d failed (%s); retrying", name, job.attempt, reason)
            return None, dataclasses.replace(job, attempt=job.attempt + 1)
        logger.error("batch: %s failed after %d attempts: %s", name, job.attempt, reason)
        return SceneOutcome(name, "failed", reason, attempts=job.attempt), None
    return SceneOutcome(name, record["status"], record.get("reason"), _pick_scores(record),
                        attempts=job.attempt), None


# ------------------------------------------------------------------------------------------------------ summary


def _mean(outcomes: Sequence[SceneOutcome]) -> dict[str, Any]:
    mean: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for key in SCORE_KEYS:
        values = [o.scores[key] for o in outcomes if o.status == "done" and _finite(o.scores.get(key))]
        mean[key] = sum(values) / len(values) if values else None
        counts[key] = len(values)
    mean["count"] = sum(o.status == "done" for o in outcomes)
    mean["counts"] = counts
    return mean


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def summary_json(result: BatchResult, options: BatchOptions) -> dict[str, Any]:
    """OUT/summary.json: engine, settings, one entry per scene, means over the scenes that have each number."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()}
    scenes = []
    for o in result.scenes:
        entry = {"name": o.name, "status": o.status, "reason": o.reason}
        entry.update({key: (o.scores.get(key) if _finite(o.scores.get(key)) else None) for key in SCORE_KEYS})
        entry["reused"] = o.reused
        entry["attempts"] = o.attempts
        scenes.append(entry)
    return {"engine": "ray", "settings": settings, "scenes": scenes, "mean": _mean(result.scenes)}


def _cell(x: Any, spec: str = ".1f", scale: float = 100.0) -> str:
    return format(x * scale, spec) if _finite(x) else "-"


def summary_markdown(data: dict[str, Any]) -> str:
    """OUT/summary.md: the paper's Table 2 layout (PQ^scene x 100 per strategy), then one row per scene."""
    mean, counts = data["mean"], data["mean"]["counts"]
    lines = ["# panst3r-splat batch", "",
             f"{mean['count']} of {len(data['scenes'])} scenes done; means over the scenes that have each number "
             "(n). PQ^scene and mIoU x 100, as the paper reports them.", "",
             "| method | views | PQ^scene | mIoU | n |", "|---|---|---|---|---|",
             f"| PanSt3R (direct multi-view prediction) | input | {_cell(mean['pq_direct'])} | "
             f"{_cell(mean['miou_direct'])} | {counts['pq_direct']} |",
             f"| PanSt3R (render-then-predict) | test | {_cell(mean['pq_render_predict'])} | - | "
             f"{counts['pq_render_predict']} |",
             f"| PanSt3R + LUDVIG (lifted) | test | {_cell(mean['pq_lifted'])} | {_cell(mean['miou_lifted'])} | "
             f"{counts['pq_lifted']} |", "",
             "| scene | status | PQ direct | PQ render-then-predict | PQ lifted | mIoU direct | mIoU lifted | PSNR dB "
             "| seconds | reason |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in data["scenes"]:
        reason = (s["reason"] or "").replace("|", "/")
        lines.append(f"| {s['name']} | {s['status']} | {_cell(s['pq_direct'])} | {_cell(s['pq_render_predict'])} | "
                     f"{_cell(s['pq_lifted'])} | {_cell(s['miou_direct'])} | {_cell(s['miou_lifted'])} | "
                     f"{_cell(s['psnr'], '.2f', 1.0)} | {_cell(s['seconds'], '.0f', 1.0)} | {reason} |")
    lines.append(f"| **mean** | | {_cell(mean['pq_direct'])} | {_cell(mean['pq_render_predict'])} | "
                 f"{_cell(mean['pq_lifted'])} | {_cell(mean['miou_direct'])} | {_cell(mean['miou_lifted'])} | "
                 f"{_cell(mean['psnr'], '.2f', 1.0)} | {_cell(mean['seconds'], '.0f', 1.0)} | |")
    return "\n".join(lines) + "\n"


def write_summary(result: BatchResult, options: BatchOptions) -> None:
    """Write summary.json and summary.md through temporary files and renames."""
    from panst3r_splat.core.atomic_io import atomic_output

    data = summary_json(result, options)
    with atomic_output(result.out / SUMMARY_JSON) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
    with atomic_output(result.out / SUMMARY_MD) as tmp:
        tmp.write_text(summary_markdown(data))
    logger.info("batch: %d done, %d failed; summary in %s", data["mean"]["count"], len(result.failed),
                result.out / SUMMARY_MD)


__all__ = [
    "BatchOptions", "BatchResult", "SceneJob", "SceneOutcome", "find_scenes", "fingerprint", "job_settings",
    "run_batch", "run_scene",
    "source_fingerprint", "summary_json", "summary_markdown", "write_summary",
]
