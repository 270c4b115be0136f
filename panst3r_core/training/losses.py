"""Training losses of PanSt3R (panoptic, method.md 6.2) and MUSt3R (pointmaps), plus a cross-view pose term.

Everything is a pure function on plain tensors of one scene; :class:`PanopticCriterion` adds them up over a batch of
scenes with the weights of its fields. Model outputs enter through :class:`ScenePrediction`, ground truth through
:class:`SceneTargets`.

Panoptic part (naver/panst3r criterion/losses.py, panoptic.py, matcher.py):
- Hungarian matching per scene and per decoder layer (``matching.hungarian_match``);
- sigmoid focal class loss (alpha 0.25, gamma 2) against one-hot targets, unmatched queries all-zero,
  ``sum / num_masks``;
- mask BCE and dice per (matched query, view) on random points, ``sum / num_masks / V``; views where the segment is
  absent count too and push the query's mask there towards 0;
- deep supervision: the same three losses on every auxiliary layer, each with its own matching, summed.
``num_masks`` is the number of ground-truth segments in the batch (at least 1), as DETR.

Geometry part (naver/must3r engine/losses.py ``ConfLoss(Regr3D)``): predicted and GT global points (frame of view 0's
camera) are divided by their own mean distance to that frame's origin over the valid pixels of all views, and the
local points by the *same* factor, so local and global stay related by a rigid motion (camera poses are recovered
without scale, method.md section 4). Each pixel then costs ``conf * |pred - gt| - alpha * log(conf)``, averaged over
valid pixels, for the global and the local pointmap (one shared confidence).

Cross-view pose term (not in MUSt3R): per view, the rigid Procrustes fit from the predicted local to the predicted
global points is the camera the prediction implies; its rotation and translation are compared with the GT camera
(the same fit on the GT points). Why: trained from scratch on a CPU budget, the global pointmap settles on copying
each view's local points (training_probe.md: relative rotation error stayed at the no-rotation baseline for 7k steps
while per-view depth learned). Per pixel, the regression loss lets confidence absorb that error and spreads the
signal over thousands of independent residuals; the pose term pools each view into one 6-DoF error that cannot be
discounted by confidence and whose gradient rotates the whole view's global points coherently. It is zero for a
perfect prediction, invariant to the global scale, and weighted separately (``pose_*_weight``; 0 disables it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from panst3r_splat.core.procrustes import weighted_procrustes
from panst3r_splat.core.training.correspondence import correspondence_loss, patch_correspondences
from panst3r_splat.core.training.descriptors import descriptor_loss, pixel_correspondences, sample_query_pixels
from panst3r_splat.core.training.matching import (
    NUM_POINTS,
    MatchCostWeights,
    check_scene_targets,
    hungarian_match,
    point_sample,
    sample_coords,
    sample_gt_masks,
)

LOSS_CLASS = "loss_class"
LOSS_MASK_BCE = "loss_mask_bce"
LOSS_MASK_DICE = "loss_mask_dice"
LOSS_PTS_GLOBAL = "loss_pts_global"
LOSS_PTS_LOCAL = "loss_pts_local"
LOSS_POSE_ROTATION = "loss_pose_rotation"
LOSS_POSE_TRANSLATION = "loss_pose_translation"
LOSS_CORRESPONDENCE = "loss_correspondence"
LOSS_DESCRIPTOR = "loss_descriptor"
DESCRIPTOR_NCE = "descriptor_nce"
"""The plain mean InfoNCE of the descriptors (logged, not in the total; ``loss_descriptor`` is confidence-weighted)."""
LOSS_TOTAL = "loss_total"


def aux_key(layer: int, name: str) -> str:
    """Name of an auxiliary layer's loss term, e.g. ``aux0/loss_class``."""
    return f"aux{layer}/{name}"


MEMORY_PASS = "memory"
"""Prefix of the geometry terms of the memory pass's pointmaps, e.g. ``memory/loss_pts_global``."""


# ----------------------------------------------------------------------------------------------- inputs / outputs


@dataclass(frozen=True)
class MaskOutputs:
    """Class and mask predictions of one decoder layer for one scene."""

    class_logits: Float[Tensor, "Q K"]
    """Per-query class logits (sigmoid focal loss; softmax in the matching cost)."""
    mask_logits: Float[Tensor, "V Q h w"]
    """Per-view, per-query mask logits (h = H/2 in PanSt3R)."""


@dataclass(frozen=True)
class ScenePrediction:
    """What the losses need from the model for one scene."""

    masks: MaskOutputs | None
    """Final decoder layer (None: no panoptic loss, for training the geometry alone)."""
    aux_masks: tuple[MaskOutputs, ...] = ()
    """Earlier decoder layers, for deep supervision (empty: none)."""
    pointmaps_raw: Float[Tensor, "V H W 7"] | None = None
    """``[global xyz (frame of view 0), local xyz (own camera, OpenCV), conf]`` before activation; None: no geometry
    loss (for a model whose geometry is frozen)."""
    pointmaps_memory_raw: Float[Tensor, "V H W 7"] | None = None
    """The same from the memory pass (``PanSt3R.forward(memory_pass_pointmaps=True)``); None: no such terms."""
    patch_tokens: tuple[Float[Tensor, "V T D"], ...] = ()
    """Patch tokens (row-major over the patch grid) for the correspondence loss, e.g. the encoder's and the
    decoder's; empty: no such term."""
    descriptors_raw: Float[Tensor, "V H W Dd1"] | None = None
    """Raw descriptor-head output (``activate_descriptors``); None: no descriptor loss."""


@dataclass(frozen=True)
class SceneTargets:
    """Ground truth of one scene."""

    gt_masks: Bool[Tensor, "S V H W"]
    """Multi-view binary mask of each segment (one per thing instance and per stuff class present)."""
    gt_classes: Int[Tensor, " S"]
    """Index of each segment's class into the K class logits (class-table id - 1)."""
    gt_pts3d_world: Float[Tensor, "V H W 3"] | None = None
    """Points in the frame of view 0's camera (OpenCV axes)."""
    gt_pts3d_local: Float[Tensor, "V H W 3"] | None = None
    """Points in each view's own camera frame (OpenCV axes)."""
    valid: Bool[Tensor, "V H W"] | None = None
    """Pixels with a valid GT point (values elsewhere are ignored, NaN and inf included)."""
    pixel_queries: Int[Tensor, "V P"] | None = None
    """Query pixels of the descriptor loss (flat indices), drawn ahead (e.g. by a data worker); None: drawn by the
    criterion."""
    pixel_matches: Int[Tensor, "V V P"] | None = None
    """Their ground-truth counterparts (``descriptors.pixel_correspondences``), with ``pixel_queries``."""


@dataclass(frozen=True)
class Pointmaps:
    """Activated pointmaps of one scene."""

    pts_global: Float[Tensor, "V H W 3"]
    pts_local: Float[Tensor, "V H W 3"]
    conf: Float[Tensor, "V H W"]
    """``1 + exp(raw) >= 1``."""


@dataclass(frozen=True)
class CriterionOutput:
    """Losses of a batch: the weighted total for ``backward()`` and every unweighted term for the logs."""

    total: Float[Tensor, ""]
    terms: dict[str, Tensor] = field(default_factory=dict)
    """Unweighted scalar terms keyed by the ``LOSS_*`` constants (``aux_key(i, ...)`` for auxiliary layers)."""
    matches: tuple[tuple[Tensor, Tensor], ...] = ()
    """Final-layer ``(query_idx, gt_idx)`` of every scene."""


# ----------------------------------------------------------------------------------------------- panoptic losses


def sigmoid_focal_loss_sum(
    class_logits: Float[Tensor, "Q K"],
    gt_classes: Int[Tensor, " S"],
    query_idx: Int[Tensor, " M"],
    gt_idx: Int[Tensor, " M"],
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Float[Tensor, ""]:
    """Sigmoid focal loss (Lin et al. 2017) summed over queries and classes; the caller divides by ``num_masks``.

    Matched query ``query_idx[i]`` has the one-hot target of class ``gt_classes[gt_idx[i]]``; others all zeros.
    """
    targets = torch.zeros_like(class_logits)
    targets[query_idx, gt_classes[gt_idx]] = 1.0
    prob = class_logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(class_logits, targets, reduction="none")
    p_t = prob * targets + (1.0 - prob) * (1.0 - targets)
    alpha_t = alpha * targets + (1.0 - alpha) * (1.0 - targets)
    return (alpha_t * ce * (1.0 - p_t) ** gamma).sum()


def mask_losses_at(
    pred_logits: Float[Tensor, "M V h w"],
    gt_masks: Bool[Tensor, "M V H W"],
    coords: Float[Tensor, "M V P 2"],
) -> tuple[Float[Tensor, ""], Float[Tensor, ""]]:
    """BCE and dice of matched (prediction, target) pairs at the given points, ``sum over (pair, view) / V``.

    Per (pair, view): BCE is the mean over the points; dice ``1 - (2 sum p t + 1) / (sum p + sum t + 1)``.
    """
    n_pairs, n_views = pred_logits.shape[:2]
    if n_pairs == 0:
        zero = pred_logits.sum() * 0.0
        return zero, zero
    flat_coords = coords.flatten(0, 1)  # [M*V, P, 2]
    pred = point_sample(pred_logits.flatten(0, 1)[:, None], flat_coords)[:, 0]  # [M*V, P]
    gt = sample_gt_masks(gt_masks.flatten(0, 1)[:, None], flat_coords)[:, 0]
    bce = F.binary_cross_entropy_with_logits(pred, gt, reduction="none").mean(-1)
    prob = pred.sigmoid()
    dice = 1.0 - (2.0 * (prob * gt).sum(-1) + 1.0) / (prob.sum(-1) + gt.sum(-1) + 1.0)
    return bce.sum() / n_views, dice.sum() / n_views


def _mask_losses_at(pred_logits: Tensor, gt_masks: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
    """Reference twin of :func:`mask_losses_at`: one (pair, view) at a time, with explicit formulas."""
    n_pairs, n_views = pred_logits.shape[:2]
    bce_total = pred_logits.new_zeros(())
    dice_total = pred_logits.new_zeros(())
    for m in range(n_pairs):
        for v in range(n_views):
            c = coords[m, v][None]
            x = point_sample(pred_logits[m, v][None, None], c)[0, 0]
            t = sample_gt_masks(gt_masks[m, v][None, None], c)[0, 0]
            p = torch.sigmoid(x)
            bce_total = bce_total - (t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
            dice_total = dice_total + 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return bce_total / n_views, dice_total / n_views


def mask_losses_sum(
    mask_logits: Float[Tensor, "V Q h w"],
    gt_masks: Bool[Tensor, "S V H W"],
    query_idx: Int[Tensor, " M"],
    gt_idx: Int[Tensor, " M"],
    *,
    num_points: int = NUM_POINTS,
    generator: torch.Generator | None = None,
) -> tuple[Float[Tensor, ""], Float[Tensor, ""]]:
    """Mask BCE and dice of the matched pairs on ``num_points`` random points per (pair, view); divide by num_masks."""
    pred = mask_logits[:, query_idx].transpose(0, 1)  # [M, V, h, w]
    gt = gt_masks[gt_idx]  # [M, V, H, W]
    n_pairs, n_views = pred.shape[:2]
    coords = sample_coords(num_points, n_pairs * n_views, like=pred, generator=generator)
    return mask_losses_at(pred, gt, coords.reshape(n_pairs, n_views, num_points, 2))


# ----------------------------------------------------------------------------------------------- geometry losses


def activate_pointmaps(raw: Float[Tensor, "V H W 7"]) -> Pointmaps:
    """MUSt3R head activation: NORM_EXP ``p / |p| * expm1(|p|)`` on both xyz triplets, ``conf = 1 + exp(raw)``."""

    def norm_exp(xyz: Tensor) -> Tensor:
        d = xyz.norm(dim=-1, keepdim=True)
        return xyz / d.clamp_min(1e-8) * torch.expm1(d)

    return Pointmaps(
        pts_global=norm_exp(raw[..., 0:3]), pts_local=norm_exp(raw[..., 3:6]), conf=1.0 + raw[..., 6].exp()
    )


def normalise_pointmaps(
    pts_global: Float[Tensor, "V H W 3"],
    pts_local: Float[Tensor, "V H W 3"],
    valid: Bool[Tensor, "V H W"],
) -> tuple[Float[Tensor, "V H W 3"], Float[Tensor, "V H W 3"]]:
    """Divide both pointmaps by the mean distance of the valid global points to the origin of view 0's camera.

    One factor per scene for both, as MUSt3R (``normalize_pointcloud(..., 'avg_dis')`` on the global points, the
    local ones divided by the same factor), which keeps local and global rigidly related.
    """
    factor = pts_global[valid].norm(dim=-1).sum() / valid.sum().clamp_min(1)
    factor = factor.clamp_min(1e-8)
    return pts_global / factor, pts_local / factor


def conf_regression_loss(
    pred: Float[Tensor, "V H W 3"],
    gt: Float[Tensor, "V H W 3"],
    conf: Float[Tensor, "V H W"],
    valid: Bool[Tensor, "V H W"],
    *,
    alpha: float = 0.2,
) -> Float[Tensor, ""]:
    """DUSt3R ``ConfLoss``: mean over valid pixels of ``conf * |pred - gt| - alpha * log(conf)`` (Euclidean)."""
    if not bool(valid.any()):
        return (pred.sum() + conf.sum()) * 0.0
    # Index before any arithmetic so that NaN / inf at invalid pixels cannot leak into the gradient.
    conf_v = conf[valid]
    err = _smooth_norm(pred[valid] - gt[valid])
    return (conf_v * err - alpha * conf_v.log()).mean()


def local_pointmap_loss_per_view(
    pred_local: Float[Tensor, "V H W 3"],
    gt_local: Float[Tensor, "V H W 3"],
    conf: Float[Tensor, "V H W"],
    valid: Bool[Tensor, "V H W"],
    *,
    alpha: float = 0.2,
) -> Float[Tensor, ""]:
    """Confidence-aware regression of the local pointmaps, each view's prediction and GT divided by their own mean
    distance to the camera over the valid pixels: scale-invariant per view (the model's geometry job when the
    cameras come from matches; per-view scales are then solved from the matched points)."""
    def per_view_normalised(points: Tensor) -> Tensor:
        points = torch.where(valid[..., None], points, 0.0)
        mean_distance = points.norm(dim=-1).flatten(1).sum(-1) / valid.flatten(1).sum(-1).clamp_min(1)  # [V]
        return points / mean_distance.clamp_min(1e-8)[:, None, None, None]

    return conf_regression_loss(per_view_normalised(pred_local), per_view_normalised(gt_local), conf, valid,
                                alpha=alpha)


def relative_pose_loss(
    pred_global: Float[Tensor, "V H W 3"],
    pred_local: Float[Tensor, "V H W 3"],
    gt_global: Float[Tensor, "V H W 3"],
    gt_local: Float[Tensor, "V H W 3"],
    valid: Bool[Tensor, "V H W"],
) -> tuple[Float[Tensor, ""], Float[Tensor, ""]]:
    """Per-view camera error implied by the pointmaps: ``(mean |R - R_gt|_F, mean |t - t_gt|)`` over views.

    ``(R, t)`` is the Kabsch fit ``global ~ R local + t`` over the view's valid pixels (uniform weights: early in
    training the confidence means nothing), i.e. the camera-to-view-0 pose the prediction implies; the GT pose is
    the same fit on the GT points. ``|R - R_gt|_F = 2 sqrt(2) sin(angle / 2)``. Inputs should be scale-normalised
    (:func:`normalise_pointmaps`) so ``t`` is in units of the scene's mean depth. Views with fewer than 3 valid
    pixels are skipped.
    """
    n_views = valid.shape[0]
    weights = valid.reshape(n_views, -1).to(pred_global.dtype)
    pred_local = torch.where(valid[..., None], pred_local, 0.0)
    pred_global = torch.where(valid[..., None], pred_global, 0.0)
    fit = weighted_procrustes(pred_local.reshape(n_views, -1, 3), pred_global.reshape(n_views, -1, 3), weights)
    with torch.no_grad():
        gt_fit = weighted_procrustes(
            torch.where(valid[..., None], gt_local, 0.0).reshape(n_views, -1, 3),
            torch.where(valid[..., None], gt_global, 0.0).reshape(n_views, -1, 3),
            weights,
        )
    usable = weights.sum(-1) >= 3
    if not bool(usable.any()):
        zero = (pred_global.sum() + pred_local.sum()) * 0.0
        return zero, zero
    rotation = _smooth_norm((fit.R - gt_fit.R).flatten(-2))[usable].mean()
    translation = _smooth_norm(fit.t - gt_fit.t)[usable].mean()
    return rotation, translation


def _smooth_norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """``|x|`` over the last axis with a finite gradient at 0 (``sqrt(|x|^2 + eps^2) - eps``)."""
    return (x.square().sum(-1) + eps * eps).sqrt() - eps


@dataclass(frozen=True)
class PointmapLosses:
    """Unweighted geometry terms of one scene."""

    pts_global: Float[Tensor, ""]
    pts_local: Float[Tensor, ""]
    pose_rotation: Float[Tensor, ""]
    pose_translation: Float[Tensor, ""]


def pointmap_losses(
    pred: Pointmaps,
    gt_global: Float[Tensor, "V H W 3"],
    gt_local: Float[Tensor, "V H W 3"],
    valid: Bool[Tensor, "V H W"],
    *,
    conf_alpha: float = 0.2,
    with_pose: bool = True,
) -> PointmapLosses:
    """Scale-normalise predictions and GT separately, then the confidence-aware regression and the pose terms."""
    # torch.where (not multiplication by the mask) so that NaN / inf at invalid pixels reaches neither the forward
    # values nor the gradient.
    gt_global = torch.where(valid[..., None], gt_global, 0.0)
    gt_local = torch.where(valid[..., None], gt_local, 0.0)
    pred_g = torch.where(valid[..., None], pred.pts_global, 0.0)
    pred_l = torch.where(valid[..., None], pred.pts_local, 0.0)
    pred_g, pred_l = normalise_pointmaps(pred_g, pred_l, valid)
    gt_g, gt_l = normalise_pointmaps(gt_global, gt_local, valid)
    loss_g = conf_regression_loss(pred_g, gt_g, pred.conf, valid, alpha=conf_alpha)
    loss_l = conf_regression_loss(pred_l, gt_l, pred.conf, valid, alpha=conf_alpha)
    if with_pose:
        rotation, translation = relative_pose_loss(pred_g, pred_l, gt_g, gt_l, valid)
    else:
        rotation = translation = loss_g.new_zeros(())
    return PointmapLosses(pts_global=loss_g, pts_local=loss_l, pose_rotation=rotation, pose_translation=translation)


# ----------------------------------------------------------------------------------------------- criterion


@dataclass(frozen=True)
class PanopticCriterion:
    """Weights of the PanSt3R + MUSt3R training loss; call it on a batch of scenes.

    Defaults: PanSt3R ``PanopticLoss(class_weight=1, mask_weight=20, dice_weight=1, num_points=12288)`` (the same
    weights in the matching cost), DUSt3R/MUSt3R ``ConfLoss(alpha=0.2)``, and the pose term on.
    """

    class_weight: float = 1.0
    """Sigmoid focal class loss (and ``-softmax`` probability in the matching cost)."""
    mask_weight: float = 20.0
    """Mask binary cross-entropy (and its matching cost)."""
    dice_weight: float = 1.0
    """Mask dice loss (and its matching cost)."""
    focal_alpha: float = 0.25
    """Focal-loss weight of positive targets."""
    focal_gamma: float = 2.0
    """Focal-loss focusing exponent."""
    num_points: int = NUM_POINTS
    """Random points per view for the mask costs and losses."""
    aux_weight: float = 1.0
    """Multiplier of every auxiliary layer's panoptic losses (PanSt3R: 1, i.e. equal weights)."""
    pts_global_weight: float = 1.0
    """Confidence-aware regression of the global pointmap (frame of view 0)."""
    pts_local_weight: float = 1.0
    """Confidence-aware regression of the local pointmaps."""
    conf_alpha: float = 0.2
    """``alpha`` of ``conf * err - alpha * log(conf)``."""
    pose_rotation_weight: float = 1.0
    """Cross-view term: chordal distance between the Procrustes camera rotation of the prediction and the GT one."""
    pose_translation_weight: float = 1.0
    """Cross-view term: distance between the Procrustes camera translations (scale-normalised units)."""
    memory_pass_weight: float = 0.0
    """Multiplier of the geometry terms computed again on the memory pass's pointmaps (0: not computed). Our own
    addition for training from scratch: there the reference view is marked (no ``image2_embed``) and every other
    view sees only other views, so cross-view geometry has a direct signal; inference is unchanged."""
    correspondence_weight: float = 0.0
    """InfoNCE between the patch tokens of different views at ground-truth correspondences (``correspondence.py``;
    0: not computed). Our own addition for training from scratch, in place of CroCo pre-training."""
    correspondence_temperature: float = 0.1
    """Temperature of the correspondence InfoNCE (cosine similarities divided by it)."""
    local_per_view: bool = False
    """Normalise each view's local pointmap by its own mean distance (scale-invariant per view) instead of the
    scene's global factor; for a model whose global pointmap is not trained (``pts_global_weight = 0``)."""
    descriptor_weight: float = 0.0
    """Pixel-level InfoNCE of the dense descriptors at ground-truth correspondences (``descriptors.py``; 0: off)."""
    descriptor_queries: int = 256
    """Query pixels per view for the descriptor InfoNCE."""
    descriptor_temperature: float = 0.07
    """Temperature of the descriptor InfoNCE (MASt3R's)."""

    def __call__(
        self,
        predictions: Sequence[ScenePrediction],
        targets: Sequence[SceneTargets],
        *,
        generator: torch.Generator | None = None,
    ) -> CriterionOutput:
        """Losses of a batch of scenes: panoptic sums divided by the batch's segment count, geometry averaged."""
        if len(predictions) != len(targets) or not predictions:
            raise ValueError(f"need as many targets as predictions (>= 1), got {len(predictions)} and {len(targets)}")
        n_aux = {len(p.aux_masks) for p in predictions}
        if len(n_aux) != 1:
            raise ValueError(f"every scene of a batch must have the same number of aux layers, got {sorted(n_aux)}")
        num_masks = max(sum(int(t.gt_masks.shape[0]) for t in targets), 1)
        sums: dict[str, Tensor] = {}
        matches = []
        for pred, tgt in zip(predictions, targets):
            layers = [("", pred.masks)] + [(aux_key(i, ""), aux) for i, aux in enumerate(pred.aux_masks)]
            for prefix, outputs in layers if pred.masks is not None else []:
                match, terms = self._panoptic_sums(outputs, tgt, generator)
                if not prefix:
                    matches.append(match)
                for name, value in terms.items():
                    sums[prefix + name] = sums.get(prefix + name, 0.0) + value / num_masks
            passes = [("", pred.pointmaps_raw)]
            if self.memory_pass_weight != 0.0:
                passes.append((MEMORY_PASS + "/", pred.pointmaps_memory_raw))
            for prefix, pointmaps_raw in passes:
                if pointmaps_raw is None:
                    if prefix:
                        raise ValueError("memory_pass_weight is set: the predictions need pointmaps_memory_raw "
                                         "(PanSt3R.forward(..., memory_pass_pointmaps=True))")
                    continue
                for name, value in self._geometry_terms(pointmaps_raw, tgt).items():
                    sums[prefix + name] = sums.get(prefix + name, 0.0) + value / len(predictions)
            if self.correspondence_weight != 0.0:
                value = self._correspondence_term(pred.patch_tokens, tgt)
                sums[LOSS_CORRESPONDENCE] = sums.get(LOSS_CORRESPONDENCE, 0.0) + value / len(predictions)
            if self.descriptor_weight != 0.0:
                for name, value in self._descriptor_terms(pred.descriptors_raw, tgt, generator).items():
                    sums[name] = sums.get(name, 0.0) + value / len(predictions)
        total = sum(self._weight(name) * value for name, value in sums.items())
        if not isinstance(total, Tensor):  # nothing to compute (every weight zero, no targets): a zero loss
            total = torch.zeros(())
        terms = {name: value for name, value in sums.items()}
        terms[LOSS_TOTAL] = total
        return CriterionOutput(total=total, terms=terms, matches=tuple(matches))

    def _panoptic_sums(
        self, outputs: MaskOutputs, tgt: SceneTargets, generator: torch.Generator | None
    ) -> tuple[tuple[Tensor, Tensor], dict[str, Tensor]]:
        """Matching and the three un-normalised panoptic sums of one decoder layer of one scene."""
        check_scene_targets(outputs.class_logits, outputs.mask_logits, tgt.gt_masks, tgt.gt_classes)
        cost_weights = MatchCostWeights(self.mask_weight, self.dice_weight, self.class_weight)
        query_idx, gt_idx = hungarian_match(
            outputs.class_logits,
            outputs.mask_logits,
            tgt.gt_masks,
            tgt.gt_classes,
            num_points=self.num_points,
            generator=generator,
            weights=cost_weights,
        )
        focal = sigmoid_focal_loss_sum(
            outputs.class_logits, tgt.gt_classes, query_idx, gt_idx, alpha=self.focal_alpha, gamma=self.focal_gamma
        )
        bce, dice = mask_losses_sum(
            outputs.mask_logits, tgt.gt_masks, query_idx, gt_idx, num_points=self.num_points, generator=generator
        )
        return (query_idx, gt_idx), {LOSS_CLASS: focal, LOSS_MASK_BCE: bce, LOSS_MASK_DICE: dice}

    def _geometry_terms(self, pointmaps_raw: Tensor, tgt: SceneTargets) -> dict[str, Tensor]:
        """Geometry terms of one scene (the pose term is skipped when both of its weights are zero)."""
        if tgt.gt_pts3d_world is None or tgt.gt_pts3d_local is None or tgt.valid is None:
            raise ValueError("the prediction has pointmaps: give gt_pts3d_world, gt_pts3d_local and valid targets")
        if self.local_per_view:
            pred = activate_pointmaps(pointmaps_raw)
            return {LOSS_PTS_LOCAL: local_pointmap_loss_per_view(pred.pts_local, tgt.gt_pts3d_local, pred.conf,
                                                                 tgt.valid, alpha=self.conf_alpha)}
        losses = pointmap_losses(
            activate_pointmaps(pointmaps_raw),
            tgt.gt_pts3d_world,
            tgt.gt_pts3d_local,
            tgt.valid,
            conf_alpha=self.conf_alpha,
            with_pose=(self.pose_rotation_weight != 0.0 or self.pose_translation_weight != 0.0),
        )
        return {
            LOSS_PTS_GLOBAL: losses.pts_global,
            LOSS_PTS_LOCAL: losses.pts_local,
            LOSS_POSE_ROTATION: losses.pose_rotation,
            LOSS_POSE_TRANSLATION: losses.pose_translation,
        }

    def _correspondence_term(self, token_sets: Sequence[Tensor], tgt: SceneTargets) -> Tensor:
        """Mean correspondence InfoNCE of one scene over its token sets."""
        if not token_sets:
            raise ValueError("correspondence_weight is set: the predictions need patch_tokens")
        if tgt.gt_pts3d_world is None or tgt.gt_pts3d_local is None or tgt.valid is None:
            raise ValueError("the correspondence loss needs gt_pts3d_world, gt_pts3d_local and valid targets")
        V, H, W = tgt.valid.shape
        T = int(token_sets[0].shape[1])
        patch = round((H * W / T) ** 0.5)
        if patch * patch * T != H * W:
            raise ValueError(f"{T} tokens do not tile a {W}x{H} image with square patches")
        matches = patch_correspondences(tgt.gt_pts3d_world, tgt.gt_pts3d_local, tgt.valid, patch)
        losses = [correspondence_loss(tokens, matches, temperature=self.correspondence_temperature)
                  for tokens in token_sets]
        return torch.stack(losses).mean()

    def _descriptor_terms(
        self, descriptors_raw: Tensor | None, tgt: SceneTargets, generator: torch.Generator | None
    ) -> dict[str, Tensor]:
        """Confidence-weighted descriptor InfoNCE of one scene, and its plain mean for the logs."""
        if descriptors_raw is None:
            raise ValueError("descriptor_weight is set: the predictions need descriptors_raw (a model with a "
                             "descriptor head)")
        if tgt.gt_pts3d_world is None or tgt.gt_pts3d_local is None or tgt.valid is None:
            raise ValueError("the descriptor loss needs gt_pts3d_world, gt_pts3d_local and valid targets")
        raw = descriptors_raw.float()
        descriptors, conf = F.normalize(raw[..., :-1], dim=-1), 1.0 + raw[..., -1].exp()
        if tgt.pixel_queries is not None and tgt.pixel_matches is not None:
            queries, matches = tgt.pixel_queries, tgt.pixel_matches
        else:
            queries = sample_query_pixels(tgt.valid, self.descriptor_queries, generator)
            matches = pixel_correspondences(tgt.gt_pts3d_world, tgt.gt_pts3d_local, tgt.valid, queries)
        loss, nce = descriptor_loss(descriptors, conf, queries, matches, temperature=self.descriptor_temperature,
                                    generator=generator)
        return {LOSS_DESCRIPTOR: loss, DESCRIPTOR_NCE: nce}

    def term_weight(self, name: str) -> float:
        """Weight of a logged term in the total (e.g. ``aux0/loss_class``, ``loss_descriptor``)."""
        return self._weight(name)

    def _weight(self, name: str) -> float:
        """Weight of a term in the total (auxiliary terms: their base weight times ``aux_weight``)."""
        prefix, base = name.split("/", 1) if "/" in name else ("", name)
        weight = {
            LOSS_CLASS: self.class_weight,
            LOSS_MASK_BCE: self.mask_weight,
            LOSS_MASK_DICE: self.dice_weight,
            LOSS_PTS_GLOBAL: self.pts_global_weight,
            LOSS_PTS_LOCAL: self.pts_local_weight,
            LOSS_POSE_ROTATION: self.pose_rotation_weight,
            LOSS_POSE_TRANSLATION: self.pose_translation_weight,
            LOSS_CORRESPONDENCE: self.correspondence_weight,
            LOSS_DESCRIPTOR: self.descriptor_weight,
            DESCRIPTOR_NCE: 0.0,
        }[base]
        if prefix == MEMORY_PASS:
            return weight * self.memory_pass_weight
        return weight * self.aux_weight if prefix else weight
