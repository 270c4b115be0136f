"""Ground truth for training, from a synthetic scene's depth, cameras and label maps."""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Bool, Float, Int, UInt8, UInt16
from torch import Tensor

from panst3r_splat.core.class_table import STUFF_IDS, THING_IDS
from panst3r_splat.core.geometry import local_points
from panst3r_splat.core.training.losses import SceneTargets


def points_in_first_camera(
    pts_local: Float[np.ndarray, "V H W 3"], T_world_cam: Float[np.ndarray, "V 4 4"]
) -> Float[np.ndarray, "V H W 3"]:
    """Express every view's camera-frame points in the frame of view 0's camera (PanSt3R's world frame)."""
    T_cam0_cam = np.linalg.inv(T_world_cam[0])[None] @ T_world_cam  # [V, 4, 4]
    R, t = T_cam0_cam[:, None, None, :3, :3], T_cam0_cam[:, None, None, :3, 3]
    return (R @ pts_local[..., None])[..., 0] + t


def panoptic_segments(
    semantics: UInt8[np.ndarray, "V H W"], instances: UInt16[np.ndarray, "V H W"]
) -> tuple[Bool[np.ndarray, "S V H W"], Int[np.ndarray, " S"]]:
    """One multi-view segment per thing instance and per stuff class present; classes as indices (id - 1)."""
    masks, classes = [], []
    thing_pixels = np.isin(semantics, list(THING_IDS)) & (instances > 0)
    for inst in np.unique(instances[thing_pixels]):
        mask = thing_pixels & (instances == inst)
        labels, counts = np.unique(semantics[mask], return_counts=True)
        masks.append(mask)
        classes.append(int(labels[np.argmax(counts)]) - 1)
    for cls in sorted(STUFF_IDS):
        mask = semantics == cls
        if mask.any():
            masks.append(mask)
            classes.append(cls - 1)
    V, H, W = semantics.shape
    if not masks:
        return np.zeros((0, V, H, W), dtype=bool), np.zeros((0,), dtype=np.int64)
    return np.stack(masks), np.asarray(classes, dtype=np.int64)


def scene_targets(
    depth: Float[np.ndarray, "V H W"],
    K: Float[np.ndarray, "V 3 3"],
    T_world_cam: Float[np.ndarray, "V 4 4"],
    semantics: UInt8[np.ndarray, "V H W"],
    instances: UInt16[np.ndarray, "V H W"],
) -> SceneTargets:
    """`SceneTargets` of one scene: segments, points in view 0's camera frame, local points, validity."""
    valid = depth > 0
    local = local_points(depth, K)
    world = points_in_first_camera(local, T_world_cam)
    masks, classes = panoptic_segments(semantics, instances)
    return SceneTargets(
        gt_masks=torch.from_numpy(masks),
        gt_classes=torch.from_numpy(classes),
        gt_pts3d_world=torch.from_numpy(world.astype(np.float32)),
        gt_pts3d_local=torch.from_numpy(local.astype(np.float32)),
        valid=torch.from_numpy(valid),
    )


def targets_to(targets: SceneTargets, device: torch.device) -> SceneTargets:
    """Move every tensor of `targets` to `device`."""
    move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
    return SceneTargets(
        gt_masks=move(targets.gt_masks),
        gt_classes=move(targets.gt_classes),
        gt_pts3d_world=move(targets.gt_pts3d_world),
        gt_pts3d_local=move(targets.gt_pts3d_local),
        valid=move(targets.valid),
        pixel_queries=move(targets.pixel_queries),
        pixel_matches=move(targets.pixel_matches),
    )


def normalise_images(images: UInt8[Tensor, "V H W 3"]) -> Float[Tensor, "V 3 H W"]:
    """uint8 RGB -> the model's [-1, 1] normalisation (official ImgNorm)."""
    return images.permute(0, 3, 1, 2).float().div(255.0).sub(0.5).div(0.5)
