"""Geometry metrics for training curves and held-out evaluation of pointmaps (one scene at a time).

All in float64 under ``no_grad``; the cross-view numbers come with the baseline a model without cross-view geometry
would reach (training_probe.md: identity rotations, or each view's local points copied as global points), because
the first question about a from-scratch MUSt3R is whether it beats those.

Frames: global points in the frame of view 0's camera, local points in each view's camera (OpenCV axes, z forward).
Predicted cameras are the camera-to-view-0 rigid Procrustes fits from local to global points (method.md section 4,
weights ``conf - 1`` as the official demo); GT cameras are the same fit on the GT points (exact for rigid GT).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from panst3r_splat.core.procrustes import weighted_procrustes
from panst3r_splat.core.transforms import Similarity, rotation_angle_deg


@dataclass(frozen=True)
class GeometryMetrics:
    """Geometry errors of one scene. Distances are in units of the GT scene scale (mean distance of the valid GT
    global points to view 0's camera centre), angles in degrees."""

    local_depth_rel_error: float
    """Median over valid pixels of ``|s_v z_pred - z_gt| / z_gt`` on local points, ``s_v`` per-view median scaling."""
    rotation_error_deg: float
    """Mean over view pairs of the angle between predicted and GT relative rotations."""
    rotation_error_identity_deg: float
    """The same for identity predicted rotations (no cross-view geometry), i.e. the mean GT relative rotation."""
    translation_angle_error_deg: float
    """Mean over view pairs of the angle between predicted and GT relative translation directions."""
    camera_rotation_error_deg: float
    """Mean over views of the absolute rotation error after the Sim(3) alignment of the global points."""
    camera_center_error: float
    """Mean over views of the camera-centre distance after that Sim(3) alignment."""
    global_point_error: float
    """Median distance of the valid global points to the GT after a Sim(3) alignment over all views."""
    global_point_error_copy_local: float
    """The same for the GT local points taken as global points (perfect per-view, no cross-view geometry)."""
    global_depth_rel_error: float
    """Median relative depth error of the Sim(3)-aligned global points seen from each GT camera."""


def local_depth_rel_error(
    pred_local: Float[Tensor, "V H W 3"], gt_local: Float[Tensor, "V H W 3"], valid: Bool[Tensor, "V H W"]
) -> float:
    """Median relative depth error of local points after per-view median scaling (monodepth convention).

    ``s_v = median(z_gt) / median(z_pred)`` over the view's valid pixels; a view whose predicted median depth is
    not positive counts with error 1 at every pixel (as a prediction of zero depth).
    """
    errors = []
    for v in range(valid.shape[0]):
        z_gt = gt_local[v][valid[v]][:, 2].double()
        z_pred = pred_local[v][valid[v]][:, 2].double()
        if z_gt.numel() == 0:
            continue
        med_pred = z_pred.median()
        if med_pred <= 0:
            errors.append(torch.ones_like(z_gt))
            continue
        scale = z_gt.median() / med_pred
        errors.append((scale * z_pred - z_gt).abs() / z_gt.abs().clamp_min(1e-12))
    if not errors:
        return float("nan")
    return float(torch.cat(errors).median())


def cameras_from_pointmaps(
    pts_global: Float[Tensor, "V H W 3"], pts_local: Float[Tensor, "V H W 3"], weights: Float[Tensor, "V H W"]
) -> Similarity:
    """Camera-to-view-0 pose of every view: rigid Procrustes ``global ~ R local + t`` with the given weights."""
    n_views = pts_global.shape[0]
    return weighted_procrustes(
        pts_local.double().reshape(n_views, -1, 3),
        pts_global.double().reshape(n_views, -1, 3),
        weights.double().reshape(n_views, -1),
    )


def relative_pose_errors(
    R_pred: Float[Tensor, "V 3 3"],
    centers_pred: Float[Tensor, "V 3"],
    R_gt: Float[Tensor, "V 3 3"],
    centers_gt: Float[Tensor, "V 3"],
) -> tuple[Float[Tensor, " P"], Float[Tensor, " P"], Float[Tensor, " P"]]:
    """Per view pair ``i < j``: rotation error, identity-rotation baseline and translation-direction error (deg).

    Relative pose of camera j in camera i: ``R_ij = R_i^T R_j``, ``t_ij = R_i^T (c_j - c_i)``; both are invariant to
    the choice of world frame and (the direction) to its scale, so no alignment is needed. A pair whose predicted
    centres coincide has no direction and scores about 90 degrees.
    """
    i, j = torch.triu_indices(R_pred.shape[0], R_pred.shape[0], offset=1, device=R_pred.device)
    rel_pred = R_pred[i].transpose(-1, -2) @ R_pred[j]
    rel_gt = R_gt[i].transpose(-1, -2) @ R_gt[j]
    rot_err = rotation_angle_deg(rel_pred.transpose(-1, -2) @ rel_gt)
    identity = rotation_angle_deg(rel_gt)
    t_pred = (R_pred[i].transpose(-1, -2) @ (centers_pred[j] - centers_pred[i])[..., None])[..., 0]
    t_gt = (R_gt[i].transpose(-1, -2) @ (centers_gt[j] - centers_gt[i])[..., None])[..., 0]
    cos = (F.normalize(t_pred, dim=-1) * F.normalize(t_gt, dim=-1)).sum(-1).clamp(-1.0, 1.0)
    return rot_err, identity, torch.rad2deg(torch.acos(cos))


def _sim3_global_error(
    pred_global: Tensor, gt_global: Tensor, valid: Tensor, scale: Tensor
) -> tuple[Similarity, float]:
    """Sim(3) fit of the valid predicted global points onto the GT and the median residual distance / ``scale``."""
    src, dst = pred_global[valid].double(), gt_global[valid].double()
    fit = weighted_procrustes(src[None], dst[None], torch.ones_like(src[None, :, 0]), with_scale=True)
    residual = (fit.apply(src[None])[0] - dst).norm(dim=-1)
    return fit, float(residual.median() / scale)


@torch.no_grad()
def geometry_metrics(
    pred_global: Float[Tensor, "V H W 3"],
    pred_local: Float[Tensor, "V H W 3"],
    gt_global: Float[Tensor, "V H W 3"],
    gt_local: Float[Tensor, "V H W 3"],
    valid: Bool[Tensor, "V H W"],
    conf: Float[Tensor, "V H W"] | None = None,
) -> GeometryMetrics:
    """All geometry metrics of one scene (activated pointmaps; any scale).

    Args:
        pred_global, pred_local: predicted pointmaps (frame of view 0; own camera frames).
        gt_global, gt_local: ground truth in the same frames.
        valid: pixels with a valid GT point; every view needs at least 3 non-collinear ones.
        conf: predicted confidence; the predicted cameras are fitted on all pixels with weights ``conf - 1`` (as
            at inference). None: uniform weights on the valid pixels.
    """
    if int(valid.flatten(1).sum(1).min()) < 3:
        raise ValueError("every view needs at least 3 valid GT pixels to define its camera")
    gt_global = torch.where(valid[..., None], gt_global, 0.0).double()
    gt_local = torch.where(valid[..., None], gt_local, 0.0).double()
    scale = gt_global[valid].norm(dim=-1).mean()
    weights = valid.double() if conf is None else (conf.double() - 1.0).clamp_min(1e-12)
    cams_pred = cameras_from_pointmaps(pred_global, pred_local, weights)
    cams_gt = cameras_from_pointmaps(gt_global, gt_local, valid.double())
    rot_err, identity, trans_err = relative_pose_errors(cams_pred.R, cams_pred.t, cams_gt.R, cams_gt.t)

    align, global_err = _sim3_global_error(pred_global, gt_global, valid, scale)
    _, copy_local_err = _sim3_global_error(gt_local, gt_global, valid, scale)
    R_align, t_align, s_align = align.R[0], align.t[0], align.scale[0]
    cam_rot_err = rotation_angle_deg((R_align @ cams_pred.R).transpose(-1, -2) @ cams_gt.R)
    centers = s_align * cams_pred.t @ R_align.T + t_align
    center_err = (centers - cams_gt.t).norm(dim=-1) / scale

    # Aligned global points seen from each GT camera: x_cam = R_v^T (x - t_v).
    aligned = s_align * pred_global.double() @ R_align.T + t_align  # [V, H, W, 3]
    in_cam = torch.einsum("vji,vhwj->vhwi", cams_gt.R, aligned - cams_gt.t[:, None, None, :])
    z_gt = gt_local[..., 2][valid]
    depth_err = ((in_cam[..., 2][valid] - z_gt).abs() / z_gt.abs().clamp_min(1e-12)).median()

    return GeometryMetrics(
        local_depth_rel_error=local_depth_rel_error(pred_local, gt_local, valid),
        rotation_error_deg=float(rot_err.mean()),
        rotation_error_identity_deg=float(identity.mean()),
        translation_angle_error_deg=float(trans_err.mean()),
        camera_rotation_error_deg=float(cam_rot_err.mean()),
        camera_center_error=float(center_err.mean()),
        global_point_error=global_err,
        global_point_error_copy_local=copy_local_err,
        global_depth_rel_error=float(depth_err),
    )
