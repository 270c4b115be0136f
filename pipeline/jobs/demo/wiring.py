"""The stages of a demo run, wired from the public stage functions (`stages/`, `datasets/synth`, `evaluation/`):
each `_*_stage` builds a `cache.Stage` whose `produce` writes the stage's folder and returns its details; `_stages`
lists them in order for the mode (synthetic, with --oracle, or --images); `run_demo` runs them through the cache
and writes the summary (see the package docstring)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from panst3r_splat.pipeline.fingerprints import file_listing
from panst3r_splat.pipeline.jobs.demo.cache import Stage, StageRecord, run_stage, write_json
from panst3r_splat.pipeline.jobs.demo.options import (
    DATA, MARKER_FILE, ORACLE_RENDERS, ORACLE_SCENE, ORBIT_FPS, POSED_RENDERS, POSED_SCENE, PREDICTIONS,
    RENDERS_ORBIT, RENDERS_TEST, SCENE, SCORES, SUMMARY_JSON, SUMMARY_TXT, DemoOptions, check_options,
    fit_conf_threshold, synth_resolution,
)
from panst3r_splat.pipeline.jobs.demo.report import DemoResult, demo_result, format_summary, result_to_json

logger = logging.getLogger(__name__)


def _synth_stage(options: DemoOptions, width: int, height: int) -> Stage:
    from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene

    config = SynthConfig(train_views=options.views, test_views=options.test_views, width=width, height=height)

    def produce(folder: Path) -> dict[str, Any]:
        scene = generate_scene(config, options.seed)
        write_scene(scene, folder)
        things = [i for i in scene.description["instances"] if i["visible"]]
        classes = sorted(set(np.unique(scene.semantics).tolist()) - {0})
        return {"seed": options.seed, "views": options.views, "test_views": options.test_views,
                "width": width, "height": height, "things": len(things), "classes": len(classes)}

    return Stage("synth", "synth", DATA,
                  {"config": dataclasses.asdict(config), "seed": options.seed}, produce)


def _predict_stage(options: DemoOptions, source: Path, size: str, after: tuple[StageRecord, ...]) -> Stage:
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
    return Stage("predict", "predict + merge", PREDICTIONS, settings,
                  produce, after)


def _source_fingerprint(source: Path, out: Path) -> list[Any]:
    """What identifies the predict input: a stage of this run by its relative path (its digest covers it), a
    user's folder by its files' names, sizes and modification times (changed photos redo the predictions)."""
    try:
        return ["OUT", str(source.resolve().relative_to(out.resolve()))]
    except ValueError:
        pass
    return [str(source.resolve()), file_listing(source, recursive=False)]


def _fit_stage(options: DemoOptions, key: str, folder: str, source: Path, oracle: bool,
               after: tuple[StageRecord, ...], poses: Optional[Path] = None) -> Stage:
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
    return Stage(key, title, folder, settings, produce, after)


def _render_stage(options: DemoOptions, key: str, folder: str, scene: Path, cameras: str,
                  after: tuple[StageRecord, ...]) -> Stage:
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
            from panst3r_splat.pipeline.datasets.panoptic_lifting import read_panoptic_lifting

            inputs = read_panoptic_lifting(spec.path, split="train", parts=("color",))  # read once for both
            details["fallback"] = reason
            details.update(_input_view_psnr(out, inputs))
            unplaced = _void_labels_for_unrendered(out, inputs)
            if unplaced:
                details["views_without_camera"] = unplaced
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
    return Stage(key, title, folder, settings, produce, after)


def _void_labels_for_unrendered(renders: Path, data: Any) -> list[str]:
    """Write all-void label maps for the input views (`data`: the scene's input split, read with its colour images)
    the fallback render has no camera for (the solver left them unconnected), so the lifted labels are scored on
    every input view and those count as unlabelled; their names."""
    from panst3r_splat.pipeline.evaluation.scene_files import PRED_INSTANCES_DIR, PRED_SEMANTICS_DIR

    missing = [(name, image.shape[:2]) for name, image in zip(data.frame_names, data.images)
               if not (renders / PRED_SEMANTICS_DIR / f"{name}.png").is_file()]
    for name, (h, w) in missing:
        Image.fromarray(np.zeros((h, w), np.uint8)).save(renders / PRED_SEMANTICS_DIR / f"{name}.png")
        Image.fromarray(np.zeros((h, w), np.uint16)).save(renders / PRED_INSTANCES_DIR / f"{name}.png")
    if missing:
        logger.warning("render: %d input view(s) have no camera (%s); they are scored as unlabelled (void)",
                       len(missing), ", ".join(name for name, _ in missing))
    return [name for name, _ in missing]


def _input_view_psnr(renders: Path, data: Any) -> dict[str, float]:
    """Mean PSNR of the renders of the input views against the images of `data` (the scene's input split, read with
    its colour images) of the same frames (where the sizes agree: the synthetic views are not cropped), as `render`
    measures it at dataset cameras."""
    from panst3r_splat.pipeline.stages.render import photo_psnr

    scores = []
    for name, image in zip(data.frame_names, data.images):
        path = renders / "rgb" / f"{name}.png"
        if path.is_file():
            with Image.open(path) as f:
                rendered = np.asarray(f.convert("RGB"), dtype=np.float32) / 255.0
            if rendered.shape == image.shape:
                scores.append(photo_psnr(rendered, image))
    return {"psnr": float(np.mean(scores))} if scores else {}


def _scores(report: Any) -> dict[str, Any]:
    return {"pq_scene": report.pq_scene.all.pq, "sq": report.pq_scene.all.sq, "rq": report.pq_scene.all.rq,
            "pq_things": report.pq_scene.things.pq, "pq_stuff": report.pq_scene.stuff.pq,
            "miou": report.miou.miou, "pq_per_view": report.pq_per_view.all.pq,
            "pred_void_fraction": report.pred_void_fraction, "frames": len(report.frames), "split": report.split}


def _eval_stage(options: DemoOptions, targets: dict[str, tuple[Path, str]], after: tuple[StageRecord, ...]
                ) -> Stage:
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
    return Stage("eval", "eval", SCORES, settings, produce, after)


def _stages(options: DemoOptions) -> list[Callable[[list[StageRecord]], Stage]]:
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
    result = demo_result(options, records, time.perf_counter() - start, cpu_end.ru_utime - cpu_start.ru_utime)
    write_json(out / SUMMARY_JSON, result_to_json(result))
    text = format_summary(result)
    tmp = out / f".{SUMMARY_TXT}.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / SUMMARY_TXT)
    return result
