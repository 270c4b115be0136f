"""Robust rotation averaging over all view pairs: camera-to-world rotations from relative rotations.

Initialisation: the spectral (eigenvector) solution of the chordal problem (Arie-Nachimson et al. 2012; Martinec &
Pajdla 2007): the 3 leading eigenvectors of the block matrix of weighted relative rotations, each 3x3 block projected
onto SO(3). Then iteratively re-weighted least squares on the Lie algebra with a Cauchy loss (Chatterjee & Govindu,
"Robust relative rotation averaging", TPAMI 2018), which down-weights pairs whose rotation is wrong.

Convention: ``R_world_cam[v]`` maps camera ``v`` directions to the world; a pair measures ``R_b_a = R_b^T R_a``.
The gauge: ``R_world_cam[0] = I`` (the world is the camera of the first view given).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int
from scipy.spatial.transform import Rotation

from panst3r_splat.core.transforms import nearest_rotation, rotation_angle_deg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RotationAveragingOptions:
    """IRLS settings."""

    iterations: int = 30
    """Most IRLS iterations."""
    cauchy_scale_deg: float = 2.0
    """Scale of the Cauchy loss on an edge's residual angle."""
    tolerance_rad: float = 1e-12
    """Stop when the largest update is below this."""


def _spectral_init(num_views: int, edges: np.ndarray, R_rel: np.ndarray, weights: np.ndarray) -> np.ndarray:
    M = np.zeros((3 * num_views, 3 * num_views))
    degree = np.zeros(num_views)
    for (a, b), R, w in zip(edges, R_rel, weights):
        M[3 * b:3 * b + 3, 3 * a:3 * a + 3] += w * R
        M[3 * a:3 * a + 3, 3 * b:3 * b + 3] += w * R.T
        degree[a] += w
        degree[b] += w
    M += np.kron(np.diag(degree), np.eye(3))
    _, vecs = np.linalg.eigh(M)
    G = vecs[:, -3:].reshape(num_views, 3, 3)  # block b ~ R_b^T Q
    if np.sum(np.linalg.det(G)) < 0:
        G[..., 0] *= -1.0
    C = nearest_rotation(G)
    R_world_cam = np.transpose(C, (0, 2, 1))
    return R_world_cam[0].T[None] @ R_world_cam  # gauge: view 0 is the world


def edge_residuals_deg(
    R_world_cam: Float[np.ndarray, "V 3 3"], edges: Int[np.ndarray, "E 2"], R_rel: Float[np.ndarray, "E 3 3"]
) -> Float[np.ndarray, "E"]:
    """Angle between each measured ``R_b_a`` and the one implied by ``R_world_cam``, in degrees."""
    a, b = edges[:, 0], edges[:, 1]
    E = R_world_cam[b] @ R_rel @ np.transpose(R_world_cam[a], (0, 2, 1))
    return rotation_angle_deg(E)


def average_rotations(
    num_views: int,
    edges: Int[np.ndarray, "E 2"],
    R_rel: Float[np.ndarray, "E 3 3"],
    weights: Float[np.ndarray, "E"],
    options: RotationAveragingOptions = RotationAveragingOptions(),
) -> Float[np.ndarray, "V 3 3"]:
    """``R_world_cam`` of ``num_views`` views from relative rotations ``R_rel[e] = R_b^T R_a`` of ``edges[e] = (a, b)``.

    The view graph must be connected (the caller keeps one connected component); view 0 is the world frame.
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if num_views < 2 or len(edges) == 0:
        raise ValueError(f"rotation averaging needs >= 2 views and >= 1 edge, got {num_views} and {len(edges)}")
    R = _spectral_init(num_views, edges, R_rel, weights)
    a, b = edges[:, 0], edges[:, 1]
    incidence = np.zeros((len(edges), num_views))
    incidence[np.arange(len(edges)), a] = 1.0
    incidence[np.arange(len(edges)), b] = -1.0
    incidence = incidence[:, 1:]  # gauge: omega_0 = 0
    scale = np.radians(options.cauchy_scale_deg)
    for _ in range(options.iterations):
        E = R[b] @ R_rel @ np.transpose(R[a], (0, 2, 1))
        e = Rotation.from_matrix(E).as_rotvec()  # [E, 3]; omega_a - omega_b = e to first order
        r = np.linalg.norm(e, axis=1)
        w = np.sqrt(weights / (1.0 + (r / scale) ** 2))
        omega, *_ = np.linalg.lstsq(incidence * w[:, None], e * w[:, None], rcond=None)  # [V-1, 3]
        R[1:] = Rotation.from_rotvec(omega).as_matrix() @ R[1:]
        if np.abs(omega).max() < options.tolerance_rad:
            break
    return R
