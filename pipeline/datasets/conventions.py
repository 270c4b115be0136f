"""Every camera and frame convention at the nerfstudio boundary, in one module (STYLE.md principle 4).

The project (CLI.md): OpenCV camera axes (x right, y down, z forward), `T_world_cam` camera-to-world, and `K` with
integer pixel coordinates at pixel centres (image centre ((W - 1) / 2, (H - 1) / 2)).

nerfstudio 1.1.5: `Cameras.camera_to_worlds` is camera-to-world with OpenGL camera axes (x right, y up, z backward),
and pixel centres sit at +0.5 (`Cameras.get_image_coords(pixel_offset=0.5)`, and splatfacto hands its `K` straight
to gsplat, whose pixel centres are at +0.5), so nerfstudio's `cx, cy` are ours + 0.5. Switching the camera axes
negates the camera's y and z columns, a right multiplication, so it commutes with any change of world frame.

Dataparser normalisation: nerfstudio's dataparsers move the poses into a normalised world,
`x_ns = scale * (R @ x_data + t)` (`auto_orient_and_center_poses`, then `auto_scale_poses`), and record it as
`dataparser_transforms.json` = `{"transform": [R | t] (3 x 4), "scale": scale}`. `NormalisationTransform` is that
record: it maps points and cameras both ways, so renders of the normalised scene can be mapped back to the
dataset's frames, and it gives the Sim(3) from the normalised (scene) frame back to the data frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping

import torch
from jaxtyping import Float
from torch import Tensor

from panst3r_splat.core.transforms import Similarity

if TYPE_CHECKING:  # nerfstudio is imported lazily: this module is also used without it
    from nerfstudio.cameras.cameras import Cameras as NerfstudioCameras

NERFSTUDIO_PIXEL_OFFSET = 0.5
"""nerfstudio's principal point minus ours: its pixel (col, row) has its centre at (col + 0.5, row + 0.5)."""

Orientation = Literal["up", "pca", "vertical", "none"]
Centering = Literal["poses", "focus", "none"]


def opencv_to_opengl(T_world_cam: Float[Tensor, "*B 4 4"] | Float[Tensor, "*B 3 4"]) -> Tensor:
    """Camera-to-world with OpenCV camera axes -> with OpenGL camera axes (negate the camera's y and z columns).

    Accepts 4x4 or 3x4 matrices; the camera centre is unchanged.
    """
    out = T_world_cam.clone()
    out[..., :3, 1:3] = -out[..., :3, 1:3]
    return out


def opengl_to_opencv(c2w: Float[Tensor, "*B 4 4"] | Float[Tensor, "*B 3 4"]) -> Tensor:
    """Inverse of `opencv_to_opengl` (the same axis flip: it is an involution)."""
    out = c2w.clone()
    out[..., :3, 1:3] = -out[..., :3, 1:3]
    return out


def as_4x4(T: Float[Tensor, "*B 3 4"] | Float[Tensor, "*B 4 4"]) -> Float[Tensor, "*B 4 4"]:
    """Append the homogeneous row [0 0 0 1] to 3x4 transforms (4x4 ones are returned as a copy)."""
    if T.shape[-2:] == (4, 4):
        return T.clone()
    if T.shape[-2:] != (3, 4):
        raise ValueError(f"expected [..., 3, 4] or [..., 4, 4] transforms, got {tuple(T.shape)}")
    bottom = torch.zeros(*T.shape[:-2], 1, 4, dtype=T.dtype, device=T.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([T, bottom], dim=-2)


def intrinsics_to_nerfstudio(K: Float[Tensor, "*B 3 3"]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Our `K` -> nerfstudio's (fx, fy, cx, cy), each shaped [*B, 1] as `Cameras` takes them."""
    return (K[..., 0, 0:1].clone(), K[..., 1, 1:2].clone(), K[..., 0, 2:3] + NERFSTUDIO_PIXEL_OFFSET,
            K[..., 1, 2:3] + NERFSTUDIO_PIXEL_OFFSET)


def intrinsics_from_nerfstudio(fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor) -> Float[Tensor, "*B 3 3"]:
    """nerfstudio's (fx, fy, cx, cy), each [*B, 1] as `Cameras` holds them -> our pixel-centre `K` [*B, 3, 3]."""
    if any(v.ndim == 0 or v.shape[-1] != 1 for v in (fx, fy, cx, cy)):
        raise ValueError("fx, fy, cx, cy must be shaped [..., 1], as nerfstudio's Cameras holds them")
    fx, fy, cx, cy = (v[..., 0] for v in (fx, fy, cx, cy))
    K = torch.zeros(*fx.shape, 3, 3, dtype=fx.dtype, device=fx.device)
    K[..., 0, 0] = fx
    K[..., 1, 1] = fy
    K[..., 0, 2] = cx - NERFSTUDIO_PIXEL_OFFSET
    K[..., 1, 2] = cy - NERFSTUDIO_PIXEL_OFFSET
    K[..., 2, 2] = 1.0
    return K


def to_nerfstudio_cameras(K: Float[Tensor, "C 3 3"], T_world_cam: Float[Tensor, "C 4 4"], width: int,
                          height: int) -> "NerfstudioCameras":
    """Pinhole cameras in our conventions -> a nerfstudio `Cameras` batch (OpenGL axes, +0.5 pixel centres)."""
    from nerfstudio.cameras.cameras import Cameras as NerfstudioCameras
    from nerfstudio.cameras.cameras import CameraType

    if K.ndim != 3 or T_world_cam.shape != (K.shape[0], 4, 4):
        raise ValueError(f"need K (C, 3, 3) and T_world_cam (C, 4, 4), got {tuple(K.shape)}, {tuple(T_world_cam.shape)}")
    fx, fy, cx, cy = intrinsics_to_nerfstudio(K.float())
    C = K.shape[0]
    return NerfstudioCameras(
        camera_to_worlds=opencv_to_opengl(T_world_cam.float())[:, :3, :4], fx=fx, fy=fy, cx=cx, cy=cy,
        width=torch.full((C, 1), int(width), dtype=torch.long), height=torch.full((C, 1), int(height), dtype=torch.long),
        camera_type=CameraType.PERSPECTIVE,
    )


def from_nerfstudio_cameras(cameras: "NerfstudioCameras") -> tuple[Float[Tensor, "C 3 3"], Float[Tensor, "C 4 4"]]:
    """A flat nerfstudio `Cameras` batch -> our (K, T_world_cam), OpenCV axes, in nerfstudio's world frame."""
    c2w = cameras.camera_to_worlds.reshape(-1, 3, 4)
    K = intrinsics_from_nerfstudio(cameras.fx.reshape(-1, 1), cameras.fy.reshape(-1, 1), cameras.cx.reshape(-1, 1),
                                   cameras.cy.reshape(-1, 1))
    return K, opengl_to_opencv(as_4x4(c2w))


@dataclass(frozen=True)
class NormalisationTransform:
    """The dataparser's similarity from the data frame to nerfstudio's normalised frame:
    `x_ns = scale * (R @ x_data + t)`."""

    R: tuple[tuple[float, float, float], ...]
    """Rotation (3 x 3)."""
    t: tuple[float, float, float]
    """Translation, applied before the scale."""
    scale: float
    """Uniform scale (> 0), applied last (nerfstudio's `dataparser_scale`)."""

    def __post_init__(self) -> None:
        R = torch.tensor(self.R, dtype=torch.float64)
        if R.shape != (3, 3) or len(self.t) != 3:
            raise ValueError(f"a normalisation needs R (3, 3) and t (3,), got {tuple(R.shape)} and {len(self.t)}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"the normalisation scale must be a positive number, got {self.scale}")
        if not torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-5) or float(torch.det(R)) < 0:
            raise ValueError("the normalisation's R must be a rotation (orthonormal, det +1)")

    @staticmethod
    def identity() -> "NormalisationTransform":
        return NormalisationTransform(R=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), t=(0.0, 0.0, 0.0),
                                      scale=1.0)

    @staticmethod
    def from_matrix(transform: Float[Tensor, "3 4"], scale: float) -> "NormalisationTransform":
        """From nerfstudio's (`dataparser_transform` [R | t], `dataparser_scale`)."""
        T = torch.as_tensor(transform, dtype=torch.float64)
        return NormalisationTransform(R=tuple(tuple(float(x) for x in row) for row in T[:3, :3].tolist()),
                                      t=tuple(float(x) for x in T[:3, 3].tolist()), scale=float(scale))

    def matrix(self, dtype: torch.dtype = torch.float32) -> Float[Tensor, "3 4"]:
        """[R | t] as nerfstudio's `DataparserOutputs.dataparser_transform` holds it."""
        out = torch.zeros(3, 4, dtype=dtype)
        out[:, :3] = torch.tensor(self.R, dtype=dtype)
        out[:, 3] = torch.tensor(self.t, dtype=dtype)
        return out

    def to_json(self) -> dict[str, Any]:
        """The `dataparser_transforms.json` content nerfstudio writes."""
        return {"transform": self.matrix(torch.float64).tolist(), "scale": self.scale}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> "NormalisationTransform":
        """Read the `dataparser_transforms.json` content."""
        try:
            return NormalisationTransform.from_matrix(torch.tensor(data["transform"]), float(data["scale"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"not a dataparser transform ({err}); expected {{'transform': 3x4, 'scale': s}}") from err

    def similarity(self, like: Tensor | None = None) -> Similarity:
        """Data frame -> normalised frame as the one similarity type, `x_ns = scale R x + scale t`, in the dtype and
        on the device of `like` (float64 on the CPU without it)."""
        opts = {"dtype": torch.float64} if like is None else {"dtype": like.dtype, "device": like.device}
        return Similarity(scale=torch.tensor(self.scale, **opts), R=torch.tensor(self.R, **opts),
                          t=self.scale * torch.tensor(self.t, **opts))

    def to_data(self, like: Tensor | None = None) -> Similarity:
        """Normalised frame -> data frame (the inverse similarity), as `Alignment` stores a scene-to-dataset one."""
        return self.similarity(like).inverse()

    def apply_points(self, points: Float[Tensor, "*B N 3"]) -> Float[Tensor, "*B N 3"]:
        """Data frame -> normalised frame."""
        return self.similarity(points).apply(points)

    def invert_points(self, points: Float[Tensor, "*B N 3"]) -> Float[Tensor, "*B N 3"]:
        """Normalised frame -> data frame."""
        return self.to_data(points).apply(points)

    def apply_T_world_cam(self, T_world_cam: Float[Tensor, "*B 4 4"]) -> Float[Tensor, "*B 4 4"]:
        """Camera-to-world of the data frame -> of the normalised frame (any camera axes: R acts on the left)."""
        return self.similarity(T_world_cam).transform_T_world_cam(T_world_cam)

    def invert_T_world_cam(self, T_world_cam: Float[Tensor, "*B 4 4"]) -> Float[Tensor, "*B 4 4"]:
        """Inverse of `apply_T_world_cam`."""
        return self.to_data(T_world_cam).transform_T_world_cam(T_world_cam)


def normalisation_from_poses(T_world_cam: Float[Tensor, "V 4 4"], *, orientation: Orientation = "up",
                             center: Centering = "poses", auto_scale: bool = True,
                             scale_factor: float = 1.0) -> NormalisationTransform:
    """The normalisation nerfstudio's own dataparsers would choose for these cameras (OpenCV camera-to-world).

    Orientation and centring are nerfstudio's `auto_orient_and_center_poses` on the OpenGL poses ('up' turns the
    mean camera up vector to +z, nerfstudio's world up); `auto_scale` then divides by the largest absolute camera
    coordinate, so the cameras fit in [-1, 1]^3, and `scale_factor` multiplies on top (as `NerfstudioDataParser`).
    """
    from nerfstudio.cameras.camera_utils import auto_orient_and_center_poses

    if T_world_cam.ndim != 3 or T_world_cam.shape[1:] != (4, 4) or len(T_world_cam) == 0:
        raise ValueError(f"need at least one camera-to-world (V, 4, 4), got {tuple(T_world_cam.shape)}")
    if not scale_factor > 0:
        raise ValueError(f"scale_factor must be positive, got {scale_factor}")
    poses = opencv_to_opengl(T_world_cam.float())  # float32, as nerfstudio builds its own matrices
    oriented, transform = auto_orient_and_center_poses(poses, method=orientation, center_method=center)
    scale = 1.0
    if auto_scale:
        extent = float(torch.max(torch.abs(oriented[:, :3, 3])))
        scale = 1.0 / extent if extent > 0 else 1.0
    return NormalisationTransform.from_matrix(transform[:3, :4], scale * scale_factor)
