"""`panst3r-splat fit`: a labelled 3DGS scene from a predictions folder, or from a dataset's ground truth (oracle).

Both sources are first turned into the same `FitInputs` (cameras, images, per-view segment maps, a coloured point
cloud and the segment legend), so the rest is one code path (`fit_scene`):

    points --init_from_points--> Gaussians --train_scene--> trained Gaussians --lift_segments--> labelled Gaussians
                                             (L1 + SSIM + instance-colour regularisation on the segment maps)

- From predictions (`inputs_from_predictions`): everything at the model's resolution: `K`, `T_world_cam`, the
  images as the model saw them, the merged `panoptic` maps as segment maps, and the fused point cloud of the
  points whose confidence passes a threshold (`POINT_CONF_THRESHOLD`, as `points.ply`). The legend comes from
  `segments.json` with the predictions' class names and dataset class ids.
- Known poses (`inputs_from_predictions(..., poses=SCENE)`, `fit --poses dataset:SCENE`): the same predictions under
  the dataset's cameras, each view's local pointmap placed along those cameras' rays with a per-view scale from
  image matches (`known_poses`; never the dataset's depth); the scene frame is the dataset frame (identity alignment).
- Oracle (`inputs_from_dataset`): the dataset's cameras, colour frames and depth (back-projected, subsampled) of
  one split, and ground-truth segments: one per thing instance, one per stuff class (`gt_segments`). It measures
  splatting + lifting alone, free of prediction errors; the scene frame is the dataset frame (identity alignment).

The resume checkpoint of training sits beside the output folder (`.SCENE.train.ckpt`, see `checkpoint_paths`),
with a fingerprint of the inputs next to it, so an interrupted fit continues where it stopped when the same command
runs again, and a checkpoint of other inputs is never picked up by mistake. Both files are removed once the scene
is written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional

import numpy as np
import torch
from jaxtyping import Float32, Int64, UInt8
from torch import Tensor

from panst3r_splat.core.geometry import backproject_depth, fused_point_cloud
from panst3r_splat.core.predictions import (
    POINT_CONF_THRESHOLD, SEGMENTS_FILE, frame_stem, load_predictions, read_segments,
)
from panst3r_splat.pipeline.datasets.panoptic_lifting import gt_segments, read_panoptic_lifting
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.fingerprints import digest
from panst3r_splat.splat.gaussians import Cameras, init_from_points
from panst3r_splat.splat.lifting import NO_LABEL, LiftOptions, lift_segments
from panst3r_splat.splat.scene_io import (
    Alignment, FittedScene, SegmentInfo, is_scene_folder, make_segment, save_scene, software_versions,
)
from panst3r_splat.splat.train import TrainConfig, train_scene

logger = logging.getLogger(__name__)

MIN_KEPT_FRACTION = 0.1
"""If fewer predicted points than this share pass the confidence threshold, the most confident
`FALLBACK_FRACTION` of them initialise the Gaussians instead (a model whose confidences are all low)."""
FALLBACK_FRACTION = 0.5
MAX_INIT_POINTS = 400_000
"""Back-projected depth points kept (at random) before the voxel downsampling to the Gaussian budget."""
FINGERPRINT_VERSION = 1


@dataclass(frozen=True)
class FitInputs:
    """What a fit needs, whatever the source; all views share one image size."""

    cameras: Cameras
    """Input cameras (OpenCV, camera-to-world, pixel-centre K) at the images' resolution."""
    images: UInt8[Tensor, "V H W 3"]
    segment_maps: Int64[Tensor, "V H W"]
    """Panoptic segment id per pixel (0 = void), the same id for the same object in every view; `NO_LABEL` (-1)
    where no segment map covers the pixel (outside the model's crop of a photo fitted at its own resolution)."""
    points: Float32[np.ndarray, "P 3"]
    """Initial point cloud in the scene frame."""
    colors: UInt8[np.ndarray, "P 3"]
    legend: tuple[SegmentInfo, ...]
    """Every segment id of `segment_maps` (except 0) with its class."""
    source: Mapping[str, Any] = field(default_factory=dict)
    """Where the inputs came from (recorded in scene.json)."""
    alignment: Optional[Alignment] = None
    """Scene -> dataset similarity when the scene frame is a dataset's frame (oracle: identity)."""

    def __post_init__(self) -> None:
        V, H, W = self.segment_maps.shape
        if tuple(self.images.shape) != (V, H, W, 3) or len(self.cameras) != V:
            raise ValueError(f"fit inputs disagree: {len(self.cameras)} cameras, images {tuple(self.images.shape)}, "
                             f"segment maps {tuple(self.segment_maps.shape)}")
        if (self.cameras.height, self.cameras.width) != (H, W):
            raise ValueError(f"cameras are {self.cameras.width}x{self.cameras.height} but the images {W}x{H}")
        present = set(torch.unique(self.segment_maps).tolist()) - {0, NO_LABEL}
        missing = sorted(present - {s.id for s in self.legend})
        if missing:
            raise ValueError(f"segment ids {missing[:10]} of the segment maps are missing from the legend")


@dataclass(frozen=True)
class FitOptions:
    """Settings of `fit_scene` beyond the training hyper-parameters."""

    train: TrainConfig = TrainConfig()
    """3DGS training (steps, seed, learning rates, densification)."""
    budget: int = 20_000
    """Initial number of Gaussians (the point cloud is voxel-downsampled to at most this many)."""
    sh_degree: int = 1
    """Spherical-harmonic degree of the colours (few input views: low degrees extrapolate better)."""
    init_opacity: float = 0.1
    background: Literal["mean", "black", "white"] = "mean"
    """Colour behind the Gaussians in training and renders. "mean": the mean colour of the input images, the
    least-squares guess for what no input view saw (parts of the room a novel view sees for the first time render
    in it instead of black; about +6 dB PSNR on the synthetic test views); it replaces `train.background`."""
    ignore_void: bool = False
    """Lifting: void pixels do not vote (holes in the masks are filled from other views) instead of voting void."""
    stop_after: Optional[int] = None
    """Stop training after this many steps in total (checkpointed; run again to continue); no scene is written."""


@dataclass(frozen=True)
class FitResult:
    """What `fit_scene` did."""

    scene: Optional[FittedScene]
    """The fitted scene (None when training stopped early at `stop_after`)."""
    steps_done: int
    seconds: Mapping[str, float]
    """Wall time per stage: init, train, lift, save."""


# ------------------------------------------------------------------------------------------------------ sources


def confidence_threshold(conf: np.ndarray, threshold: float) -> float:
    """`threshold`, or a lower one keeping the most confident `FALLBACK_FRACTION` of the points when fewer than
    `MIN_KEPT_FRACTION` pass it (with a warning: the model's confidences are not informative then)."""
    if conf.size == 0 or float((conf >= threshold).mean()) >= MIN_KEPT_FRACTION:
        return threshold
    lowered = float(np.quantile(conf, 1.0 - FALLBACK_FRACTION))
    logger.warning("fit: only %.1f %% of the predicted points have confidence >= %g (max %.4g); using the %d %% most "
                   "confident ones (threshold %.6g) instead", 100 * float((conf >= threshold).mean()), threshold,
                   float(conf.max()), round(100 * FALLBACK_FRACTION), lowered)
    return lowered


def inputs_from_predictions(folder: Path, *, conf_threshold: float = POINT_CONF_THRESHOLD,
                            poses: Optional[Path] = None,
                            cameras: Optional[Callable[[Any], Any]] = None) -> FitInputs:
    """Cameras, images, merged panoptic maps, fused points and legend of a predictions folder (model resolution).

    With `poses` (a Panoptic Lifting scene), the cameras are the scene's own (`pose/`, `intrinsic/`, matched by file
    stem) and each view's local pointmap is placed under its camera with a scale from multi-view consistency
    (`known_poses`); the scene frame is then the dataset's (identity alignment), and every view takes part.
    `cameras` does the same with cameras from elsewhere: a function of the loaded `Predictions` that returns
    `known_poses.KnownCameras` (a nerfstudio `transforms.json`, for instance).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"predictions folder {folder} does not exist; write one with `panst3r-splat predict`")
    try:
        pred = load_predictions(folder)
        segments = read_segments(folder / SEGMENTS_FILE, num_classes=len(pred.class_names))
    except ValueError as err:
        raise UserError(str(err)) from None
    V, H, W, _ = pred.images.shape
    all_names = tuple(frame_stem(str(n)) for n in pred.image_names)
    if len(set(all_names)) != len(all_names):
        raise UserError(f"{folder}: input frames share names; rename the images so every view has its own name")
    if poses is not None or cameras is not None:
        from panst3r_splat.pipeline.stages.known_poses import dataset_cameras

        known = dataset_cameras(pred, Path(poses)) if poses is not None else cameras(pred)
        return _inputs_under_poses(folder, pred, segments, known, all_names, conf_threshold)
    ok = pred.camera_ok  # views the camera solver could not place have NaN cameras: they take no part in the fit
    if ok.sum() < 2 and V >= 2:
        raise UserError(f"{folder}: only {int(ok.sum())} of {V} views have a camera ({pred.camera_source}); re-run "
                        "`panst3r-splat predict` with overlapping photos or --cameras head")
    if not ok.all():
        logger.warning("fit: leaving out %d views without a camera: %s", int((~ok).sum()),
                       ", ".join(n for n, good in zip(all_names, ok) if not good))
    names = tuple(n for n, good in zip(all_names, ok) if good)
    cameras = Cameras(K=torch.from_numpy(pred.K[ok]).float(),
                      T_world_cam=torch.from_numpy(pred.T_world_cam[ok]).float(), width=W, height=H, names=names)
    threshold = confidence_threshold(pred.conf[ok], conf_threshold)
    points, colors = fused_point_cloud(torch.from_numpy(pred.pts3d[ok]), torch.from_numpy(pred.images[ok]),
                                       torch.from_numpy(pred.conf[ok]), threshold)
    finite = torch.isfinite(points).all(dim=1)
    points, colors = points[finite], colors[finite]
    if len(points) == 0:
        raise UserError(f"{folder} holds no finite predicted point; re-run `panst3r-splat predict`")
    legend = _legend(folder, pred, segments, ok)
    source = {"kind": "predictions", "path": str(folder.resolve()), "conf_threshold": threshold,
              "views": list(names), "orig_hw": pred.orig_hw[ok].tolist(), "to_orig": pred.to_orig[ok].tolist(),
              "class_names": [str(c) for c in pred.class_names], "camera_source": pred.camera_source}
    return FitInputs(cameras=cameras, images=torch.from_numpy(pred.images[ok]),
                     segment_maps=torch.from_numpy(pred.panoptic[ok].astype(np.int64)),
                     points=points.numpy().astype(np.float32), colors=colors.numpy().astype(np.uint8),
                     legend=legend, source=source)


def _legend(folder: Path, pred: Any, segments: list[dict[str, Any]], ok: np.ndarray) -> tuple[SegmentInfo, ...]:
    """The legend of the predictions' segments; every segment id of the used views' panoptic maps must be in it."""
    legend = tuple(make_segment(s["id"], s["category_id"], int(pred.class_ids[s["category_id"]]),
                                str(pred.class_names[s["category_id"]]), s["isthing"], s["score"])
                   for s in segments)
    present = set(np.unique(pred.panoptic[ok]).tolist()) - {0}
    missing = sorted(present - {s.id for s in legend})
    if missing:
        raise UserError(f"{folder / SEGMENTS_FILE} lacks segment ids {missing[:10]} of the panoptic maps; "
                        "re-run `panst3r-splat merge` on the folder")
    return legend


def _inputs_under_poses(folder: Path, pred: Any, segments: list[dict[str, Any]], known: Any,
                        names: tuple[str, ...], conf_threshold: float) -> FitInputs:
    """`inputs_from_predictions` under known cameras (`known_poses.KnownCameras`), the local pointmaps placed."""
    from panst3r_splat.pipeline.stages.known_poses import place_predictions

    placement = place_predictions(pred, known)
    V, H, W, _ = pred.images.shape
    cameras = Cameras(K=torch.from_numpy(known.K).float(), T_world_cam=torch.from_numpy(known.T_world_cam).float(),
                      width=W, height=H, names=names)
    conf = np.where(np.isfinite(placement.pts3d).all(-1), pred.conf, 0.0).astype(np.float32)
    threshold = confidence_threshold(conf, conf_threshold)
    points, colors = fused_point_cloud(torch.from_numpy(placement.pts3d.astype(np.float32)),
                                       torch.from_numpy(pred.images), torch.from_numpy(conf), threshold)
    finite = torch.isfinite(points).all(dim=1)
    points, colors = points[finite], colors[finite]
    if len(points) == 0:
        raise UserError(f"{folder} holds no valid local point to place under the poses of {known.dataset}")
    ok = np.ones(V, dtype=bool)
    identity = Alignment(scale=1.0, R=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), t=(0.0, 0.0, 0.0),
                         residual=0.0, rotation_error_deg=0.0, views=names, dataset=known.dataset)
    source = {"kind": "predictions", "path": str(folder.resolve()), "conf_threshold": threshold,
              "views": list(names), "orig_hw": pred.orig_hw.tolist(), "to_orig": pred.to_orig.tolist(),
              "class_names": [str(c) for c in pred.class_names], "camera_source": "dataset",
              "poses": {"dataset": known.dataset, "scales": placement.scale.tolist(),
                        "connected": placement.connected.tolist(), "matches": placement.matches.tolist()}}
    return FitInputs(cameras=cameras, images=torch.from_numpy(pred.images),
                     segment_maps=torch.from_numpy(pred.panoptic.astype(np.int64)),
                     points=points.numpy().astype(np.float32), colors=colors.numpy().astype(np.uint8),
                     legend=_legend(folder, pred, segments, ok), source=source, alignment=identity)


def inputs_from_dataset(folder: Path, *, split: Optional[str] = "train", max_points: int = MAX_INIT_POINTS,
                        seed: int = 0) -> FitInputs:
    """Ground-truth cameras, colour frames, GT segments and back-projected depth of a Panoptic Lifting scene split."""
    folder = Path(folder)
    if not (folder / "splits.json").is_file():  # a scene without splits: every frame is an input view
        logger.info("fit: %s has no splits.json; using all its frames", folder)
        split = None
    data = read_panoptic_lifting(folder, split=split)
    V, H, W, _ = data.images.shape
    K = np.repeat(data.K[None], V, axis=0)
    points, flat = backproject_depth(data.depth, K, data.T_world_cam)
    if len(points) == 0:
        raise UserError(f"the depth maps of {folder} ({split}) hold no valid depth; the oracle fit needs depth/")
    if len(points) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
        points, flat = points[keep], flat[keep]
    colors = data.images.reshape(-1, 3)[flat]
    segment_maps, legend = gt_segments(data.semantics, data.instances)
    cameras = Cameras(K=torch.from_numpy(K).float(), T_world_cam=torch.from_numpy(data.T_world_cam).float(),
                      width=W, height=H, names=data.frame_names)
    dataset = str(folder.resolve())
    identity = Alignment(scale=1.0, R=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), t=(0.0, 0.0, 0.0),
                         residual=0.0, rotation_error_deg=0.0, views=data.frame_names, dataset=dataset)
    source = {"kind": "dataset", "oracle": True, "path": dataset, "split": split, "views": list(data.frame_names)}
    return FitInputs(cameras=cameras, images=torch.from_numpy(data.images),
                     segment_maps=torch.from_numpy(segment_maps), points=points.astype(np.float32),
                     colors=colors.astype(np.uint8), legend=legend, source=source, alignment=identity)


# ------------------------------------------------------------------------------------------------------ fitting


def background_color(images: UInt8[Tensor, "V H W 3"], mode: str) -> tuple[float, float, float]:
    """The training / render background of `FitOptions.background`, as RGB in [0, 1] (rounded to 1/255 so it
    prints and hashes stably)."""
    if mode == "black":
        return (0.0, 0.0, 0.0)
    if mode == "white":
        return (1.0, 1.0, 1.0)
    if mode != "mean":
        raise ValueError(f"background must be 'mean', 'black' or 'white', got {mode!r}")
    mean = images.reshape(-1, 3).double().mean(0) / 255.0
    return tuple(round(float(c) * 255.0) / 255.0 for c in mean)


def checkpoint_paths(out: Path) -> tuple[Path, Path]:
    """The training checkpoint beside the scene folder and the fingerprint of the inputs it was made from."""
    out = Path(out)
    return out.parent / f".{out.name}.train.ckpt", out.parent / f".{out.name}.train.json"


def inputs_fingerprint(inputs: FitInputs, options: FitOptions) -> str:
    """Hash of everything that shapes training besides the training config (which the checkpoint checks itself)."""
    return digest(inputs.cameras.K, inputs.cameras.T_world_cam, inputs.images, inputs.segment_maps, inputs.points,
                  inputs.colors, [FINGERPRINT_VERSION, options.budget, options.sh_degree, options.init_opacity],
                  length=None)


def _prepare_checkpoint(out: Path, fingerprint: str) -> Path:
    ckpt, meta = checkpoint_paths(out)
    if ckpt.exists():
        saved = json.loads(meta.read_text()).get("inputs") if meta.is_file() else None
        if saved != fingerprint:
            raise UserError(f"{ckpt} belongs to a fit of other inputs; delete it (and {meta.name}) to start afresh")
        logger.info("resuming the interrupted fit from %s", ckpt)
    else:
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"inputs": fingerprint}) + "\n")
    return ckpt


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse an output that is a file, a non-empty folder other than a scene, or (without `overwrite`) a scene."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    if is_scene_folder(out):
        if not overwrite:
            raise UserError(f"{out} already holds a fitted scene; pass --overwrite to replace it or choose another --out")
    elif any(out.iterdir()):
        raise UserError(f"{out} exists and is not a fitted scene folder; choose a new --out folder or empty it")


def fit_scene(inputs: FitInputs, out: Path, options: FitOptions, device: torch.device) -> FitResult:
    """Initialise, train (resumably), lift the segments onto the Gaussians and write the SCENE folder."""
    out = Path(out)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    try:
        scene = init_from_points(inputs.points, inputs.colors, options.budget, sh_degree=options.sh_degree,
                                 init_opacity=options.init_opacity)
    except ValueError as err:
        raise UserError(str(err)) from None
    seconds["init"] = time.perf_counter() - start
    logger.info("fit: %d views at %dx%d, %d Gaussians from %d points, %d segments", len(inputs.cameras),
                inputs.cameras.width, inputs.cameras.height, len(scene), len(inputs.points), len(inputs.legend))
    ckpt = _prepare_checkpoint(out, inputs_fingerprint(inputs, options))
    train = dataclasses.replace(options.train, background=background_color(inputs.images, options.background))
    start = time.perf_counter()
    try:
        trained = train_scene(scene, inputs.cameras, inputs.images, inputs.segment_maps, train, device,
                              checkpoint=ckpt, stop_at=options.stop_after)
    except ValueError as err:  # a checkpoint written with other settings
        raise UserError(str(err)) from None
    seconds["train"] = time.perf_counter() - start
    if trained.steps_done < train.steps:
        logger.info("fit: stopped after %d of %d steps; run the same command again to continue (checkpoint %s)",
                    trained.steps_done, train.steps, ckpt)
        return FitResult(scene=None, steps_done=trained.steps_done, seconds=seconds)
    start = time.perf_counter()
    gaussians = trained.scene.to(device)
    lifted = lift_segments(gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities,
                           trained.cameras.T_cam_world.to(device), trained.cameras.K.to(device),
                           inputs.segment_maps.to(device),
                           LiftOptions(include_void=not options.ignore_void, backend=train.backend))
    labelled = trained.scene.with_labels(lifted.segment_ids.cpu(), lifted.confidence.cpu())
    seconds["lift"] = time.perf_counter() - start
    start = time.perf_counter()
    used = set(lifted.segment_ids.unique().tolist())
    info = {
        "source": dict(inputs.source),
        "settings": {"train": dataclasses.asdict(train), "budget": options.budget,
                     "sh_degree": options.sh_degree, "init_opacity": options.init_opacity,
                     "ignore_void": options.ignore_void, "device": str(device)},
        "versions": software_versions(),
        "steps": trained.steps_done,
        "final_loss": trained.losses[-1] if trained.losses else None,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "segments_lifted": len(used - {0}),
        "segments_in_inputs": len(inputs.legend),
    }
    fitted = FittedScene(gaussians=labelled, cameras=trained.cameras.to("cpu"), segments=inputs.legend,
                         alignment=inputs.alignment, info=info)
    try:
        save_scene(out, fitted)
    except ValueError as err:
        raise UserError(str(err)) from None
    seconds["save"] = time.perf_counter() - start
    for path in checkpoint_paths(out):
        path.unlink(missing_ok=True)
    logger.info("fit: wrote %s (%d Gaussians; %d of %d segments carried by Gaussians) in %.1f s", out,
                len(labelled), len(used - {0}), len(inputs.legend), sum(seconds.values()))
    return FitResult(scene=fitted, steps_done=trained.steps_done, seconds=seconds)
