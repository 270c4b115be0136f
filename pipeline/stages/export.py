"""`panst3r-splat export`: the labelled Gaussians of a fitted scene as a standard 3DGS PLY (`splat/ply.py`).

The PLY has the reference 3DGS vertex properties (what other splat viewers read) plus per-Gaussian `semantic_id`
(dataset class id, 0 = void), `instance_id` (0 for stuff and void), `segment_id` and `label_conf`. With a folder for
`--per-instance`, every thing instance also gets a PLY of its own Gaussians.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.stages.render import SceneReader, load_fitted
from panst3r_splat.splat.ply import write_instance_plys, write_ply
from panst3r_splat.splat.scene_io import load_scene

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """Files written by `export_scene`."""

    ply: Path
    instances: tuple[Path, ...]
    num_gaussians: int


def export_scene(scene_dir: Path, out: Path, *, per_instance: Optional[Path] = None,
                 read_scene: SceneReader = load_scene) -> ExportResult:
    """Write `out` (a .ply file) and, when `per_instance` is given, one PLY per instance into that folder;
    `read_scene` reads the scene folder (`stages.render.SceneReader`)."""
    out = Path(out)
    if out.suffix.lower() != ".ply":
        raise UserError(f"--out must be a .ply file, got {out}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name ending in .ply")
    if per_instance is not None and Path(per_instance).exists() and not Path(per_instance).is_dir():
        raise UserError(f"--per-instance {per_instance} is a file; give a folder")
    scene = load_fitted(scene_dir, read_scene)
    semantic, instance = scene.gaussian_labels()
    try:
        write_ply(out, scene.gaussians, semantic_ids=semantic, instance_ids=instance)
    except OSError as err:
        raise UserError(f"cannot write {out} ({err.strerror}); choose a writable path") from None
    instances: tuple[Path, ...] = ()
    if per_instance is not None:
        names = {s.class_id: s.class_name for s in scene.segments}
        instances = tuple(write_instance_plys(per_instance, scene.gaussians, semantic, instance, class_names=names))
    logger.info("export: %d Gaussians -> %s%s", len(scene.gaussians), out,
                f" (+{len(instances)} instance PLYs in {per_instance})" if per_instance is not None else "")
    return ExportResult(ply=out, instances=instances, num_gaussians=len(scene.gaussians))
