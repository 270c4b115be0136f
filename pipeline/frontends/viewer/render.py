"""Server-side rendering of the browser's view with the project's rasteriser (no viser here).

The browser reports its camera as a rotation `wxyz` and a `position` (OpenCV axes, camera-to-world, as viser's
`CameraHandle`), a vertical field of view and the canvas aspect. `browser_camera` turns that into the project's
`T_world_cam` and `K` (integer pixel coordinates at pixel centres, CLI.md) for an image of a chosen height, so the
image, stretched over the canvas, lines up with what viser draws in 3D (frusta, labels) on top of it.
`render_view` rasterises the visible Gaussians with given colours and returns RGB, expected depth (z, what viser's
background depth compositing expects) and alpha; `render_segment_map` is the per-pixel segment id of the same view
(`splat.lifting.render_segments`), used for clicks and the legend's pixel counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8

from panst3r_splat.core.transforms import quaternion_to_rotation
from panst3r_splat.splat.gaussians import Cameras, GaussianScene
from panst3r_splat.splat.lifting import render_segments
from panst3r_splat.splat.rasterize import rasterize

FAR_DEPTH = 160.0
"""Depth given to empty pixels: viser's background depth encoding tops out at 167.77 scene units."""


@dataclass(frozen=True)
class ViewCamera:
    """One pinhole camera to render (OpenCV axes)."""

    T_world_cam: Float[np.ndarray, "4 4"]
    """Camera-to-world."""
    K: Float[np.ndarray, "3 3"]
    """Intrinsics, integer pixel coordinates at pixel centres."""
    width: int
    height: int


@dataclass(frozen=True)
class ViewImage:
    """A rendered view."""

    rgb: UInt8[np.ndarray, "H W 3"]
    depth: Float[np.ndarray, "H W"]
    """Expected z-depth; FAR_DEPTH where (almost) nothing was hit."""
    alpha: Float[np.ndarray, "H W"]


def image_size(aspect: float, long_side: int) -> tuple[int, int]:
    """(width, height) with the given aspect (width / height) whose longer side is `long_side` pixels."""
    if aspect <= 0 or long_side <= 0:
        raise ValueError(f"need a positive aspect and size, got aspect={aspect}, long_side={long_side}")
    if aspect >= 1.0:
        return long_side, max(1, round(long_side / aspect))
    return max(1, round(long_side * aspect)), long_side


def browser_camera(wxyz: Float[np.ndarray, "4"], position: Float[np.ndarray, "3"], fov_y: float, aspect: float,
                   long_side: int) -> ViewCamera:
    """The browser's camera (viser: OpenCV axes, camera-to-world rotation and position, vertical fov in radians,
    canvas width / height) as an image of `long_side` pixels on its longer side."""
    width, height = image_size(aspect, long_side)
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation(wxyz)
    T[:3, 3] = np.asarray(position, np.float64)
    # The canvas spans the image plane's edges, pixel edges -0.5 and H - 0.5: focal length from the full height.
    focal = 0.5 * height / math.tan(0.5 * fov_y)
    K = np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    return ViewCamera(T_world_cam=T, K=K, width=width, height=height)


def input_camera_fov(cameras: Cameras, index: int) -> tuple[float, float]:
    """Vertical field of view (radians) and aspect of an input camera, for its frustum and to fly into it."""
    fy = float(cameras.K[index, 1, 1])
    return 2.0 * math.atan(0.5 * cameras.height / fy), cameras.width / cameras.height


def scaled_input_camera(cameras: Cameras, index: int, long_side: int) -> ViewCamera:
    """An input camera resized so that its longer side is `long_side` (thumbnails)."""
    scale = long_side / max(cameras.width, cameras.height)
    width, height = max(1, round(cameras.width * scale)), max(1, round(cameras.height * scale))
    K = cameras.K[index].double().cpu().numpy().copy()
    # Pixel centres at integers: a pixel edge at -0.5 maps to -0.5, so the principal point scales about -0.5.
    K[0, 0] *= width / cameras.width
    K[1, 1] *= height / cameras.height
    K[0, 2] = (K[0, 2] + 0.5) * width / cameras.width - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * height / cameras.height - 0.5
    return ViewCamera(T_world_cam=cameras.T_world_cam[index].double().cpu().numpy(), K=K, width=width, height=height)


def _viewmats(camera: ViewCamera, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    T = torch.as_tensor(camera.T_world_cam, dtype=torch.float64)
    R, t = T[:3, :3], T[:3, 3]
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3] = R.T
    viewmat[:3, 3] = -R.T @ t
    K = torch.as_tensor(camera.K, dtype=torch.float64)
    return viewmat[None].to(device, torch.float32), K[None].to(device, torch.float32)


@torch.no_grad()
def render_view(scene: GaussianScene, colors: Float[np.ndarray, "N 3"] | torch.Tensor, camera: ViewCamera, *,
                background: tuple[int, int, int] = (255, 255, 255)) -> ViewImage:
    """Rasterise `scene` (already cut down to the visible Gaussians) with per-Gaussian `colors` in [0, 1]."""
    device = scene.device
    viewmats, Ks = _viewmats(camera, device)
    bg = torch.tensor([[c / 255.0 for c in background]], device=device, dtype=torch.float32)
    if len(scene) == 0:
        rgb = np.empty((camera.height, camera.width, 3), np.uint8)
        rgb[:] = background
        return ViewImage(rgb=rgb, depth=np.full((camera.height, camera.width), FAR_DEPTH, np.float32),
                         alpha=np.zeros((camera.height, camera.width), np.float32))
    colors = torch.as_tensor(colors, dtype=torch.float32).to(device)
    render, alphas, _ = rasterize(scene.means, scene.quats, scene.scales, scene.opacities, colors, viewmats, Ks,
                                  camera.width, camera.height, render_mode="RGB+ED", backgrounds=bg)
    render, alpha = render[0].float().cpu().numpy(), alphas[0, ..., 0].float().cpu().numpy()
    rgb = np.clip(np.round(render[..., :3] * 255.0), 0, 255).astype(np.uint8)
    depth = np.where(alpha > 0.5, render[..., 3], FAR_DEPTH).astype(np.float32)
    return ViewImage(rgb=rgb, depth=depth, alpha=alpha)


@torch.no_grad()
def render_segment_map(scene: GaussianScene, camera: ViewCamera) -> Int[np.ndarray, "H W"]:
    """Segment id of every pixel of the view (the segment with the largest blending weight; 0 where empty)."""
    if len(scene) == 0:
        return np.zeros((camera.height, camera.width), np.int64)
    viewmats, Ks = _viewmats(camera, scene.device)
    seg = render_segments(scene.means, scene.quats, scene.scales, scene.opacities, scene.segment_ids, viewmats, Ks,
                          camera.width, camera.height)
    return seg[0].cpu().numpy()
