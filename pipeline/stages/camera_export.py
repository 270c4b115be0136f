"""`panst3r-splat export --predictions PRED --cameras-out DIR`: a predictions folder's cameras for other tools.

    DIR/transforms.json          nerfstudio (`ns-train splatfacto --data DIR`): OpenGL camera axes, per-frame
                                 intrinsics `fl_x fl_y cx cy w h` (pixel centres at +0.5), `ply_file_path`
    DIR/images/<frame>.png       the images as the model saw them (the cameras' resolution)
    DIR/sparse_pc.ply            the fused point cloud of the connected views (`points.ply`'s points)
    DIR/colmap/sparse/0/         COLMAP text model: `cameras.txt` (one PINHOLE camera per view), `images.txt`
                                 (world-to-camera quaternion + translation, no 2D points), `points3D.txt` (the
                                 fused points with empty tracks)

Views without a camera (`camera_ok` False) are left out. Both tools put pixel centres at +0.5 (nerfstudio's
`Cameras`, COLMAP's image coordinates), so `cx, cy` are ours + 0.5; the camera axes go through
`conventions.opencv_to_opengl` for nerfstudio (COLMAP's camera axes are OpenCV's).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image

from panst3r_splat.core.atomic_io import swap_into_place
from panst3r_splat.core.predictions import POINT_CONF_THRESHOLD, frame_stem, load_predictions, write_points_ply
from panst3r_splat.core.transforms import rotation_to_quaternion
from panst3r_splat.pipeline.datasets.conventions import intrinsics_to_nerfstudio, opencv_to_opengl
from panst3r_splat.pipeline.errors import UserError

logger = logging.getLogger(__name__)

TRANSFORMS_FILE = "transforms.json"
POINTS_FILE = "sparse_pc.ply"
COLMAP_DIR = "colmap/sparse/0"
MAX_COLMAP_POINTS = 100_000
"""Points written to points3D.txt (at random, fixed seed); the PLY keeps them all."""


@dataclass(frozen=True)
class CameraExport:
    """What `export_cameras` wrote."""

    out: Path
    names: tuple[str, ...]
    num_points: int


def _transforms_json(names: tuple[str, ...], K: np.ndarray, T_world_cam: np.ndarray, width: int, height: int
                     ) -> dict:
    c2w = opencv_to_opengl(torch.from_numpy(T_world_cam).double()).numpy()
    fx, fy, cx, cy = (v[:, 0].numpy() for v in intrinsics_to_nerfstudio(torch.from_numpy(K).double()))
    frames = [{"file_path": f"images/{n}.png", "transform_matrix": c2w[i].tolist(), "fl_x": float(fx[i]),
               "fl_y": float(fy[i]), "cx": float(cx[i]), "cy": float(cy[i]), "w": width, "h": height}
              for i, n in enumerate(names)]
    return {"camera_model": "OPENCV", "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames,
            "ply_file_path": POINTS_FILE}


def _write_colmap(folder: Path, names: tuple[str, ...], K: np.ndarray, T_world_cam: np.ndarray, width: int,
                  height: int, points: np.ndarray, colors: np.ndarray) -> None:
    folder.mkdir(parents=True)
    cams = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    imgs = ["# Image list with two lines of data per image:",
            "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for i, name in enumerate(names):
        fx, fy, cx, cy = K[i, 0, 0], K[i, 1, 1], K[i, 0, 2] + 0.5, K[i, 1, 2] + 0.5  # COLMAP: centres at +0.5
        cams.append(f"{i + 1} PINHOLE {width} {height} {fx:.10g} {fy:.10g} {cx:.10g} {cy:.10g}")
        T_cam_world = np.linalg.inv(T_world_cam[i])
        q, t = rotation_to_quaternion(T_cam_world[:3, :3]), T_cam_world[:3, 3]
        imgs.append(f"{i + 1} " + " ".join(f"{v:.12g}" for v in (*q, *t)) + f" {i + 1} {name}.png")
        imgs.append("")
    pts = ["# 3D point list with one line of data per point:",
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    keep = np.arange(len(points))
    if len(points) > MAX_COLMAP_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(points), MAX_COLMAP_POINTS, replace=False))
    pts += [f"{j + 1} {p[0]:.7g} {p[1]:.7g} {p[2]:.7g} {c[0]} {c[1]} {c[2]} 0"
            for j, (p, c) in enumerate(zip(points[keep], colors[keep]))]
    for file, lines in (("cameras.txt", cams), ("images.txt", imgs), ("points3D.txt", pts)):
        (folder / file).write_text("\n".join(lines) + "\n")


def export_cameras(predictions: Path, out: Path, *, conf_threshold: float = POINT_CONF_THRESHOLD) -> CameraExport:
    """Write the cameras of a predictions folder as nerfstudio `transforms.json` and a COLMAP text model."""
    from panst3r_splat.pipeline.stages.fit import inputs_from_predictions

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--cameras-out {out} exists and is not an empty folder; choose a new folder")
    inputs = inputs_from_predictions(Path(predictions), conf_threshold=conf_threshold)  # connected views only
    names = inputs.cameras.names
    K = inputs.cameras.K.double().numpy()
    T = inputs.cameras.T_world_cam.double().numpy()
    W, H = inputs.cameras.width, inputs.cameras.height
    pred = load_predictions(Path(predictions))
    index = {frame_stem(str(n)): i for i, n in enumerate(pred.image_names)}

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    try:
        for name in names:
            Image.fromarray(pred.images[index[name]]).save(tmp / "images" / f"{name}.png")
        (tmp / TRANSFORMS_FILE).write_text(json.dumps(_transforms_json(names, K, T, W, H), indent=2) + "\n")
        write_points_ply(tmp / POINTS_FILE, inputs.points, inputs.colors)
        _write_colmap(tmp / COLMAP_DIR, names, K, T, W, H, inputs.points, inputs.colors)
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        swap_into_place(tmp, out, str(os.getpid()))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("export: %d cameras (%s) -> %s (transforms.json, colmap/sparse/0/)", len(names),
                pred.camera_source, out)
    return CameraExport(out=out, names=names, num_points=len(inputs.points))
