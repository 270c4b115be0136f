"""Frames and transforms, one of each: the similarity type, look-at cameras, rotation angles, rigid inverses and
quaternions. Every other module takes them from here.

Conventions (CLI.md): OpenCV camera axes (x right, y down, z forward); ``T_world_cam`` is camera-to-world (4 x 4),
``T_cam_world`` its inverse; a similarity maps ``x -> scale * R @ x + t``; quaternions are ``(w, x, y, z)``.
Torch code stays differentiable; the NumPy helpers are for files and set-up. Quaternion conversions come from
SciPy's ``Rotation`` (a well-kept implementation), not from hand-written formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from jaxtyping import Float, Float64
from scipy.spatial.transform import Rotation
from torch import Tensor

# ------------------------------------------------------------------------------------------------ similarity


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * R @ x + t``, batched over leading dimensions (torch, differentiable)."""

    scale: Float[Tensor, "*B"]
    """Uniform scale (1 for a rigid transform)."""
    R: Float[Tensor, "*B 3 3"]
    """Rotation."""
    t: Float[Tensor, "*B 3"]
    """Translation, applied after the scale."""
    residual: Optional[Float[Tensor, "*B"]] = None
    """When fitted to point pairs: the weighted RMS distance ``sqrt(sum_i w_i |scale R src_i + t - dst_i|^2)``
    (normalised weights); None otherwise."""

    @staticmethod
    def identity(dtype: torch.dtype = torch.float64) -> "Similarity":
        return Similarity(scale=torch.ones((), dtype=dtype), R=torch.eye(3, dtype=dtype),
                          t=torch.zeros(3, dtype=dtype))

    @staticmethod
    def from_parts(scale: float, R, t, dtype: torch.dtype = torch.float64) -> "Similarity":
        """From plain numbers (a file's record): ``R`` 3 x 3, ``t`` 3."""
        return Similarity(scale=torch.tensor(float(scale), dtype=dtype), R=torch.as_tensor(R, dtype=dtype),
                          t=torch.as_tensor(t, dtype=dtype))

    def apply(self, points: Float[Tensor, "*B P 3"]) -> Float[Tensor, "*B P 3"]:
        """Map points from the source frame to the destination frame."""
        return self.scale[..., None, None] * points @ self.R.transpose(-1, -2) + self.t[..., None, :]

    def matrix(self) -> Float[Tensor, "*B 4 4"]:
        """4 x 4 homogeneous matrix ``[[scale R, t], [0, 1]]``."""
        out = torch.zeros(*self.R.shape[:-2], 4, 4, dtype=self.R.dtype, device=self.R.device)
        out[..., :3, :3] = self.scale[..., None, None] * self.R
        out[..., :3, 3] = self.t
        out[..., 3, 3] = 1.0
        return out

    def inverse(self) -> "Similarity":
        """``x -> (R^T x - R^T t) / scale`` (the residual does not carry over)."""
        R_inv = self.R.transpose(-1, -2)
        scale = 1.0 / self.scale
        return Similarity(scale=scale, R=R_inv, t=-scale[..., None] * (R_inv @ self.t[..., None])[..., 0])

    def transform_T_world_cam(self, T_world_cam: Float[Tensor, "*views 4 4"]) -> Float[Tensor, "*views 4 4"]:
        """Camera-to-world poses of the source world expressed in the destination world.

        Rotations are composed with ``R``; camera centres go through the whole similarity; the camera axes stay
        orthonormal (the scale changes distances, not the camera). Only for an unbatched similarity.
        """
        if self.R.ndim != 2:
            raise ValueError("transform_T_world_cam needs an unbatched Similarity")
        out = T_world_cam.clone()
        out[..., :3, :3] = self.R @ T_world_cam[..., :3, :3]
        out[..., :3, 3] = self.scale * (T_world_cam[..., :3, 3] @ self.R.T) + self.t
        return out


# ------------------------------------------------------------------------------------------------- rotations


def rotation_angle_deg(R: np.ndarray | Tensor) -> np.ndarray | np.floating | Tensor:
    """Angle of rotation matrices ``(..., 3, 3)`` in degrees, torch or NumPy, from ``atan2(|skew|, trace - 1)``
    (accurate near 0 and 180 degrees, unlike ``arccos`` of the trace)."""
    if isinstance(R, Tensor):
        skew = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
        trace = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
        return torch.rad2deg(torch.atan2(skew.norm(dim=-1), trace - 1.0))
    R = np.asarray(R, dtype=np.float64)
    skew = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    trace = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    return np.degrees(np.arctan2(np.linalg.norm(skew, axis=-1), trace - 1.0))


def relative_rotation_deg(R_a: np.ndarray | Tensor, R_b: np.ndarray | Tensor) -> np.ndarray | np.floating | Tensor:
    """Angle (degrees) of ``R_a^T R_b``: how far apart two rotations (or two cameras' orientations) are."""
    return rotation_angle_deg(R_a.swapaxes(-1, -2) @ R_b if isinstance(R_a, np.ndarray)
                              else R_a.transpose(-1, -2) @ R_b)


def nearest_rotation(M: Float[np.ndarray, "*batch 3 3"]) -> Float[np.ndarray, "*batch 3 3"]:
    """The proper rotation closest to ``M`` in the Frobenius norm (SVD projection, det +1)."""
    U, _, Vt = np.linalg.svd(M)
    D = np.ones(M.shape[:-1])
    D[..., -1] = np.sign(np.linalg.det(U @ Vt))
    return (U * D[..., None, :]) @ Vt


def rotation_to_quaternion(R: Float[np.ndarray, "*batch 3 3"]) -> Float64[np.ndarray, "*batch 4"]:
    """Unit quaternions ``(w, x, y, z)`` with ``w >= 0`` of rotation matrices (COLMAP's and viser's order)."""
    R = np.asarray(R, dtype=np.float64)
    xyzw = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    wxyz *= np.where(wxyz[:, :1] < 0, -1.0, 1.0)
    return wxyz.reshape(R.shape[:-2] + (4,))


def quaternion_to_rotation(wxyz: Float[np.ndarray, "*batch 4"]) -> Float64[np.ndarray, "*batch 3 3"]:
    """Rotation matrices of (not necessarily unit) quaternions ``(w, x, y, z)``."""
    q = np.asarray(wxyz, dtype=np.float64)
    xyzw = np.concatenate([q.reshape(-1, 4)[:, 1:], q.reshape(-1, 4)[:, :1]], axis=1)
    return Rotation.from_quat(xyzw).as_matrix().reshape(q.shape[:-1] + (3, 3))


# ------------------------------------------------------------------------------------------------ intrinsics


def resize_pixels(sx: float, sy: float) -> Float64[np.ndarray, "3 3"]:
    """Pixel coordinates of an image -> those of the image resized by ``(sx, sy)``, pixel centres at integers
    (CLI.md): ``u' = sx (u + 0.5) - 0.5`` per axis."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def scale_intrinsics(K: Float[Tensor, "*C 3 3"], sx: float, sy: float) -> Float[Tensor, "*C 3 3"]:
    """Intrinsics of the same camera after resizing its image by ``(sx, sy)``: ``fx' = sx fx``,
    ``cx' = sx (cx + 0.5) - 0.5``."""
    return torch.as_tensor(resize_pixels(sx, sy), dtype=K.dtype, device=K.device) @ K


# ------------------------------------------------------------------------------------------------ rigid poses


def rigid_inverse(T: Float[Tensor, "*B 4 4"]) -> Float[Tensor, "*B 4 4"]:
    """Inverse of rigid transforms ``[R t; 0 1] -> [R^T -R^T t; 0 1]`` (exact, no general matrix inverse)."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = torch.zeros_like(T)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1.0
    return out


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0]),
            roll: float = 0.0) -> Float64[np.ndarray, "4 4"]:
    """``T_world_cam`` (OpenCV axes) of a camera at ``position`` looking at ``target`` with ``up`` pointing up on
    screen, then rolled by ``roll`` radians about its optical axis. Looking straight along ``up``, any
    perpendicular right vector is taken."""
    position = np.asarray(position, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - position
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-8:
        x = np.cross(z, np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = math.cos(roll), math.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = x, y, z, position
    return out


__all__ = [
    "Similarity",
    "look_at",
    "nearest_rotation",
    "quaternion_to_rotation",
    "relative_rotation_deg",
    "resize_pixels",
    "rigid_inverse",
    "rotation_angle_deg",
    "rotation_to_quaternion",
    "scale_intrinsics",
]
