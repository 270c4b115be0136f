"""Cameras from COLMAP (``predict --cameras sfm``): structure from motion on the photos, through pycolmap.

For photos whose model geometry is weak, the classical pipeline gives the cameras and the model gives the dense
points:

1. the photos, resized so their long side is at most ``SfmOptions.max_image_size`` (orientation already applied),
   are written to a scratch folder; COLMAP extracts SIFT features (one shared camera when the photos have one size,
   else one per photo; COLMAP's default SIMPLE_RADIAL model, whose radial term is left out afterwards: the project
   renders pinhole cameras), matches every pair, and maps them, globally (GLOMAP) and, when that leaves views out,
   incrementally; the reconstruction with the most registered views wins;
2. each registered view's intrinsics go to model resolution through the photo's resize and ``to_orig``
   (COLMAP puts pixel centres at +0.5, this project at integers);
3. each view's scale is the median ratio of COLMAP's depth of the 3D points it observes to the model's local depth
   at those pixels (at least ``min_observations`` of them); its dense points are the model's local depth, scaled,
   back-projected through COLMAP's intrinsics and placed by COLMAP's pose.

Views COLMAP does not register, or with too few observations for a scale, get NaN cameras and
``camera_ok = False``. World frame and units: COLMAP's (arbitrary origin and scale), OpenCV axes.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image

from panst3r_splat.core.cameras.intrinsics import intrinsics_from_local_pointmaps
from panst3r_splat.core.cameras.solver import CameraSolution
from panst3r_splat.core.geometry import PrincipalPoint
from panst3r_splat.core.images import capped_hw, resize_affine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SfmOptions:
    """COLMAP settings of ``--cameras sfm``."""

    max_image_size: int = 1600
    """Long side (pixels) of the photos COLMAP sees (never enlarged)."""
    min_observations: int = 10
    """3D points a registered view must observe for its scale to be measured (else it stays unconnected)."""
    num_threads: int = 1
    """Threads of COLMAP's feature extraction and matching (-1: every core; mapping always runs on one). More are
    faster on large photos, but COLMAP's result then changes from run to run (on the test room, 4 instead of 8
    views registered in 3 runs of 8); one thread gives the same cameras every time."""
    seed: int = 0
    """COLMAP's random seed (RANSAC, mapping)."""


@dataclass(frozen=True)
class SfmResult:
    """The cameras and the dense points placed by them."""

    solution: CameraSolution
    """Cameras at model resolution (``rotation_residual_deg`` is NaN: no rotation averaging)."""
    pts3d: Float[np.ndarray, "V H W 3"]
    """Each view's local depth, scaled, back-projected with COLMAP's intrinsics and placed (NaN when unconnected)."""
    registered: int
    """Views COLMAP registered (some may still lack a scale)."""


def solve_cameras_sfm(
    photos: Sequence[UInt8[np.ndarray, "h w 3"]],
    pts3d_local: Float[np.ndarray, "V H W 3"],
    to_orig: Float[np.ndarray, "V 3 3"],
    options: SfmOptions = SfmOptions(),
) -> SfmResult:
    """COLMAP on the photos (original resolution, any sizes) -> cameras and dense points; see the module docstring.

    Raises ``ValueError`` when fewer than 2 views get a camera.
    """
    import pycolmap  # imported here: only this camera source needs it

    start = time.perf_counter()
    local = np.asarray(pts3d_local, dtype=np.float64)
    V = local.shape[0]
    if len(photos) != V or to_orig.shape[0] != V:
        raise ValueError(f"{len(photos)} photos and {to_orig.shape[0]} to_orig maps for {V} pointmaps")
    pycolmap.set_random_seed(options.seed)
    pycolmap.logging.minloglevel = 2  # COLMAP's progress lines off; errors stay (our own log says what happened)
    with tempfile.TemporaryDirectory(prefix="panst3r_sfm_") as scratch:
        folder = Path(scratch)
        model_to_sfm = _write_images(folder / "images", photos, to_orig, options.max_image_size)
        one_size = len({photo.shape[:2] for photo in photos}) == 1  # one shared COLMAP camera
        reconstruction = _reconstruct(pycolmap, folder, one_size, options)
        if reconstruction is None:
            raise ValueError(f"COLMAP registered none of the {V} photos (too little texture or overlap)")
        cameras = _read_cameras(reconstruction, V, model_to_sfm)
    K_local = intrinsics_from_local_pointmaps(local, PrincipalPoint.CENTER)
    K = np.where(np.isfinite(cameras.K), cameras.K, K_local)
    scale = _scales(cameras, local, options.min_observations)
    ok = np.isfinite(scale)
    if ok.sum() < 2:
        raise ValueError(f"COLMAP gave {int(ok.sum())} of {V} views a camera with a measurable scale "
                         f"({cameras.registered} registered)")
    T = np.where(ok[:, None, None], cameras.T_world_cam, np.nan)
    solution = CameraSolution(
        T_world_cam=T, K=K, scale=np.where(ok, scale, np.nan), camera_ok=ok, num_pairs=cameras.covisible,
        num_inliers=cameras.observations, rotation_residual_deg=np.full(V, np.nan),
        reprojection_px=np.where(ok, cameras.reprojection_px, np.nan), seconds=time.perf_counter() - start)
    return SfmResult(solution=solution, pts3d=_dense_points(local, K, T, scale, ok), registered=cameras.registered)


def _write_images(folder: Path, photos: Sequence[np.ndarray], to_orig: np.ndarray,
                  max_size: int) -> np.ndarray:
    """The photos as PNGs ``00000.png, ...`` at long side <= ``max_size``; returns model pixel -> that image's pixel
    ``(V, 3, 3)`` (pixel centres at integers)."""
    folder.mkdir(parents=True)
    maps = []
    for v, rgb in enumerate(photos):
        orig_hw = rgb.shape[:2]
        out_hw = capped_hw(orig_hw, max_size)
        image = Image.fromarray(np.ascontiguousarray(rgb))
        if out_hw != orig_hw:
            image = image.resize((out_hw[1], out_hw[0]), Image.Resampling.LANCZOS)
        image.save(folder / f"{v:05d}.png")
        maps.append(resize_affine(orig_hw, out_hw) @ np.asarray(to_orig[v], dtype=np.float64))
    return np.stack(maps)


def _reconstruct(pycolmap, folder: Path, one_size: bool, options: SfmOptions):
    """Features, exhaustive matching, global mapping (and incremental when views are left out): the largest model."""
    database, images = folder / "database.db", folder / "images"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = options.num_threads
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    mode = pycolmap.CameraMode.SINGLE if one_size else pycolmap.CameraMode.PER_IMAGE
    pycolmap.extract_features(database, images, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
    num_images = len(list(images.iterdir()))
    best = None
    for mapper in ("global", "incremental"):
        out = folder / mapper
        out.mkdir()
        if mapper == "global":
            settings = pycolmap.GlobalPipelineOptions()
            settings.num_threads, settings.random_seed = 1, options.seed
            models = pycolmap.global_mapping(database, images, out, settings)
        else:
            settings = pycolmap.IncrementalPipelineOptions()
            settings.num_threads, settings.random_seed = 1, options.seed
            models = pycolmap.incremental_mapping(database, images, out, settings)
        for model in models.values():
            if best is None or model.num_reg_images() > best.num_reg_images():
                best = model
        log.info("sfm: %s mapping registered %d of %d photos", mapper,
                 0 if best is None else best.num_reg_images(), num_images)
        if best is not None and best.num_reg_images() == num_images:
            break
    return best


@dataclass(frozen=True)
class _Registered:
    T_world_cam: np.ndarray  # [V, 4, 4], NaN where not registered
    K: np.ndarray  # [V, 3, 3] at model resolution, NaN where not registered
    points_uv: list  # per view: [M, 2] model pixel coordinates of its observations (None where not registered)
    points_depth: list  # per view: [M] COLMAP depth of those observations
    reprojection_px: np.ndarray  # [V] median reprojection error (model pixels)
    observations: np.ndarray  # [V] int
    covisible: np.ndarray  # [V] int: registered views sharing a 3D point
    registered: int


def _read_cameras(reconstruction, V: int, model_to_sfm: np.ndarray) -> _Registered:
    """Poses, model-resolution intrinsics and observations of the registered views."""
    T = np.full((V, 4, 4), np.nan)
    K = np.full((V, 3, 3), np.nan)
    uv: list = [None] * V
    depth: list = [None] * V
    reproj = np.full(V, np.nan)
    observations = np.zeros(V, dtype=np.int64)
    tracks: dict[int, set[int]] = defaultdict(set)
    for image in reconstruction.images.values():
        if not image.has_pose:
            continue
        v = int(Path(image.name).stem)
        cam_from_world = np.eye(4)
        cam_from_world[:3] = image.cam_from_world().matrix()
        T[v] = np.linalg.inv(cam_from_world)
        centred = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])  # COLMAP: centres at +0.5
        K_sfm = centred @ image.camera.calibration_matrix()
        sfm_to_model = np.linalg.inv(model_to_sfm[v])
        K[v] = sfm_to_model @ K_sfm
        seen = [p for p in image.points2D if p.has_point3D()]
        observations[v] = len(seen)
        if not seen:
            continue
        xyz = np.array([reconstruction.points3D[p.point3D_id].xyz for p in seen])
        cam = xyz @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]  # [M, 3]
        xy = np.array([p.xy for p in seen]) - 0.5  # [M, 2] sfm pixel, centres at integers
        projected = cam @ K_sfm.T
        error = np.linalg.norm(projected[:, :2] / projected[:, 2:3] - xy, axis=1)
        reproj[v] = float(np.median(error)) / float(np.sqrt(abs(np.linalg.det(model_to_sfm[v][:2, :2]))))
        uv[v] = (np.c_[xy, np.ones(len(xy))] @ sfm_to_model.T)[:, :2]
        depth[v] = cam[:, 2]
        for p in seen:
            tracks[p.point3D_id].add(v)
    covisible = np.zeros(V, dtype=np.int64)
    for v in range(V):
        covisible[v] = len({w for views in tracks.values() if v in views for w in views} - {v})
    return _Registered(T_world_cam=T, K=K, points_uv=uv, points_depth=depth, reprojection_px=reproj,
                       observations=observations, covisible=covisible,
                       registered=int(np.isfinite(T[:, 0, 0]).sum()))


def _scales(cameras: _Registered, local: np.ndarray, min_observations: int) -> np.ndarray:
    """[V] median of COLMAP depth / local depth at the observed pixels (NaN: unregistered or too few)."""
    V, H, W, _ = local.shape
    scale = np.full(V, np.nan)
    for v in range(V):
        if cameras.points_uv[v] is None:
            continue
        u = np.rint(cameras.points_uv[v][:, 0]).astype(np.int64)
        r = np.rint(cameras.points_uv[v][:, 1]).astype(np.int64)
        inside = (u >= 0) & (u < W) & (r >= 0) & (r < H)
        z_local = np.full(len(u), np.nan)
        z_local[inside] = local[v, r[inside], u[inside], 2]
        good = inside & (z_local > 0) & (cameras.points_depth[v] > 0)
        if good.sum() >= min_observations:
            scale[v] = float(np.median(cameras.points_depth[v][good] / z_local[good]))
    return scale


def _dense_points(local: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray, scale: np.ndarray,
                  ok: np.ndarray) -> np.ndarray:
    """[V, H, W, 3] scaled local depth back-projected with ``K`` and placed by ``T_world_cam`` (NaN where not ok)."""
    V, H, W, _ = local.shape
    out = np.full((V, H, W, 3), np.nan)
    grid = np.stack([*np.meshgrid(np.arange(W), np.arange(H)), np.ones((H, W))], axis=-1)  # [H, W, 3]
    for v in np.flatnonzero(ok):
        rays = grid @ np.linalg.inv(K[v]).T  # [H, W, 3], z = 1
        cam = rays * (scale[v] * local[v, ..., 2:3])
        out[v] = cam @ T_world_cam[v, :3, :3].T + T_world_cam[v, :3, 3]
    return out


__all__ = ["SfmOptions", "SfmResult", "solve_cameras_sfm"]
