"""`generate_scene`: a furnished room, its cameras and its renders, in memory; `write_scene` / `write_images` put it
on disk (the Panoptic Lifting layout plus scene.json, or a plain folder of the training images)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from jaxtyping import Bool, Float32, Float64, UInt8, UInt16

from panst3r_splat.configs.synth import HELD_OUT_SEED_START, SynthConfig
from panst3r_splat.core.class_table import CLASSES
from panst3r_splat.pipeline.datasets.panoptic_lifting import PanopticLiftingScene, save_png, write_panoptic_lifting
from panst3r_splat.pipeline.datasets.synth.cameras import sample_cameras
from panst3r_splat.pipeline.datasets.synth.layout import World, build_world
from panst3r_splat.pipeline.datasets.synth.render import render_views
from panst3r_splat.pipeline.errors import UserError

log = logging.getLogger(__name__)

SCENE_JSON = "scene.json"
FORMAT_VERSION = 1
_STREAM_LAYOUT, _STREAM_CAMERAS = 0, 1
"""Independent random streams per seed: the room depends only on (seed, room options), never on view options."""


@dataclass(frozen=True)
class SynthScene:
    """A rendered synthetic scene; views are the training views (path order) followed by the test views."""

    seed: int
    config: SynthConfig
    frame_names: tuple[str, ...]
    splits: Mapping[str, tuple[str, ...]]
    """{'train': [...], 'test': [...]}."""
    images: UInt8[np.ndarray, "V H W 3"]
    depth: Float32[np.ndarray, "V H W"]
    """z-depth in metres (0 = nothing hit)."""
    K: Float64[np.ndarray, "3 3"]
    """Pixel-centre convention: principal point ((W-1)/2, (H-1)/2)."""
    T_world_cam: Float64[np.ndarray, "V 4 4"]
    """Camera-to-world, OpenCV axes; world z is up, the floor is z = 0."""
    semantics: UInt8[np.ndarray, "V H W"]
    instances: UInt16[np.ndarray, "V H W"]
    is_test: Bool[np.ndarray, "V"]
    description: dict[str, Any] = field(repr=False)
    """The scene.json content: class table, instances with their class, objects, room, seed and options."""
    world: World = field(repr=False)
    """The analytic scene, for renders from other cameras (`render.render_views`)."""

    @property
    def train_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.is_test)

    @property
    def test_indices(self) -> np.ndarray:
        return np.flatnonzero(self.is_test)


def _rounded(value: Any) -> Any:
    """Floats rounded to 0.1 mm / 1e-4 rad so scene.json stays short and stable."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _description(seed: int, cfg: SynthConfig, world: World, path: str, splits: Mapping[str, tuple[str, ...]],
                 instances_present: np.ndarray) -> dict[str, Any]:
    instances = [{"id": o.instance_id, "class_id": o.class_id, "class_name": o.class_name, "object": i,
                  "visible": bool(o.instance_id in instances_present)}
                 for i, o in enumerate(world.objects) if o.instance_id > 0]
    return _rounded({
        "format": "panst3r-splat synth", "version": FORMAT_VERSION, "seed": seed,
        "held_out_seed_start": HELD_OUT_SEED_START, "held_out": seed >= HELD_OUT_SEED_START,
        "config": asdict(cfg),
        "classes": [{"id": c.id, "name": c.name, "isthing": c.isthing, "color": list(c.color)} for c in CLASSES],
        "instances": instances,
        "objects": [asdict(o) for o in world.objects],
        "room": {"size": [float(v) for v in world.room.hi - world.room.lo], "ceiling": world.room.has_ceiling},
        "camera_path": path,
        "frames": {k: list(v) for k, v in splits.items()},
        "world_frame": "metres, z up, floor at z = 0, room centred on x = y = 0; cameras OpenCV camera-to-world",
    })


def generate_scene(config: SynthConfig, seed: int) -> SynthScene:
    """Build, light, photograph and label one room. Same (config, seed) -> identical arrays."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    world = build_world(config, np.random.default_rng([seed, _STREAM_LAYOUT]))
    rig = sample_cameras(world, config, np.random.default_rng([seed, _STREAM_CAMERAS]))
    views = render_views(world, rig.K, rig.T_world_cam, config.height, config.width, shadows=config.shadows)
    names = tuple(f"{i:04d}" for i in range(config.num_views))
    splits = {"train": tuple(n for n, t in zip(names, rig.is_test) if not t),
              "test": tuple(n for n, t in zip(names, rig.is_test) if t)}
    present = np.unique(views.instances)
    log.debug("synth seed %d: %d objects, %d instances visible, %s path", seed, len(world.objects),
              int((present > 0).sum()), rig.path)
    return SynthScene(seed=seed, config=config, frame_names=names, splits=splits, images=views.images,
                      depth=views.depth.astype(np.float32), K=rig.K, T_world_cam=rig.T_world_cam,
                      semantics=views.semantics, instances=views.instances, is_test=rig.is_test,
                      description=_description(seed, config, world, rig.path, splits, present), world=world)


def as_panoptic_lifting(scene: SynthScene) -> PanopticLiftingScene:
    """The scene as the reader/writer's dataclass."""
    return PanopticLiftingScene(frame_names=scene.frame_names, splits=scene.splits, images=scene.images,
                                depth=scene.depth, K=scene.K, T_world_cam=scene.T_world_cam,
                                semantics=scene.semantics, instances=scene.instances)


def write_scene(scene: SynthScene, out: Path, *, overwrite: bool = False) -> Path:
    """Write the Panoptic Lifting layout plus scene.json under `out`; returns `out`."""
    out = Path(out)
    write_panoptic_lifting(as_panoptic_lifting(scene), out, overwrite=overwrite)
    (out / SCENE_JSON).write_text(json.dumps(scene.description, indent=1) + "\n")
    return out


def write_images(scene: SynthScene, out: Path, *, split: str = "train", overwrite: bool = False) -> Path:
    """Write only the colour images of `split` as ``out/<frame>.png``: the unposed input a user has."""
    out = Path(out)
    if split not in scene.splits:
        raise UserError(f"split {split!r} is not one of {', '.join(scene.splits)}")
    if out.exists() and any(out.glob("*.png")) and not overwrite:
        raise UserError(f"{out} already holds images; choose another output folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for stale in out.glob("*.png"):
            stale.unlink()
    index = {n: i for i, n in enumerate(scene.frame_names)}
    for name in scene.splits[split]:
        save_png(out / f"{name}.png", scene.images[index[name]])
    return out
