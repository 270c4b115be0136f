"""What a demo run reports: `DemoResult` from the stage records, the notes a reader of the numbers needs, the
summary table (`format_summary`) and summary.json (`result_to_json`)."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from panst3r_splat.pipeline.jobs.demo.cache import StageRecord
from panst3r_splat.pipeline.jobs.demo.measure import machine_info, threads_default
from panst3r_splat.pipeline.jobs.demo.options import (
    DATA, ORACLE_SCENE, POSED_RENDERS, POSED_SCENE, PREDICTIONS, RENDERS_ORBIT, RENDERS_TEST, SCENE, SCORES,
    SUMMARY_JSON, DemoOptions,
)


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


def demo_result(options: DemoOptions, records: Sequence[StageRecord], seconds: float, user_seconds: float
                ) -> DemoResult:
    """The result of a run from its stage records: the scores (with the renders' PSNR), the paths to look at,
    the notes, the machine and the settings."""
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
            unplaced = by_key[key].details.get("views_without_camera")
            if unplaced:
                notes.append(f"input views without a camera ({', '.join(unplaced)}) have no render: their labels are "
                             "scored as void")
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
