"""Camera accuracy over all view pairs (the issue #17 evaluation): relative rotation error and translation-direction
error of every pair, a view without a camera counting as 180 degrees."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from panst3r_splat.core.transforms import rotation_angle_deg

UNCONNECTED_DEG = 180.0
"""Error of a pair with a view that has no camera."""


@dataclass(frozen=True)
class PairErrors:
    """Errors of every unordered pair ``i < j``."""

    rotation_deg: Float[np.ndarray, "P"]
    """Angle of ``(R_i^T R_j)_pred^T (R_i^T R_j)_gt``."""
    translation_deg: Float[np.ndarray, "P"]
    """Angle between the predicted and true direction of ``c_j - c_i`` in camera ``i``'s frame (NaN when the true
    baseline is zero)."""
    connected_share: float
    """Share of views with a (finite) camera."""

    @property
    def median_rotation_deg(self) -> float:
        return float(np.median(self.rotation_deg))

    @property
    def mean_rotation_deg(self) -> float:
        return float(np.mean(self.rotation_deg))

    @property
    def median_translation_deg(self) -> float:
        finite = self.translation_deg[np.isfinite(self.translation_deg)]
        return float(np.median(finite)) if finite.size else float("nan")


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nv < 1e-12:
        return float("nan")
    if nu < 1e-12:
        return UNCONNECTED_DEG
    return float(np.degrees(np.arctan2(np.linalg.norm(np.cross(u, v)), np.dot(u, v))))


def pair_errors(pred_T_world_cam: Float[np.ndarray, "V 4 4"], gt_T_world_cam: Float[np.ndarray, "V 4 4"]) -> PairErrors:
    """Relative-pose errors of every pair (frame- and scale-free: no alignment needed)."""
    pred = np.asarray(pred_T_world_cam, dtype=np.float64)
    gt = np.asarray(gt_T_world_cam, dtype=np.float64)
    ok = np.isfinite(pred).all(axis=(1, 2))
    rot, trans = [], []
    for i, j in itertools.combinations(range(len(pred)), 2):
        if not (ok[i] and ok[j]):
            rot.append(UNCONNECTED_DEG)
            trans.append(UNCONNECTED_DEG)
            continue
        Rp = pred[i, :3, :3].T @ pred[j, :3, :3]
        Rg = gt[i, :3, :3].T @ gt[j, :3, :3]
        rot.append(float(rotation_angle_deg(Rp.T @ Rg)))
        tp = pred[i, :3, :3].T @ (pred[j, :3, 3] - pred[i, :3, 3])
        tg = gt[i, :3, :3].T @ (gt[j, :3, 3] - gt[i, :3, 3])
        trans.append(_angle_deg(tp, tg))
    return PairErrors(np.array(rot), np.array(trans), float(ok.mean()))
