"""Held-out metrics during training: unseen scenes (seeds from `HELD_OUT_SEED_START`), training-mode forward.

Geometry: relative rotation error between views (with the no-rotation baseline), median relative depth error of
the local points, global point error after Sim(3) alignment. Segmentation: semantic mIoU of the Mask2Former
semantic inference (per pixel, argmax over classes of `sum_q sigmoid(mask_q) * sigmoid(class_q)`), a quick proxy
of the merged panoptic quality that `scripts/evaluate_model.py` measures properly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from panst3r_splat.configs.data import DataConfig
from panst3r_splat.configs.synth import HELD_OUT_SEED_START
from panst3r_splat.core.model.outputs import activate_descriptors, activate_pointmaps
from panst3r_splat.core.training.descriptors import NO_MATCH, pixel_correspondences, sample_query_pixels
from panst3r_splat.core.training.metrics import geometry_metrics
from panst3r_splat.pipeline.training.targets import normalise_images, scene_targets

def semantic_from_masks(class_logits: torch.Tensor, mask_logits: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Per-pixel class index ``(V, H, W)`` from ``class_logits (Q, K)`` and ``mask_logits (V, Q, h, w)``."""
    masks = F.interpolate(mask_logits, size=hw, mode="bilinear", align_corners=False).sigmoid()  # [V, Q, H, W]
    scores = torch.einsum("vqhw,qk->vkhw", masks, class_logits.sigmoid())
    return scores.argmax(1)

def _miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    ious = []
    for c in range(num_classes):
        p, g = pred == c, gt == c
        if g.sum() == 0 and p.sum() == 0:
            continue
        ious.append((p & g).sum() / max((p | g).sum(), 1))
    return float(np.mean(ious)) if ious else float("nan")

def descriptor_match_accuracy(
    descriptors: torch.Tensor, valid: torch.Tensor, gt_world: torch.Tensor, gt_local: torch.Tensor,
    *, num_queries: int = 256, tol_px: float = 2.0,
) -> float:
    """Share of query pixels (with a visible counterpart) whose nearest descriptor in the other view lies within
    ``tol_px`` pixels of the true counterpart, over every ordered view pair. ``descriptors``: ``(V, H, W, D)``."""
    V, H, W, D = descriptors.shape
    queries = sample_query_pixels(valid, num_queries, torch.Generator().manual_seed(0))
    matches = pixel_correspondences(gt_world, gt_local, valid, queries)
    flat = descriptors.reshape(V, H * W, D)
    hits, total = 0, 0
    for a in range(V):
        for b in range(V):
            keep = matches[a, b] != NO_MATCH
            if a == b or not bool(keep.any()):
                continue
            found = (flat[a, queries[a][keep]] @ flat[b].T).argmax(dim=1)
            true = matches[a, b][keep]
            dist = torch.hypot((found // W - true // W).float(), (found % W - true % W).float())
            hits += int((dist <= tol_px).sum())
            total += int(keep.sum())
    return hits / total if total else float("nan")


@torch.no_grad()
def evaluate_held_out(model, data: DataConfig, class_embeddings: torch.Tensor, num_scenes: int) -> dict[str, float]:
    """Mean metrics over `num_scenes` held-out scenes shaped like the training samples."""
    from panst3r_splat.pipeline.datasets.synth import generate_scene

    device = class_embeddings.device
    rows = []
    for i in range(num_scenes):
        # The first `views` consecutive cameras of a scene rendered as the training samples' scenes are: the same
        # view spacing as training, so the scores follow what is being learnt.
        scene = generate_scene(data.scene_config(), HELD_OUT_SEED_START + i)
        views = slice(0, data.views)
        K = np.broadcast_to(scene.K, (data.views, 3, 3)) if scene.K.ndim == 2 else scene.K[views]
        tgt = scene_targets(scene.depth[views], K, scene.T_world_cam[views], scene.semantics[views],
                            scene.instances[views])
        images = normalise_images(torch.from_numpy(scene.images[views]))[None].to(device)
        out = model(images, class_embeddings)
        pts, pts_local, conf = activate_pointmaps(out.pointmaps_raw[0].float().cpu())
        geo = geometry_metrics(pts, pts_local, tgt.gt_pts3d_world, tgt.gt_pts3d_local, tgt.valid, conf)
        sem = semantic_from_masks(out.panoptic.class_logits[0].float(), out.panoptic.mask_logits[0].float(),
                                  scene.semantics.shape[1:]).cpu().numpy() + 1
        gt_sem = scene.semantics[views]
        valid = gt_sem > 0
        extra = {}
        if out.descriptors_raw is not None:
            desc, _ = activate_descriptors(out.descriptors_raw[0].cpu())
            extra["desc_match_acc_2px"] = descriptor_match_accuracy(desc, tgt.valid, tgt.gt_pts3d_world,
                                                                    tgt.gt_pts3d_local)
        rows.append({
            **extra,
            "rot_err_deg": geo.rotation_error_deg,
            "rot_err_identity_deg": geo.rotation_error_identity_deg,
            "local_depth_rel_err": geo.local_depth_rel_error,
            "global_point_err": geo.global_point_error,
            "global_point_err_copy_local": geo.global_point_error_copy_local,
            "semantic_miou": _miou(sem[valid], gt_sem[valid].astype(np.int64), class_embeddings.shape[0] + 1),
        })
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
