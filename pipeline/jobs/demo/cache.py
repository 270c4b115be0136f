"""The demo's stage cache: each stage is written into a hidden partial folder and renamed into place, with
`.stage.json` (a digest of its settings and of the stages it read, and its measurements); a re-run reuses a finished
stage whose digest is unchanged (see the package docstring)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from panst3r_splat.core.atomic_io import swap_into_place
from panst3r_splat.pipeline.fingerprints import digest
from panst3r_splat.pipeline.jobs.demo.measure import Usage, measure
from panst3r_splat.pipeline.jobs.demo.options import DemoOptions

logger = logging.getLogger(__name__)


STAGE_FILE = ".stage.json"
LAYOUT_VERSION = 1


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
class Stage:
    """A stage of a run, before it runs: `run_stage` reuses or produces it."""

    key: str
    title: str
    folder: str
    settings: dict[str, Any]
    produce: Callable[[Path], dict[str, Any]]
    """Writes the stage into the given (new) folder; returns its details."""
    after: tuple[StageRecord, ...] = ()
    """Stages it reads (their digests enter its own)."""


def _digest(settings: dict[str, Any]) -> str:
    return digest(settings)


def write_json(path: Path, data: Any) -> None:
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


def run_stage(stage: Stage, options: DemoOptions, index: int, total: int) -> StageRecord:
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
    write_json(partial / STAGE_FILE, {"digest": digest, "settings": stage.settings,
                                       "record": dataclasses.asdict(record)})
    swap_into_place(partial, final, f"{os.getpid()}-{digest}")
    logger.info("demo [%d/%d] %s: done in %.1f s (%.1f s CPU, peak %.0f MB)", index, total, stage.title,
                usage.seconds, usage.user_seconds + usage.system_seconds, usage.peak_rss_mb)
    return record
