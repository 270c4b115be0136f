"""Per-view pinhole intrinsics from local pointmaps (the first step of the camera solver).

The focal is the dust3r Weiszfeld estimate of :func:`panst3r_splat.core.geometry.estimate_focal_weiszfeld` (reused,
not re-implemented), computed in float64 so that an exact pointmap gives its focal back to ~1e-12; the principal
point is fixed (project pixel convention: integer pixel coordinates are pixel centres).
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float

from panst3r_splat.core.geometry import PrincipalPoint, estimate_focal_weiszfeld, principal_point


def intrinsics_from_local_pointmaps(
    pts3d_local: Float[np.ndarray, "V H W 3"],
    mode: PrincipalPoint = PrincipalPoint.CENTER,
) -> Float[np.ndarray, "V 3 3"]:
    """``K`` of every view: Weiszfeld focal of its local pointmap (OpenCV camera frame), principal point per ``mode``.

    Non-finite points are replaced by the origin first (the estimator already ignores points at ``z = 0``).
    """
    if pts3d_local.ndim != 4 or pts3d_local.shape[-1] != 3:
        raise ValueError(f"pts3d_local must be (V, H, W, 3), got shape {pts3d_local.shape}")
    _, height, width, _ = pts3d_local.shape
    pts = torch.from_numpy(np.nan_to_num(np.asarray(pts3d_local, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0))
    cx, cy = principal_point(height, width, mode)
    focal = estimate_focal_weiszfeld(pts, (cx, cy)).numpy()  # [V]
    K = np.zeros((len(focal), 3, 3), dtype=np.float64)
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    K[:, 0, 2] = cx
    K[:, 1, 2] = cy
    K[:, 2, 2] = 1.0
    return K
