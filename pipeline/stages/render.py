"""`panst3r-splat render`: RGB and panoptic labels of a fitted scene from any cameras.

Cameras (`parse_cameras`): `orbit` (a path around what the input cameras look at, `orbit_cameras`), `train` (the
input views) or `dataset:PANLI_SCENE[:SPLIT]` (a Panoptic Lifting scene's frames of a split, default `test`, at the
dataset's resolution and intrinsics, named after its frames).

Labels at a view: the per-pixel argmax of the rendered one-hot channels of the Gaussians' lifted segment ids
(`splat.lifting.render_segments`: exact, the segment with the largest summed blending weight `alpha_i T_i` wins;
chunks of channels so any number of segments fits). **Void rule**: a pixel whose accumulated alpha is below
`RenderOptions.min_alpha` (default 0.5) is void (segment 0, class 0): less than half of it is covered by
reconstructed geometry, so any label there would be a guess (for instance the open sky of a room without ceiling).
Gaussians lifted as void (seen mostly through unlabelled pixels) also render void. The evaluation maps
(`pred_semantics/`, `pred_surrogateid/`) then fill void from the nearest labelled pixel (`fill_void`; off with
`RenderOptions.fill_void=False`), because the reference protocol scores predicted void as a wrong class; the colour
images keep it black.

Frames: a scene fitted from predictions lives in the frame of the predicted keyframe #0, at the predicted scale.
For `dataset:` cameras the dataset's cameras are brought into the scene frame by the similarity estimated between
the scene's input cameras and the dataset cameras of the same frames (`estimate_alignment`: Umeyama on the camera
centres, rotations checked, falling back to rotation averaging when the centres cannot fix the rotation). The
dataset's intrinsics and resolution are used as they are: the Gaussians are 3D, so no intrinsics of the model's
resolution enter (the predicted ones, mapped to the original images through `to_orig`, are only compared with the
dataset's, as a diagnostic). The similarity goes into `SCENE/alignment.json` and `DIR/alignment.json`.

Outputs under DIR: `rgb/`, `semantic/`, `instance/`, `panoptic/` (colour PNGs, palettes of `splat.palette`),
`overlay/` (panoptic colours over RGB, void left bare), `pred_semantics/` (uint8 class id) and `pred_surrogateid/`
(uint16 segment id) for `panst3r-splat eval`, `legend.json`, `render.json` (cameras, alignment, PSNR against the
dataset's images where it has them, void fractions, timings) and, for an orbit, `video.mp4` (RGB | labels).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from jaxtyping import Bool, Float, Float32, Int64, UInt8
from torch import Tensor
from tqdm.auto import tqdm

from panst3r_splat.core import class_table
from panst3r_splat.core.geometry import umeyama_sim3
from panst3r_splat.core.transforms import Similarity, look_at, relative_rotation_deg
from panst3r_splat.pipeline.datasets.panoptic_lifting import read_panoptic_lifting, save_png
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.splat.gaussians import Cameras, GaussianScene
from panst3r_splat.splat.lifting import render_segments
from panst3r_splat.splat.metrics import image_psnr
from panst3r_splat.splat.palette import instance_colors, overlay, panoptic_colors, semantic_colors
from panst3r_splat.splat.rasterize import Backend, rasterize
from panst3r_splat.splat.scene_io import (
    ALIGNMENT_FILE, Alignment, FittedScene, SegmentInfo, labels_from_segments, load_scene, save_alignment,
)

logger = logging.getLogger(__name__)

OUTPUT_DIRS = ("rgb", "semantic", "instance", "panoptic", "overlay", "pred_semantics", "pred_surrogateid")
ROTATION_TOLERANCE_DEG = 5.0
"""Mean angle between aligned and dataset camera rotations above which the alignment is suspect."""
COLLINEAR_RATIO = 0.05
"""Second over first singular value of the centred camera centres below which they cannot fix a rotation."""


# ------------------------------------------------------------------------------------------------------ cameras


@dataclass(frozen=True)
class OrbitCameras:
    """A smooth path around what the input cameras look at."""

    frames: int = 120


@dataclass(frozen=True)
class TrainCameras:
    """The scene's input cameras."""


@dataclass(frozen=True)
class DatasetCameras:
    """The frames of one split of a Panoptic Lifting scene."""

    path: Path
    split: str = "test"


CameraSpec = Union[OrbitCameras, TrainCameras, DatasetCameras]


def parse_cameras(spec: str, *, orbit_frames: int = 120) -> CameraSpec:
    """`orbit`, `train` or `dataset:PATH[:SPLIT]` (a PATH that exists as a folder is taken whole, colons and all)."""
    if spec == "orbit":
        if orbit_frames < 1:
            raise UserError(f"--orbit-frames must be at least 1, got {orbit_frames}")
        return OrbitCameras(frames=orbit_frames)
    if spec == "train":
        return TrainCameras()
    if spec.startswith("dataset:"):
        rest = spec[len("dataset:"):]
        if not rest:
            raise UserError("--cameras dataset: needs a scene folder, as dataset:PANLI_SCENE[:SPLIT]")
        if Path(rest).is_dir() or ":" not in rest:
            return DatasetCameras(Path(rest))
        path, split = rest.rsplit(":", 1)
        if not path or not split:
            raise UserError(f"--cameras {spec!r}: write dataset:PANLI_SCENE or dataset:PANLI_SCENE:SPLIT")
        return DatasetCameras(Path(path), split)
    raise UserError(f"--cameras {spec!r} is not one of orbit, train, dataset:PANLI_SCENE[:SPLIT]")


def _look_target(T_world_cam: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Point closest (least squares) to every camera's optical axis; `fallback` when the axes are near parallel."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for T in T_world_cam:
        d = T[:3, 2] / np.linalg.norm(T[:3, 2])
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ T[:3, 3]
    eig = np.linalg.eigvalsh(A)
    if eig[0] < 1e-3 * max(eig[-1], 1e-12):
        return fallback
    return np.linalg.solve(A, b)


def _up_vector(T_world_cam: np.ndarray) -> np.ndarray:
    """World up of a set of cameras: the direction most orthogonal to their x (right) axes, which stay level
    when cameras do not roll, signed like their mean up (-y) vector. The mean up vector alone tilts towards
    where the cameras look when they all look down; it is the answer only when the x axes are all parallel."""
    mean_up = -T_world_cam[:, :3, 1].mean(axis=0)
    x = T_world_cam[:, :3, 0]
    evals, evecs = np.linalg.eigh(x.T @ x)  # ascending
    if evals[1] < 0.05 * evals[2]:  # x axes (nearly) parallel: up is anywhere in the plane orthogonal to them
        basis = evecs[:, :2]
        up = basis @ (basis.T @ mean_up)
    else:
        up = evecs[:, 0] * np.sign(evecs[:, 0] @ mean_up or 1.0)
    norm = np.linalg.norm(up)
    return up / norm if norm > 1e-12 else np.array([0.0, 0.0, 1.0])


def orbit_cameras(cameras: Cameras, means: Float[Tensor, "N 3"], num_frames: int) -> Cameras:
    """A closed path of `num_frames` cameras at the input cameras' height and distance around their look target.

    The target is the least-squares meeting point of the input optical axes (the median Gaussian when the axes are
    parallel); up is orthogonal to the input cameras' right axes (`_up_vector`). When the input cameras surround the target (no gap
    wider than 60 degrees in their azimuths) the path is a full circle; otherwise it swings back and forth over the
    azimuths the inputs cover, so it never looks at the unseen back of the scene. Intrinsics and size: the first
    input camera's.
    """
    T_in = cameras.T_world_cam.detach().double().cpu().numpy()
    centers = T_in[:, :3, 3]
    up = _up_vector(T_in)
    target = _look_target(T_in, means.detach().double().median(dim=0).values.cpu().numpy())
    rel = centers - target
    height = float(np.mean(rel @ up))
    planar = rel - np.outer(rel @ up, up)
    radius = float(np.median(np.linalg.norm(planar, axis=1)))
    if radius < 1e-9:  # all cameras on the up axis: use the mean distance to the target instead
        radius = float(np.linalg.norm(rel, axis=1).mean()) or 1.0
    e1 = planar[np.argmax(np.linalg.norm(planar, axis=1))] if len(planar) else np.zeros(3)
    if np.linalg.norm(e1) < 1e-9:
        e1 = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 1.0, 0.0])
    e1 = e1 / np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    azimuths = np.sort(np.mod(np.arctan2(planar @ e2, planar @ e1), 2 * math.pi))
    gaps = np.diff(np.concatenate([azimuths, azimuths[:1] + 2 * math.pi]))
    widest = int(np.argmax(gaps))
    t = np.arange(num_frames) / num_frames
    if gaps[widest] < math.radians(60.0):
        angles = 2 * math.pi * t
    else:  # swing over the covered arc: from the end of the widest gap, around to its start
        start = azimuths[(widest + 1) % len(azimuths)]
        span = 2 * math.pi - gaps[widest]
        angles = start + span * 0.5 * (1.0 - np.cos(2 * math.pi * t))
    Ts = [look_at(target + height * up + radius * (math.cos(a) * e1 + math.sin(a) * e2), target, up) for a in angles]
    return Cameras(K=cameras.K[:1].repeat(num_frames, 1, 1).cpu().float(),
                   T_world_cam=torch.from_numpy(np.stack(Ts)).float(), width=cameras.width, height=cameras.height,
                   names=tuple(f"orbit_{i:04d}" for i in range(num_frames)))


# ---------------------------------------------------------------------------------------------------- alignment


def rotation_errors_deg(R: Float[Tensor, "3 3"], R_src: Float[Tensor, "V 3 3"], R_dst: Float[Tensor, "V 3 3"]
                        ) -> Float[Tensor, "V"]:
    """Angle (degrees) between `R @ R_src[i]` and `R_dst[i]` for every view."""
    return relative_rotation_deg(R_dst, R @ R_src)


def _sim3_given_rotation(R: Tensor, src: Tensor, dst: Tensor) -> Similarity:
    """Least-squares scale and translation of `dst ~ s R src + t` for a fixed rotation."""
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    denom = src_c.square().sum()
    s = ((dst_c * (src_c @ R.T)).sum() / denom) if denom > 0 else torch.ones((), dtype=src.dtype)
    t = dst.mean(0) - s * (R @ src.mean(0))
    residual = ((s * src @ R.T + t - dst).square().sum(-1).mean()).sqrt()
    return Similarity(scale=s, R=R, t=t, residual=residual)


def _rotation_average(R_src: Tensor, R_dst: Tensor) -> Tensor:
    """Chordal L2 mean of `R_dst[i] R_src[i]^T`: the rotation closest to their sum (SVD, det +1)."""
    M = (R_dst @ R_src.transpose(-1, -2)).sum(0)
    U, _, Vh = torch.linalg.svd(M)
    D = torch.eye(3, dtype=M.dtype)
    D[2, 2] = torch.sign(torch.det(U @ Vh))
    return U @ D @ Vh


@dataclass(frozen=True)
class AlignmentFit:
    """A scene -> dataset similarity with the diagnostics of its fit."""

    similarity: Similarity
    rotation_errors_deg: Float[Tensor, "V"]
    method: str
    """"umeyama" (camera centres) or "rotation-average" (rotations, then scale and translation from the centres)."""


def estimate_alignment(T_src: Float[Tensor, "V 4 4"], T_dst: Float[Tensor, "V 4 4"]) -> AlignmentFit:
    """Similarity taking the frame of the cameras `T_src` (camera-to-world) to that of `T_dst`, same views.

    Umeyama on the camera centres; if the centres are nearly collinear (they cannot fix the rotation about their
    line) or the rotations disagree by more than `ROTATION_TOLERANCE_DEG` on average, the rotation-averaging fit
    is tried too and the one whose rotations agree better is kept.
    """
    if T_src.shape != T_dst.shape or T_src.shape[0] < 3:
        raise ValueError(f"an alignment needs at least 3 corresponding cameras, got {T_src.shape[0]}")
    T_src, T_dst = T_src.double(), T_dst.double()
    src, dst = T_src[:, :3, 3], T_dst[:, :3, 3]
    R_src, R_dst = T_src[:, :3, :3], T_dst[:, :3, :3]
    sv = torch.linalg.svdvals(src - src.mean(0))
    collinear = bool(sv[1] < COLLINEAR_RATIO * sv[0]) if sv[0] > 0 else True
    candidates: list[AlignmentFit] = []
    if not collinear:
        fit = umeyama_sim3(src, dst)
        candidates.append(AlignmentFit(fit, rotation_errors_deg(fit.R, R_src, R_dst), "umeyama"))
    if not candidates or float(candidates[0].rotation_errors_deg.mean()) > ROTATION_TOLERANCE_DEG:
        R = _rotation_average(R_src, R_dst)
        fit = _sim3_given_rotation(R, src, dst)
        candidates.append(AlignmentFit(fit, rotation_errors_deg(R, R_src, R_dst), "rotation-average"))
    # A fit with a non-positive scale mirrors the scene: never a valid similarity, whatever its rotation error.
    valid = [c for c in candidates if float(c.similarity.scale) > 0]
    if not valid:
        raise ValueError("the estimated alignment has a non-positive scale; the cameras do not correspond")
    return min(valid, key=lambda c: float(c.rotation_errors_deg.mean()))


def _same_path(a: str, b: Path) -> bool:
    try:
        return bool(a) and Path(a).resolve() == b.resolve()
    except OSError:
        return False


def dataset_alignment(scene: FittedScene, dataset: Path) -> tuple[Alignment, dict[str, Any]]:
    """The scene -> dataset similarity: the stored one when it was made for this dataset, else estimated from the
    scene's input cameras and the dataset cameras of the frames of the same names. Returns it with diagnostics."""
    if scene.alignment is not None and _same_path(scene.alignment.dataset, dataset):
        return scene.alignment, {"method": "stored"}
    data = read_panoptic_lifting(dataset, split=None, parts=("pose", "intrinsics"))
    index = {name: i for i, name in enumerate(data.frame_names)}
    pairs = [(i, index[n]) for i, n in enumerate(scene.cameras.names) if n in index]
    if len(pairs) < 3:
        raise UserError(f"only {len(pairs)} of the scene's {len(scene.cameras)} input views are frames of {dataset} "
                        "(matched by name); at least 3 are needed to align the scene to the dataset. Fit from "
                        "predictions of this dataset's frames, or use --cameras orbit|train")
    mine = torch.tensor([p[0] for p in pairs])
    theirs = torch.from_numpy(data.T_world_cam[[p[1] for p in pairs]])
    try:
        fit = estimate_alignment(scene.cameras.T_world_cam[mine].double(), theirs)
    except ValueError as err:
        raise UserError(f"cannot align the scene to {dataset}: {err}") from None
    views = tuple(scene.cameras.names[int(i)] for i in mine)
    errs = fit.rotation_errors_deg
    spread = float((theirs[:, :3, 3] - theirs[:, :3, 3].mean(0)).norm(dim=1).mean())
    diagnostics: dict[str, Any] = {"method": fit.method, "rotation_error_deg_max": float(errs.max()),
                                   "relative_residual": float(fit.similarity.residual) / max(spread, 1e-12)}
    focal = _focal_ratio(scene, mine, data.K)
    if focal is not None:
        diagnostics["focal_ratio_pred_over_dataset"] = focal
    alignment = Alignment.from_similarity(fit.similarity, rotation_error_deg=float(errs.mean()), views=views,
                                    dataset=str(dataset.resolve()))
    logger.info("render: scene -> dataset similarity from %d views (%s): scale %.4f, residual %.4g (%.2f %% of the "
                "camera spread), rotation error mean %.2f / max %.2f deg", len(views), fit.method, alignment.scale,
                alignment.residual, 100 * diagnostics["relative_residual"], float(errs.mean()), float(errs.max()))
    if float(errs.mean()) > ROTATION_TOLERANCE_DEG:
        logger.warning("render: the scene's cameras disagree with the dataset's by %.1f deg on average after "
                       "alignment; novel-view labels will be misplaced", float(errs.mean()))
    return alignment, diagnostics


def _focal_ratio(scene: FittedScene, views: Tensor, K_dataset: np.ndarray) -> Optional[float]:
    """Mean predicted focal length mapped to the original images (`to_orig` of the predictions) over the dataset's,
    when the scene was fitted from predictions; None otherwise."""
    to_orig = scene.info.get("source", {}).get("to_orig") if isinstance(scene.info.get("source"), dict) else None
    if not to_orig:
        return None
    A = torch.tensor(to_orig, dtype=torch.float64)[views]
    K_orig = A @ scene.cameras.K[views].double()  # model pixels -> original pixels, composed with the intrinsics
    fx, fy = K_orig[:, 0, 0].mean(), K_orig[:, 1, 1].mean()
    return float(0.5 * (fx / K_dataset[0, 0] + fy / K_dataset[1, 1]))


def cameras_to_scene(T_world_cam: Float[Tensor, "C 4 4"], alignment: Alignment) -> Float[Tensor, "C 4 4"]:
    """Dataset camera-to-world transforms expressed in the scene frame (through the inverse of the alignment)."""
    return alignment.similarity(torch.float64).inverse().transform_T_world_cam(T_world_cam.double()).float()


# ---------------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class RenderOptions:
    """How views are rendered and written."""

    min_alpha: float = 0.5
    """Void rule: pixels with accumulated alpha below this are void (see the module docstring)."""
    background: Optional[tuple[float, float, float]] = None
    """RGB behind the Gaussians; None: the background the scene was trained with."""
    backend: Backend = "auto"
    overlay_alpha: float = 0.5
    """Weight of the label colours in overlay/."""
    fps: int = 24
    """Frame rate of video.mp4."""
    fill_void: bool = True
    """In the evaluation maps only, give void pixels the label of the nearest labelled pixel (`fill_void`)."""
    video: bool = True
    """Write video.mp4 for orbit cameras."""


@dataclass(frozen=True)
class RenderedView:
    """One camera's render."""

    name: str
    rgb: Float32[np.ndarray, "H W 3"]
    """Colours in [0, 1]."""
    alpha: Float32[np.ndarray, "H W"]
    segments: Int64[np.ndarray, "H W"]
    """Segment id per pixel (0 = void)."""


def render_view(gaussians: GaussianScene, camera: Cameras, *, options: RenderOptions,
                background: Sequence[float]) -> RenderedView:
    """RGB, alpha and segment map of one camera (the Gaussians' device)."""
    if len(camera) != 1:
        raise ValueError(f"render_view takes one camera, got {len(camera)}")
    device = gaussians.device
    camera = camera.to(device)
    viewmats, Ks = camera.T_cam_world, camera.K
    scales, opacities = gaussians.scales, gaussians.opacities
    with torch.no_grad():
        colors = gaussians.colors(camera.T_world_cam)  # [N, 3], or [1, N, 3] with view-dependent SH
        bg = torch.tensor([list(background)], dtype=colors.dtype, device=device)
        rgb, alpha, _ = rasterize(gaussians.means, gaussians.quats, scales, opacities, colors, viewmats, Ks,
                                  camera.width, camera.height, backgrounds=bg if any(background) else None,
                                  backend=options.backend)
        segments = render_segments(gaussians.means, gaussians.quats, scales, opacities, gaussians.segment_ids,
                                   viewmats, Ks, camera.width, camera.height, min_alpha=options.min_alpha,
                                   backend=options.backend)
    return RenderedView(name=camera.names[0], rgb=rgb[0].clamp(0, 1).cpu().numpy(),
                        alpha=alpha[0, ..., 0].cpu().numpy(), segments=segments[0].cpu().numpy())


def to_uint8(rgb: Float[np.ndarray, "H W 3"]) -> UInt8[np.ndarray, "H W 3"]:
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def label_images(segments: Int64[np.ndarray, "H W"], legend: Sequence[SegmentInfo]
                 ) -> dict[str, np.ndarray]:
    """The images of one segment map: evaluation maps (uint8 class id, uint16 surrogate id) and colour images."""
    semantic, instance = labels_from_segments(segments, legend)
    if semantic.size and int(semantic.max()) > 255:
        raise UserError("class ids above 255 do not fit pred_semantics (uint8)")
    surrogate = np.where(semantic > 0, segments, 0)
    if surrogate.size and int(surrogate.max()) > np.iinfo(np.uint16).max:
        raise UserError("segment ids above 65535 do not fit pred_surrogateid (uint16)")
    return {
        "pred_semantics": semantic.astype(np.uint8),
        "pred_surrogateid": surrogate.astype(np.uint16),
        "semantic": semantic_colors(semantic),
        "instance": instance_colors(instance),
        "panoptic": panoptic_colors(semantic, instance),
    }


def fill_void(segments: Int64[np.ndarray, "H W"]) -> Int64[np.ndarray, "H W"]:
    """Every void pixel (0) takes the segment of its nearest non-void pixel (Euclidean; ties: any nearest).

    For the evaluation maps: the reference protocol scores predicted void as a class of its own (PQ 0 once it
    covers 0.5 % of the pixels), and a radiance field always answers with some label, so the maps a peer method
    would be scored on have no holes. The colour images keep void black, so the holes stay visible.
    """
    from scipy.ndimage import distance_transform_edt

    void = segments == 0
    if not void.any() or void.all():
        return segments
    rows, cols = distance_transform_edt(void, return_distances=False, return_indices=True)
    return segments[rows, cols]


def _fill_void(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference twin of `fill_void`: per void pixel, the distance to the nearest labelled pixel by brute force.
    Returns those distances and the set of labels at that distance (as a boolean [H, W, max id + 1] table)."""
    labelled = np.argwhere(segments != 0)
    H, W = segments.shape
    dist = np.zeros((H, W))
    allowed = np.zeros((H, W, int(segments.max()) + 1), dtype=bool)
    for r in range(H):
        for c in range(W):
            if segments[r, c] != 0:
                allowed[r, c, segments[r, c]] = True
                continue
            d = np.sqrt(((labelled - [r, c]) ** 2).sum(1))
            dist[r, c] = d.min()
            allowed[r, c, segments[tuple(labelled[np.isclose(d, d.min())].T)]] = True
    return dist, allowed


def write_view(out: Path, view: RenderedView, legend: Sequence[SegmentInfo], options: RenderOptions
               ) -> tuple[np.ndarray, np.ndarray]:
    """Write every PNG of one view; returns its uint8 RGB and panoptic colour image (for the video)."""
    rgb = to_uint8(view.rgb)
    images = label_images(view.segments, legend)
    if options.fill_void:
        filled = label_images(fill_void(view.segments), legend)
        images["pred_semantics"], images["pred_surrogateid"] = filled["pred_semantics"], filled["pred_surrogateid"]
    images["rgb"] = rgb
    images["overlay"] = overlay(rgb, images["panoptic"], alpha=options.overlay_alpha, mask=view.segments > 0)
    for sub in OUTPUT_DIRS:
        save_png(out / sub / f"{view.name}.png", images[sub])
    return rgb, images["panoptic"]


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int) -> None:
    """H.264 MP4 (imageio-ffmpeg's bundled ffmpeg); frames padded to even sizes as yuv420p needs."""
    import imageio.v2 as imageio

    h, w = frames[0].shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    try:
        writer = imageio.get_writer(str(path), fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                    pixelformat="yuv420p")
    except (ImportError, RuntimeError, OSError) as err:
        raise UserError(f"cannot write {path} ({err}); install imageio-ffmpeg, or pass --no-video") from None
    with writer:
        for frame in frames:
            writer.append_data(np.pad(frame, pad, mode="edge"))


def photo_psnr(pred: Float[np.ndarray, "H W 3"], photo: UInt8[np.ndarray, "H W 3"],
               mask: Optional[Bool[np.ndarray, "H W"]] = None) -> float:
    """PSNR (dB, `splat.metrics.image_psnr`) of colours in [0, 1] against a uint8 photo, over the `mask` pixels if
    given; in float64, so the reports' numbers do not depend on the render's precision."""
    covered = None if mask is None else torch.from_numpy(np.asarray(mask, dtype=bool))
    return float(image_psnr(torch.from_numpy(pred).double(), torch.from_numpy(photo).double() / 255.0, covered))


@dataclass(frozen=True)
class RenderSummary:
    """What `render_scene` wrote."""

    out: Path
    names: tuple[str, ...]
    alignment: Optional[Alignment]
    psnr: dict[str, float] = field(default_factory=dict)
    """PSNR (dB) per view against the dataset's images (dataset cameras only)."""
    psnr_covered: dict[str, float] = field(default_factory=dict)
    """The same over the pixels the reconstruction covers (accumulated alpha >= min_alpha)."""
    void_fraction: float = 0.0
    """Share of rendered pixels that are void."""
    seconds_per_view: float = 0.0


SceneReader = Callable[[Path], FittedScene]
"""Reads a fitted scene from an existing folder, raising `ValueError` with a one-line message for a broken one. The
stages read SCENE folders (`splat.scene_io.load_scene`); a front end that accepts other folders passes its own reader
(the command line: `frontends.nerfstudio_io.read_scene_or_run`, which also reads an `ns-train panst3r-splat` run)."""


def load_fitted(folder: Path, read_scene: SceneReader = load_scene) -> FittedScene:
    """Read a fitted scene folder through `read_scene`, with one-line user errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"scene folder {folder} does not exist; write one with `panst3r-splat fit`")
    try:
        return read_scene(folder)
    except ValueError as err:
        raise UserError(str(err)) from None


def alignment_failure(scene_dir: Path, dataset: Path) -> Optional[str]:
    """Why the fitted scene cannot be aligned to the dataset's frame (None when it can).

    A scene fitted from predictions is rendered at the held-out cameras through the similarity between its
    predicted input cameras and the dataset's; a weak model's cameras may admit none (for instance a negative
    scale). The demo and `batch` check this before rendering `dataset:` cameras, and say so instead of failing.
    """
    try:
        dataset_alignment(load_fitted(scene_dir), dataset)
    except (UserError, ValueError) as err:
        return str(err)
    return None


def _scene_background(scene: FittedScene) -> tuple[float, float, float]:
    settings = scene.info.get("settings", {})
    bg = settings.get("train", {}).get("background") if isinstance(settings, dict) else None
    return tuple(float(c) for c in bg) if bg and len(bg) == 3 else (0.0, 0.0, 0.0)


def _resolve_cameras(scene: FittedScene, scene_dir: Path, spec: CameraSpec
                     ) -> tuple[Cameras, Optional[Alignment], dict[str, Any], Optional[np.ndarray]]:
    """Cameras in the scene frame, the alignment used, its diagnostics, and reference images (dataset only)."""
    if isinstance(spec, TrainCameras):
        return scene.cameras, None, {}, None
    if isinstance(spec, OrbitCameras):
        return orbit_cameras(scene.cameras, scene.gaussians.means, spec.frames), None, {}, None
    data = read_panoptic_lifting(spec.path, split=spec.split, parts=("pose", "intrinsics", "color"))
    alignment, diagnostics = dataset_alignment(scene, spec.path)
    if diagnostics.get("method") != "stored":
        try:
            save_alignment(scene_dir / ALIGNMENT_FILE, alignment)
        except OSError as err:
            logger.warning("render: could not store the alignment in %s (%s)", scene_dir / ALIGNMENT_FILE, err)
    V, H, W, _ = data.images.shape
    T = cameras_to_scene(torch.from_numpy(data.T_world_cam), alignment)
    K = torch.from_numpy(data.K).float()[None].repeat(V, 1, 1)
    return Cameras(K=K, T_world_cam=T, width=W, height=H, names=data.frame_names), alignment, diagnostics, data.images


def render_scene(scene_dir: Path, out: Path, spec: CameraSpec, options: RenderOptions = RenderOptions(), *,
                 device: torch.device = torch.device("cpu"), read_scene: SceneReader = load_scene) -> RenderSummary:
    """Render the cameras of `spec` and write every output (see the module docstring); `read_scene` reads the
    scene folder (see `SceneReader`)."""
    scene_dir, out = Path(scene_dir), Path(out)
    scene = load_fitted(scene_dir, read_scene)
    if not 0.0 <= options.min_alpha <= 1.0:
        raise UserError(f"--min-alpha must be in [0, 1], got {options.min_alpha}")
    cameras, alignment, diagnostics, references = _resolve_cameras(scene, scene_dir, spec)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    for sub in OUTPUT_DIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    gaussians = scene.gaussians.to(device)
    background = options.background or _scene_background(scene)
    frames, scores, covered, void = [], {}, {}, []
    start = time.perf_counter()
    for i in tqdm(range(len(cameras)), desc="rendering", unit="view", disable=len(cameras) < 4):
        view = render_view(gaussians, cameras.select([i]), options=options, background=background)
        rgb, pan = write_view(out, view, scene.segments, options)
        void.append(float((view.segments == 0).mean()))
        if references is not None:
            scores[view.name] = photo_psnr(view.rgb, references[i])
            if (view.alpha >= options.min_alpha).any():
                covered[view.name] = photo_psnr(view.rgb, references[i], view.alpha >= options.min_alpha)
        if isinstance(spec, OrbitCameras) and options.video:
            frames.append(np.concatenate([rgb, pan], axis=1))
    seconds = (time.perf_counter() - start) / max(len(cameras), 1)
    if frames:
        write_video(out / "video.mp4", frames, options.fps)
    if alignment is not None:
        save_alignment(out / ALIGNMENT_FILE, alignment)
    summary = RenderSummary(out=out, names=cameras.names, alignment=alignment, psnr=scores, psnr_covered=covered,
                            void_fraction=float(np.mean(void)) if void else 0.0, seconds_per_view=seconds)
    _write_json(out / "legend.json", _legend_json(scene.segments))
    _write_json(out / "render.json", _summary_json(summary, scene_dir, spec, options, diagnostics))
    message = f"render: {len(cameras)} views ({seconds:.2f} s each) -> {out}"
    if scores:
        message += f"; PSNR {np.mean(list(scores.values())):.2f} dB against the dataset images"
        if covered:
            message += f" ({np.mean(list(covered.values())):.2f} dB where the reconstruction covers them)"
    logger.info(message)
    return summary


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def _legend_json(segments: Sequence[SegmentInfo]) -> dict[str, Any]:
    return {
        "segments": [{"id": s.id, "class_id": s.class_id, "class_name": s.class_name, "isthing": s.isthing,
                      "color": list(s.color), "score": s.score} for s in segments],
        "classes": [{"id": c.id, "name": c.name, "isthing": c.isthing, "color": list(c.color)}
                    for c in class_table.CLASSES],
        "void": {"id": 0, "color": [0, 0, 0]},
    }


def _summary_json(summary: RenderSummary, scene_dir: Path, spec: CameraSpec, options: RenderOptions,
                  diagnostics: dict[str, Any]) -> dict[str, Any]:
    spec_json = {"kind": type(spec).__name__, **{k: str(v) for k, v in asdict(spec).items()}}
    return {
        "scene": str(scene_dir), "cameras": spec_json, "views": list(summary.names),
        "options": asdict(options), "void_fraction": summary.void_fraction,
        "seconds_per_view": summary.seconds_per_view,
        "psnr": summary.psnr, "psnr_mean": float(np.mean(list(summary.psnr.values()))) if summary.psnr else None,
        "psnr_covered": summary.psnr_covered,
        "alignment": None if summary.alignment is None else {
            "scale": summary.alignment.scale, "residual": summary.alignment.residual,
            "rotation_error_deg": summary.alignment.rotation_error_deg, **diagnostics},
    }
