"""Known poses (the paper's novel-view protocol): a predictions folder's local pointmaps placed under
cameras given from outside (a Panoptic Lifting scene's `pose/` + `intrinsic/`), so the fitted scene lives in the
dataset's frame and `render --cameras dataset:SCENE:test` needs no Sim(3) alignment.

    cameras = dataset_cameras(pred, Path("data/room"))        # K at model resolution, T_world_cam, by file stem
    placed = place_predictions(pred, cameras)                # per-view scales from image matches (no GT depth)

The per-view scale of each local pointmap comes from multi-view consistency under the given cameras
(`panst3r_splat.core.cameras.placement`): matches between the images, triangulated with the known cameras; the
ground-truth depth is never read. `fit --poses dataset:SCENE` and `panoptic-lifting-data --predictions` use this.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from jaxtyping import Float

from panst3r_splat.core.cameras.placement import Placement, place_under_cameras
from panst3r_splat.core.predictions import Predictions, frame_stem
from panst3r_splat.pipeline.datasets.panoptic_lifting import FOLDERS, list_frames, read_intrinsics, read_pose
from panst3r_splat.pipeline.errors import UserError

logger = logging.getLogger(__name__)

POSES_PREFIX = "dataset:"


@dataclass(frozen=True)
class KnownCameras:
    """Cameras given for the predictions' views, in the predictions' view order, at model resolution."""

    names: tuple[str, ...]
    K: Float[np.ndarray, "V 3 3"]
    """Intrinsics at model resolution (the dataset's, through each view's `to_orig`), pixel centres at integers."""
    T_world_cam: Float[np.ndarray, "V 4 4"]
    """Camera-to-world, OpenCV axes, the dataset's frame."""
    dataset: str
    """Where they came from (the dataset scene's resolved path, or the file they were read from)."""


def parse_poses(spec: str) -> Path:
    """The scene folder of a `--poses dataset:SCENE` value."""
    if not spec.startswith(POSES_PREFIX) or len(spec) == len(POSES_PREFIX):
        raise UserError(f"--poses {spec!r}: expected dataset:SCENE (a Panoptic Lifting scene folder with pose/ and "
                        "intrinsic/)")
    return Path(spec[len(POSES_PREFIX):])


def known_cameras(pred: Predictions, K_orig: Mapping[str, np.ndarray], T_world_cam: Mapping[str, np.ndarray],
                  hw: Mapping[str, tuple[int, int]], source: str) -> KnownCameras:
    """Cameras given per frame stem (`K_orig` at the photos' resolution `hw`, camera-to-world OpenCV) for every
    predicted view, the intrinsics mapped to model resolution through `to_orig`; a frame without a camera, or
    predicted from a photo of another size, is a one-line error naming it."""
    names = tuple(frame_stem(str(n)) for n in pred.image_names)
    missing = [n for n in names if n not in T_world_cam]
    if missing:
        raise UserError(f"{source} has no pose for predicted frames {', '.join(missing[:5])} ({len(missing)} of "
                        f"{len(names)}); predict from these images (frames are matched by file stem)")
    for v, name in enumerate(names):
        if name in hw and tuple(hw[name]) != tuple(int(x) for x in pred.orig_hw[v]):
            raise UserError(f"frame {name}: the prediction was made from a {pred.orig_hw[v][1]}x{pred.orig_hw[v][0]} "
                            f"image but {source} has it at {hw[name][1]}x{hw[name][0]}; predict from these images")
    K = np.stack([np.linalg.inv(pred.to_orig[v].astype(np.float64)) @ K_orig[n] for v, n in enumerate(names)])
    T = np.stack([np.asarray(T_world_cam[n], dtype=np.float64) for n in names])
    return KnownCameras(names=names, K=K, T_world_cam=T, dataset=source)


def dataset_cameras(pred: Predictions, scene: Path) -> KnownCameras:
    """The scene's `pose/<stem>.txt` and `intrinsic/intrinsic_color.txt` for every predicted view, matched by the
    image's file stem; the intrinsics are mapped to model resolution through `to_orig`."""
    from PIL import Image

    scene = Path(scene)
    names = tuple(frame_stem(str(n)) for n in pred.image_names)
    frames = list_frames(scene)
    pose_dir = scene / FOLDERS["pose"]
    poses = {n: read_pose(pose_dir / f"{n}.txt") for n in names if (pose_dir / f"{n}.txt").is_file()}
    K_orig = read_intrinsics(scene)
    hw = {}
    for name in names:
        if name in frames:
            with Image.open(frames[name]) as image:
                hw[name] = (image.size[1], image.size[0])
    known = known_cameras(pred, {n: K_orig for n in names}, poses, hw, str(pose_dir))
    return dataclasses.replace(known, dataset=str(scene.resolve()))


def place_predictions(pred: Predictions, cameras: KnownCameras) -> Placement:
    """The predictions' local pointmaps placed under the known cameras (scales from image matches)."""
    try:
        placement = place_under_cameras(pred.images, pred.pts3d_local, cameras.K, cameras.T_world_cam)
    except ValueError as err:
        raise UserError(f"placing the predictions under the poses of {cameras.dataset}: {err}") from None
    logger.info("known poses: per-view scales %s (matches %s)", np.round(placement.scale, 4).tolist(),
                placement.matches.tolist())
    return placement
