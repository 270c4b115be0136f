"""A tiny analytic scene for the splat tests: a two-coloured plane seen by a few shifted pinhole cameras.

The plane z = 3 is red for x < 0 and blue for x >= 0 (segments 1 and 2); images and segment maps are computed in
closed form, so tests need no rasteriser to make their targets.
"""

from __future__ import annotations

import numpy as np
import torch

from panst3r_splat.splat.gaussians import Cameras, GaussianScene, init_from_points

WIDTH, HEIGHT = 32, 24
FOCAL = 30.0
DEPTH = 3.0
RED = (0.9, 0.1, 0.1)
BLUE = (0.1, 0.2, 0.9)


def toy_cameras(num_views: int = 3) -> Cameras:
    """Cameras looking along +z from x = -0.2 .. 0.2 (pixel centres at integer coordinates)."""
    K = torch.tensor([[FOCAL, 0.0, (WIDTH - 1) / 2], [0.0, FOCAL, (HEIGHT - 1) / 2], [0.0, 0.0, 1.0]])
    Ts = []
    for tx in np.linspace(-0.2, 0.2, num_views):
        T = torch.eye(4)
        T[0, 3] = float(tx)
        Ts.append(T)
    return Cameras(K=K.repeat(num_views, 1, 1), T_world_cam=torch.stack(Ts), width=WIDTH, height=HEIGHT,
                   names=tuple(f"view{i:02d}" for i in range(num_views)))


def toy_targets(cameras: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (C, H, W, 3) and segment maps (C, H, W) of the plane seen by the cameras."""
    u = torch.arange(WIDTH, dtype=torch.float32)
    images, segments = [], []
    for c in range(len(cameras)):
        x = cameras.T_world_cam[c, 0, 3] + (u - cameras.K[c, 0, 2]) * DEPTH / cameras.K[c, 0, 0]  # [W]
        left = (x < 0)[None, :].expand(HEIGHT, WIDTH)
        img = torch.where(left[..., None], torch.tensor(RED), torch.tensor(BLUE))
        images.append(img)
        segments.append(torch.where(left, 1, 2))
    return torch.stack(images), torch.stack(segments).to(torch.int64)


def toy_scene(nx: int = 10, ny: int = 7, grey: bool = True) -> GaussianScene:
    """Grey (or correctly coloured) Gaussians on a grid of the plane."""
    xs, ys = np.meshgrid(np.linspace(-2.0, 2.0, nx), np.linspace(-1.5, 1.5, ny))
    pts = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, DEPTH)], axis=1)
    if grey:
        cols = np.full_like(pts, 0.5)
    else:
        cols = np.where((pts[:, 0] < 0)[:, None], np.array(RED), np.array(BLUE))
    return init_from_points(pts, cols, budget=len(pts), init_opacity=0.5)
