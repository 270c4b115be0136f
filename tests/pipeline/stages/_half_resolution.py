"""A Panoptic Lifting scene's ground truth as a predictions folder at half resolution (the "model" saw 2x2-binned
pictures; `to_orig` maps its pixel centre u to 2u + 0.5), for tests that need exact predictions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from panst3r_splat.core import class_table
from panst3r_splat.core.photos import PhotoRecord
from panst3r_splat.core.predictions import Predictions, save_predictions
from panst3r_splat.pipeline.datasets.panoptic_lifting import gt_segments, read_panoptic_lifting
from panst3r_splat.splat.scene_io import SegmentInfo

TO_ORIG = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class HalfResolution:
    """The train split at half resolution."""

    data: object
    """`read_panoptic_lifting(dataset, split="train")` at full resolution."""
    images: np.ndarray  # [V, h, w, 3] uint8, 2x2 box-filtered
    depth: np.ndarray  # [V, h, w] 2x2 mean
    K_model: np.ndarray  # [3, 3] intrinsics at half resolution
    segments: np.ndarray  # [V, H, W] ground-truth segment ids at full resolution
    legend: tuple[SegmentInfo, ...]


def half_resolution(dataset: Path) -> HalfResolution:
    data = read_panoptic_lifting(dataset, split="train")
    V, H, W = data.depth.shape
    images = np.stack([np.asarray(Image.fromarray(im).resize((W // 2, H // 2), Image.BOX)) for im in data.images])
    depth = data.depth.reshape(V, H // 2, 2, W // 2, 2).mean(axis=(2, 4))
    segments, legend = gt_segments(data.semantics, data.instances)
    return HalfResolution(data=data, images=images, depth=depth, K_model=np.linalg.inv(TO_ORIG) @ data.K,
                          segments=segments, legend=legend)


def save_half_resolution(half: HalfResolution, folder: Path, pts3d: np.ndarray, pts3d_local: np.ndarray,
                         T_world_cam: np.ndarray, photos: tuple[PhotoRecord, ...] | None = None) -> Path:
    """Write the predictions folder with the given points and cameras (every other array from `half`)."""
    V, h, w = half.depth.shape
    H, W = half.segments.shape[1:]
    pred = Predictions(
        image_names=np.array([f"{n}.png" for n in half.data.frame_names]), images=half.images, pts3d=pts3d,
        pts3d_local=pts3d_local, conf=np.full((V, h, w), 5.0), mask_logits=np.zeros((V, 2, h // 2, w // 2)),
        class_logits=np.zeros((2, class_table.NUM_CLASSES)), class_names=np.array(class_table.class_names()),
        class_ids=np.arange(1, class_table.NUM_CLASSES + 1),
        isthing=np.array([c.isthing for c in class_table.CLASSES]), orig_hw=np.tile([H, W], (V, 1)),
        to_orig=np.repeat(TO_ORIG[None], V, 0), keyframes=np.arange(V), K=np.repeat(half.K_model[None], V, 0),
        T_world_cam=T_world_cam, panoptic=half.segments[:, ::2, ::2].astype(np.int32))
    segments = [{"id": s.id, "category_id": s.category_id, "isthing": s.isthing, "score": 1.0, "query_id": i}
                for i, s in enumerate(half.legend)]
    return save_predictions(pred, folder, segments, photos=photos)
