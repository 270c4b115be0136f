"""A tiny labelled scene (two blobs on a floor, four cameras) to try the viewer on and to test it with."""

from __future__ import annotations

import numpy as np
import torch

from panst3r_splat.core.transforms import look_at
from panst3r_splat.splat.gaussians import Cameras, GaussianScene, rgb_to_sh_dc
from panst3r_splat.splat.scene_io import FittedScene, make_segment

FLOOR, CHAIR, SOFA = 1, 5, 9
"""Segment ids of the sample scene."""
SAMPLE_RGB = {CHAIR: (220, 40, 40), SOFA: (40, 70, 220), FLOOR: (230, 200, 60)}
"""Colours of its three objects, far from every label colour of theirs (so a screenshot tells the modes apart)."""


def sample_scene(*, seed: int = 0) -> FittedScene:
    """A red chair and a blue sofa (120 opaque Gaussians each) on a yellow floor (144), seen by four cameras on a
    ring of radius 3 looking at the origin from above."""
    rng = np.random.default_rng(seed)
    means, colors, segs, scales = [], [], [], []
    for center, seg in (((-0.5, 0.0, 0.0), CHAIR), ((0.5, 0.0, 0.0), SOFA)):
        means.append(rng.normal(center, 0.13, (120, 3)))
        scales.append(np.full((120, 3), 0.05))
        colors += [SAMPLE_RGB[seg]] * 120
        segs += [seg] * 120
    grid = np.stack(np.meshgrid(np.linspace(-1.2, 1.2, 12), np.linspace(-1.2, 1.2, 12)), -1).reshape(-1, 2)
    means.append(np.stack([grid[:, 0], np.full(len(grid), 0.35), grid[:, 1]], axis=1))
    scales.append(np.tile([0.09, 0.01, 0.09], (len(grid), 1)))
    colors += [SAMPLE_RGB[FLOOR]] * len(grid)
    segs += [FLOOR] * len(grid)
    n = len(segs)
    gaussians = GaussianScene(
        means=torch.tensor(np.concatenate(means), dtype=torch.float32),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        log_scales=torch.tensor(np.log(np.concatenate(scales)), dtype=torch.float32),
        opacity_logits=torch.full((n,), 4.0), sh=rgb_to_sh_dc(torch.tensor(colors) / 255.0)[:, None],
        reg_colors=torch.full((n, 3), 0.5), segment_ids=torch.tensor(segs), label_conf=torch.ones(n))
    angles = np.linspace(0.0, 2.0 * np.pi, 5)[:-1]
    T = np.stack([look_at(np.array([3.0 * np.sin(a), -1.2, -3.0 * np.cos(a)]), np.zeros(3), up=np.array([0.0, -1.0, 0.0]))
                  for a in angles])  # world y points down
    K = torch.tensor([[150.0, 0.0, 79.5], [0.0, 150.0, 59.5], [0.0, 0.0, 1.0]]).repeat(len(T), 1, 1)
    cameras = Cameras(K=K, T_world_cam=torch.tensor(T, dtype=torch.float32), width=160, height=120,
                      names=tuple(f"view{i}" for i in range(len(T))))
    segments = (make_segment(FLOOR, 1, 2, "floor", False), make_segment(CHAIR, 4, 5, "chair", True, 0.9),
                make_segment(SOFA, 5, 6, "sofa", True, 0.8))
    return FittedScene(gaussians=gaussians, cameras=cameras, segments=segments, info={"source": "viewer sample"})


def sample_predictions(scene: FittedScene, *, long_side: int | None = None):
    """A predictions folder's content for `scene`: its own renders from its cameras (resized to `long_side`) as
    the input images, their depth back-projected as the pointmaps and their segment maps as the merged panoptic
    maps. Returns the `Predictions` and the segment list `save_predictions` takes."""
    from panst3r_splat.core.predictions import Predictions
    from panst3r_splat.pipeline.frontends.viewer.render import render_segment_map, render_view, scaled_input_camera

    cams = scene.cameras
    side = long_side or max(cams.width, cams.height)
    views = [scaled_input_camera(cams, i, side) for i in range(len(cams))]
    V, H, W = len(cams), views[0].height, views[0].width
    images, pts_local, pts_world, panoptic = [], [], [], []
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    for camera in views:
        view = render_view(scene.gaussians, scene.gaussians.base_colors, camera)
        K, T = camera.K, camera.T_world_cam
        local = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) * \
            np.minimum(view.depth, 10.0)[..., None]
        images.append(view.rgb)
        pts_local.append(local)
        pts_world.append(local @ T[:3, :3].T + T[:3, 3])
        panoptic.append(render_segment_map(scene.gaussians, camera))
    names = [s.class_name for s in scene.segments]
    Q, K_cls = len(scene.segments), len(names)
    pred = Predictions(
        image_names=np.array([f"{n}.png" for n in cams.names]), images=np.stack(images),
        pts3d=np.stack(pts_world).astype(np.float32), pts3d_local=np.stack(pts_local).astype(np.float32),
        conf=np.where(np.stack(panoptic) > 0, 5.0, 1.5).astype(np.float32),
        mask_logits=np.zeros((V, Q, H // 2, W // 2), np.float32), class_logits=np.eye(Q, K_cls, dtype=np.float32),
        class_names=np.array(names), class_ids=np.array([s.class_id for s in scene.segments], np.int32),
        isthing=np.array([s.isthing for s in scene.segments]), orig_hw=np.tile([H, W], (V, 1)).astype(np.int32),
        to_orig=np.tile(np.eye(3, dtype=np.float32), (V, 1, 1)), keyframes=np.arange(V),
        K=np.stack([c.K for c in views]).astype(np.float32), T_world_cam=cams.T_world_cam.numpy(), panoptic=np.stack(panoptic).astype(np.int32))
    segments = [{"id": s.id, "category_id": q, "isthing": s.isthing, "score": s.score, "query_id": q}
                for q, s in enumerate(scene.segments)]
    return pred, segments
