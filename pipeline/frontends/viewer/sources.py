"""What `view` can open, read into the arrays the viewer needs (no viser here).

`view PATH` tells the inputs apart by their files (CLI.md): a fitted SCENE has `gaussians.ply`, a predictions folder
`predictions.npz`, an `ns-train panst3r-splat` run `config.yml` (read as a fitted scene by
`pipeline.frontends.nerfstudio_io.load_ns_output`, which re-runs the dataparser, so the training data must still be in place).
Every failure a user can cause is one `UserError` line.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from jaxtyping import Bool, Float, Int, UInt8

from panst3r_splat.core.predictions import (POINT_CONF_THRESHOLD, PREDICTIONS_FILE, SEGMENTS_FILE, load_predictions,
                                             read_segments)
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.frontends.viewer.state import MIN_PICK_OPACITY
from panst3r_splat.splat.gaussians import Cameras, GaussianScene
from panst3r_splat.splat.scene_io import FittedScene, SegmentInfo, is_scene_folder, load_scene, make_segment

logger = logging.getLogger(__name__)

NS_TRAIN_CONFIG = "config.yml"
MAX_POINTS = 400_000
"""Predicted points sent to the browser at most (every k-th pixel beyond that): a WebGL point cloud of this size
stays interactive on a laptop."""
THUMBNAIL_SIZE = 128
"""Longer side of the frustum thumbnails, in pixels."""
PICK_RADIUS_SIGMAS = 2.0
"""A click hits a Gaussian when the ray passes within this many of its largest standard deviations."""


@dataclass(frozen=True)
class SceneSource:
    """A fitted scene, with per-Gaussian arrays cached for colouring and picking."""

    path: Path
    fitted: FittedScene
    gaussians: GaussianScene
    """The Gaussians on the rendering device."""
    segment_ids: Int[np.ndarray, "N"]
    rgb: Float[np.ndarray, "N 3"]
    """View-independent colour (SH DC term) in [0, 1]."""
    centers: Float[np.ndarray, "N 3"]
    pick_radii: Float[np.ndarray, "N"]
    pickable: Bool[np.ndarray, "N"]
    """Opaque enough to stop a click."""

    @property
    def segments(self) -> tuple[SegmentInfo, ...]:
        return self.fitted.segments

    @property
    def cameras(self) -> Cameras:
        return self.fitted.cameras


@dataclass(frozen=True)
class PredictionsSource:
    """A predictions folder as a coloured, labelled point cloud (one point per pixel, subsampled to MAX_POINTS)."""

    path: Path
    points: Float[np.ndarray, "P 3"]
    rgb: Float[np.ndarray, "P 3"]
    depth: Float[np.ndarray, "P"]
    """z in the point's own camera (for the depth mode)."""
    conf: Float[np.ndarray, "P"]
    segment_ids: Int[np.ndarray, "P"]
    segments: tuple[SegmentInfo, ...]
    cameras: Cameras
    thumbnails: tuple[UInt8[np.ndarray, "h w 3"], ...]
    pixel_areas: dict[int, int]
    """Pixels of each segment over all input views (from the merged panoptic maps)."""
    point_size: float
    """One and a half input pixels' footprint at the median depth (world units)."""


def open_source(path: Path, device: torch.device) -> SceneSource | PredictionsSource:
    """Read a SCENE, a predictions folder or an `ns-train panst3r-splat` run; anything else is a one-line
    `UserError`."""
    from panst3r_splat.pipeline.frontends.nerfstudio_io import is_ns_output, load_ns_output

    path = Path(path)
    if is_ns_output(path):
        run = path if path.is_dir() else path.parent
        return scene_source(run, load_ns_output(path), device)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder: point `view` to a fitted scene, a predictions folder or an "
                        "ns-train run")
    try:
        if is_scene_folder(path):
            return scene_source(path, load_scene(path), device)
        if (path / PREDICTIONS_FILE).is_file():
            return predictions_source(path)
    except ValueError as err:
        raise UserError(str(err)) from None
    raise UserError(f"{path} is neither a fitted scene (gaussians.ply), a predictions folder (predictions.npz) nor "
                    f"an ns-train run ({NS_TRAIN_CONFIG})")


def scene_source(path: Path, fitted: FittedScene, device: torch.device) -> SceneSource:
    """A fitted scene (read from `path`) with the per-Gaussian arrays the viewer needs."""
    gaussians = fitted.gaussians
    scales = gaussians.scales.detach().cpu().numpy()
    opacities = gaussians.opacities.detach().cpu().numpy()
    return SceneSource(
        path=path, fitted=fitted, gaussians=gaussians.to(device),
        segment_ids=gaussians.segment_ids.cpu().numpy().astype(np.int64),
        rgb=gaussians.base_colors.detach().cpu().numpy().astype(np.float32),
        centers=gaussians.means.detach().cpu().numpy().astype(np.float64),
        pick_radii=PICK_RADIUS_SIGMAS * scales.max(axis=1), pickable=opacities >= MIN_PICK_OPACITY,
    )


def _thumbnail(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    scale = THUMBNAIL_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(PIL.Image.fromarray(image).resize(size, PIL.Image.BILINEAR))


def predictions_source(path: Path) -> PredictionsSource:
    pred = load_predictions(path)
    entries = read_segments(path / SEGMENTS_FILE, num_classes=len(pred.class_names))
    segments = tuple(
        make_segment(e["id"], e["category_id"], int(e.get("class_id", pred.class_ids[e["category_id"]])),
                     str(e.get("class_name", pred.class_names[e["category_id"]])), e["isthing"], e["score"])
        for e in entries)
    ok = pred.camera_ok  # views the camera solver could not place (NaN cameras and points) are not shown
    images, panoptic = pred.images[ok], pred.panoptic[ok]
    V, H, W, _ = images.shape
    step = max(1, math.ceil(V * H * W / MAX_POINTS))
    take = slice(None, None, step)
    points = pred.pts3d[ok].reshape(-1, 3)[take]
    depth = pred.pts3d_local[ok].reshape(-1, 3)[take, 2]
    conf = pred.conf[ok].reshape(-1)[take]
    confident = np.abs(depth[conf >= POINT_CONF_THRESHOLD])
    median_depth = float(np.median(confident if confident.size else np.abs(depth))) if depth.size else 1.0
    focal = float(np.median(pred.K[ok, 1, 1]))
    cameras = Cameras(K=torch.from_numpy(pred.K[ok]), T_world_cam=torch.from_numpy(pred.T_world_cam[ok]), width=W,
                      height=H, names=tuple(str(n) for n, good in zip(pred.image_names, ok) if good))
    ids, counts = np.unique(panoptic, return_counts=True)
    return PredictionsSource(
        path=path, points=points, rgb=images.reshape(-1, 3)[take].astype(np.float32) / 255.0, depth=depth,
        conf=conf, segment_ids=panoptic.reshape(-1)[take].astype(np.int64),
        segments=segments, cameras=cameras, thumbnails=tuple(_thumbnail(im) for im in images),
        pixel_areas={int(i): int(c) for i, c in zip(ids, counts) if i != 0},
        point_size=1.5 * median_depth / focal * math.sqrt(step),
    )
