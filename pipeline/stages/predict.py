"""The `predict` stage: unposed images -> PanSt3R forward -> cameras -> merged panoptic -> predictions folder.

    options = PredictOptions(checkpoint=None, classes=None, size="default", keyframes="auto")
    run_predict(Path("photos"), Path("pred"), options)

Steps (docs/formats.md, "Predictions folder"):

1. The source is a folder of images, a single image, a video, or a Panoptic Lifting scene (``splits.json`` +
   ``color/``: the colour frames of ``--split``). Images are prepared as the official demo does
   (:func:`panst3r_splat.core.images.load_images`: aspect buckets at the checkpoint's training size, or ``native``).
2. The checkpoint is the built-in model unless ``--checkpoint`` names another (official ``.pth`` or ours); the class
   set is the checkpoint's own unless ``--classes`` names a class-set file (official checkpoints carry none) or
   ``--siglip`` a local SigLIP folder to embed the class names with (:mod:`pipeline.stages.classes`).
3. ``PanSt3R.forward_inference`` with the keyframe policy, on the chosen device (CUDA autocast for the backbones).
   A single image is duplicated to make a pair, as the official demo does (MUSt3R's memory wants two images to
   start), and the duplicate's outputs are dropped.
4. Cameras from the pointmaps (Weiszfeld focal, confidence-weighted Procrustes; the official principal point for
   official checkpoints, whose numbers users compare against the official demo, the project's centre otherwise).
5. The masks are merged (:mod:`pipeline.stages.merge`) and the folder is written atomically by ``save_predictions``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from threadpoolctl import threadpool_limits
from torch import Tensor
from tqdm.auto import tqdm

from panst3r_splat.core import class_table
from panst3r_splat.core.cameras import SolverOptions, solve_cameras_from_descriptors
from panst3r_splat.core.cameras.sfm import solve_cameras_sfm
from panst3r_splat.core.checkpoint import FORMAT_NAME, CheckpointError, LoadedCheckpoint, load_checkpoint
from panst3r_splat.core.class_sets import ClassSet, class_set_for_names, load_class_set
from panst3r_splat.core.geometry import PrincipalPoint, camera_from_pointmaps
from panst3r_splat.core.images import IMAGE_EXTENSIONS, NATIVE, LoadedImages, bucket_resolutions, load_images
from panst3r_splat.core.merging import MERGE_NAMES
from panst3r_splat.core.model import (
    AllKeyframes,
    FarthestPointKeyframes,
    InferenceOptions,
    InferenceOutput,
    KeyframePolicy,
    LinspaceKeyframes,
    activate_pointmaps,
)
from panst3r_splat.core.model.keyframes import DEFAULT_MAX_KEYFRAMES
from panst3r_splat.core.photos import PhotoRecord, photo_records, read_photo
from panst3r_splat.core.predictions import (
    CAMERA_RESIDUAL_COLUMNS,
    CAMERA_SOURCES,
    PREDICTIONS_FILE,
    Predictions,
    save_predictions,
)
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.stages.classes import read_names_file, siglip_class_set
from panst3r_splat.pipeline.stages.merge import merge_predictions

log = logging.getLogger(__name__)

KeyframeSelection = Literal["linspace", "farthest"]
"""How K keyframes are chosen: ``linspace`` over the input order (official, right for videos and ordered captures)
or ``farthest`` (farthest-point sampling on encoder descriptors, for large unordered photo collections)."""

CameraChoice = Literal["auto", "head", "matches", "sfm"]
"""``predict --cameras``: a source of :data:`panst3r_splat.core.predictions.CAMERA_SOURCES`, or ``auto``."""
CAMERA_SOURCE_METADATA_KEY = "camera_source"
GLOBAL_HEAD_METADATA_KEY = "global_head_trained"
"""Checkpoint metadata written by `train-model` when the global pointmap was not trained ("false")."""
"""Checkpoint metadata key naming the camera source a model should use (written by ``train-model``)."""

CAMERA_CHUNK_VIEWS = 16
"""Views per camera-estimation call (bounds the memory of the Weiszfeld iterations on large collections)."""


def default_checkpoint_path() -> Path:
    """The built-in model, ``configs/weights/panst3r_small.safetensors`` of the installed project."""
    import panst3r_splat.configs as configs

    return Path(configs.__file__).resolve().parent / "weights" / "panst3r_small.safetensors"


@dataclass(frozen=True)
class PredictOptions:
    """What `predict` does, as parsed from the command line (see `commands.PredictArgs` for the meaning)."""

    checkpoint: Path | None = None
    """Model checkpoint; None = the built-in model."""
    classes: Path | None = None
    """Class-set file; None = the checkpoint's own class set (or ``siglip``)."""
    siglip: Path | None = None
    """Local SigLIP model folder: embed the class names with it instead of reading ``classes``."""
    class_names: Path | None = None
    """Names file for ``siglip`` (one a line); None = the checkpoint's class names, else the class table's."""
    size: str = "default"
    """``default`` (the checkpoint's training size), an integer long side, or ``native``."""
    keyframes: str = "auto"
    """``auto`` (all up to 50 views, else 50), ``all``, or a number K."""
    keyframe_selection: KeyframeSelection = "linspace"
    """How K keyframes are picked (when fewer keyframes than views)."""
    merge: str | None = None
    """Merge name; None = the checkpoint's ``postprocess_default`` (else qubo)."""
    split: str = "train"
    """Split of a Panoptic Lifting scene."""
    device: torch.device = torch.device("cpu")
    """Where the model runs."""
    batch_size: int = 1
    """Views per encoder/render call (the official demo uses 1)."""
    max_video_frames: int = 100
    """Frames sampled evenly from a video input."""
    seed: int = 0
    """Seed of the QUBO solver."""
    cameras: CameraChoice = "auto"
    """Camera source: ``auto``, ``head``, ``matches`` or ``sfm`` (see :func:`resolve_camera_source`)."""


@dataclass(frozen=True)
class PredictResult:
    """What `run_predict` wrote."""

    folder: Path
    """The predictions folder."""
    predictions: Predictions
    """Its ``predictions.npz`` content."""
    segments: tuple[dict, ...]
    """Its ``segments.json`` entries (before class names were added)."""
    merge: str
    """The merge that was used."""


# ---------------------------------------------------------------------------------------------------- resolving


def load_model(checkpoint: Path | None) -> LoadedCheckpoint:
    """The checkpoint named on the command line, or the built-in model (one-line `UserError` when unusable)."""
    if checkpoint is None:
        path = default_checkpoint_path()
        if not path.is_file():
            raise UserError(
                f"the built-in model {path} is not installed; pass --checkpoint PATH (an official .pth or a "
                "panst3r-splat .safetensors, e.g. from `panst3r-splat train-model`)"
            )
    else:
        path = Path(checkpoint)
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as err:
        raise UserError(str(err)) from None
    log.info("model: %s (%s format, %.1f M parameters)", path, loaded.format,
             sum(p.numel() for p in loaded.model.parameters()) / 1e6)
    return loaded


def resolve_class_set(loaded: LoadedCheckpoint, options: PredictOptions) -> ClassSet:
    """The class set of ``--classes`` or ``--siglip``, else the checkpoint's own; its embedding width must match the
    model's."""
    lang_dim = loaded.config.mask_transformer.lang_dim
    classes = options.classes
    check_class_options(options)
    if options.siglip is not None:
        class_set = siglip_classes(loaded, options)
        source = f"SigLIP {options.siglip}"
    elif classes is not None:
        try:
            class_set = load_class_set(classes)
        except ValueError as err:
            raise UserError(str(err)) from None
        source = str(classes)
    elif loaded.class_names is not None and loaded.class_embeddings is not None:
        class_set = checkpoint_class_set(loaded.class_names, loaded.class_embeddings.numpy())
        source = "the checkpoint"
    else:
        raise UserError(
            "this checkpoint carries no class set (official checkpoints never do): pass --siglip DIR (a local SigLIP "
            "model folder, e.g. google/siglip-base-patch16-224) or --classes FILE.npz with class_names and "
            "class_embeddings (see `panst3r-splat classes`)"
        )
    width = class_set.class_embeddings.shape[1]
    if width != lang_dim:
        raise UserError(
            f"class embeddings from {source} are {width}-d but the model compares against "
            f"{lang_dim}-d {loaded.config.mask_transformer.text_encoder} text embeddings; use a class set made for it"
        )
    log.info("classes: %d from %s", len(class_set), source)
    return class_set


def check_class_options(options: PredictOptions) -> None:
    """Refuse contradictory class options before any work."""
    if options.siglip is not None and options.classes is not None:
        raise UserError("give either --classes FILE or --siglip DIR, not both")
    if options.class_names is not None and options.siglip is None:
        raise UserError("--class-names needs --siglip DIR (a class-set file carries its own names)")


def siglip_classes(loaded: LoadedCheckpoint, options: PredictOptions) -> ClassSet:
    """``--siglip``: the names of ``--class-names``, else the checkpoint's, else the class table's, embedded."""
    if options.class_names is not None:
        names = read_names_file(options.class_names)
    elif loaded.class_names is not None:
        names = tuple(loaded.class_names)
    else:
        names = tuple(class_table.class_names())
    if loaded.class_embeddings is not None:
        log.warning("this checkpoint ships its own class embeddings; SigLIP embeddings fit only a model trained "
                    "against SigLIP (the official ones)")
    return siglip_class_set(options.siglip, names, device=options.device)


def checkpoint_class_set(names: tuple[str, ...], embeddings: np.ndarray) -> ClassSet:
    """A checkpoint's shipped class set; dataset ids and thing flags come from the class table when every name is
    one of its classes (the built-in model), else the class-set file defaults (index + 1, all things)."""
    try:
        return class_set_for_names(names, embeddings)
    except ValueError as err:
        raise UserError(f"the checkpoint's class set is invalid ({err}); pass --classes FILE.npz") from None


def resolve_merge(name: str | None, loaded: LoadedCheckpoint) -> str:
    """``--merge``, else the checkpoint's ``postprocess_default`` when it is one we implement, else qubo."""
    if name is not None:
        if name not in MERGE_NAMES:
            raise UserError(f"unknown --merge {name!r}; choose one of {', '.join(MERGE_NAMES)}")
        return name
    default = loaded.config.postprocess_default
    if default in MERGE_NAMES:
        return default
    log.info("checkpoint's postprocess_default %r is not a merge we know; using qubo", default)
    return "qubo"


def resolve_size(size: str, loaded: LoadedCheckpoint) -> int | Literal["native"]:
    """``default`` -> the checkpoint's training long side; ``native``; or a positive multiple of the patch size."""
    patch = loaded.config.patch_size
    if size == "default":
        return int(loaded.config.image_size)
    if size == NATIVE:
        return NATIVE
    if not size.isdigit() or int(size) <= 0:
        raise UserError(f"--size must be 'default', 'native' or a long side in pixels such as 512, got {size!r}")
    try:
        bucket_resolutions(int(size), patch)
    except ValueError as err:
        raise UserError(f"--size {size}: {err}") from None
    return int(size)


def keyframe_policy(keyframes: str, selection: KeyframeSelection, num_views: int) -> KeyframePolicy:
    """``auto``: every view up to 50, else 50 chosen by ``selection`` (official default with linspace);
    ``all``; or K chosen by ``selection``."""
    if keyframes == "all":
        return AllKeyframes()
    if keyframes == "auto":
        if num_views <= DEFAULT_MAX_KEYFRAMES:
            return AllKeyframes()
        count = DEFAULT_MAX_KEYFRAMES
    elif keyframes.isdigit() and int(keyframes) >= 1:
        count = int(keyframes)
    else:
        raise UserError(f"--keyframes must be 'auto', 'all' or a number of keyframes >= 1, got {keyframes!r}")
    if selection == "linspace":
        return LinspaceKeyframes(count)
    if selection == "farthest":
        return FarthestPointKeyframes(count)
    raise UserError(f"unknown --keyframe-selection {selection!r}; use linspace or farthest")


def is_panoptic_lifting_scene(path: Path) -> bool:
    """A folder with ``splits.json`` and ``color/`` is read as a Panoptic Lifting scene."""
    return path.is_dir() and (path / "splits.json").is_file() and (path / "color").is_dir()


def resolve_inputs(images: Path, split: str) -> Path | list[Path]:
    """What to hand to ``load_images``: the source itself, or the colour files of a scene's split."""
    if not images.exists():
        raise UserError(f"--images {images} does not exist: give a folder of images, a video, or a Panoptic Lifting "
                        "scene folder")
    if not is_panoptic_lifting_scene(images):
        if images.is_dir() and (images / "color").is_dir() and not any(
            p.suffix.lower() in IMAGE_EXTENSIONS for p in images.iterdir()
        ):
            raise UserError(f"{images} has a color/ folder but no splits.json: add splits.json to read it as a "
                            f"Panoptic Lifting scene, or pass --images {images / 'color'}")
        return images
    from panst3r_splat.pipeline.datasets.panoptic_lifting import list_frames, read_splits

    splits = read_splits(images)
    if split not in splits:
        raise UserError(f"split {split!r} is not in {images / 'splits.json'} (it has: {', '.join(splits) or 'none'}); "
                        "choose one with --split")
    frames = list_frames(images)
    missing = [n for n in splits[split] if n not in frames]
    if missing:
        raise UserError(f"{images / 'color'} has no image for frames {', '.join(missing[:5])} of split {split!r}")
    if not splits[split]:
        raise UserError(f"split {split!r} of {images} lists no frames; choose another with --split")
    log.info("input: Panoptic Lifting scene %s, %d frames of split %r", images, len(splits[split]), split)
    return [frames[n] for n in splits[split]]


def read_inputs(source: Path | list[Path], size: int | Literal["native"], patch_size: int,
                max_video_frames: int) -> LoadedImages:
    """Load and prepare the images; all views must end up at one model resolution (the predictions folder stacks
    them)."""
    try:
        loaded = load_images(source, size=size, patch_size=patch_size, max_video_frames=max_video_frames)
    except ValueError as err:
        raise UserError(str(err)) from None
    if not loaded.uniform:
        sizes = []
        for group in loaded.groups:
            h, w = loaded.true_shape[int(group[0])]
            sizes.append(f"{w}x{h} ({len(group)} views, e.g. {loaded.names[int(group[0])]})")
        raise UserError(
            f"the images fall into different model sizes: {'; '.join(sizes)}; the predictions folder needs one size: "
            "use images of one orientation and aspect ratio, or --size native with images of one size"
        )
    h, w = loaded.true_shape[0]
    log.info("images: %d views at %dx%d (model resolution)", len(loaded), w, h)
    return loaded


def check_out_folder(out: Path) -> None:
    """Refuse, before any work, an ``--out`` that ``save_predictions`` would refuse to replace."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / PREDICTIONS_FILE).is_file())):
        raise UserError(f"--out {out} exists and is not a predictions folder: choose a new --out folder or empty "
                        "this one")


# ------------------------------------------------------------------------------------------------------ running


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast for the backbones on CUDA where supported (else float16); none on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def infer(loaded: LoadedCheckpoint, images: LoadedImages, class_set: ClassSet, policy: KeyframePolicy,
          options: PredictOptions) -> InferenceOutput:
    """``forward_inference`` over the views (a single view is paired with a copy of itself, outputs dropped)."""
    model = loaded.model.to(options.device).eval()
    views = [images.view_image(i).to(options.device) for i in range(len(images))]
    single = len(views) == 1
    if single:
        log.info("a single image: pairing it with a copy of itself (the memory is built from two images)")
        views = views * 2
    inference_options = InferenceOptions(
        keyframes=policy, batch_size=options.batch_size, autocast_dtype=autocast_dtype(options.device),
        output_device=torch.device("cpu"), progress=True,
    )
    embeddings = torch.from_numpy(class_set.class_embeddings).to(options.device)
    out = model.forward_inference(views, embeddings, inference_options)
    if not single:
        return out
    keyframes = tuple(dict.fromkeys(0 for _ in out.keyframes))  # the copy (view 1) is view 0
    return InferenceOutput(pointmaps_raw=out.pointmaps_raw[:1], mask_logits=out.mask_logits[:1],
                           class_logits=out.class_logits, queries=out.queries, keyframes=keyframes,
                           descriptors=None if out.descriptors is None else out.descriptors[:1],
                           descriptor_conf=None if out.descriptor_conf is None else out.descriptor_conf[:1])


def estimate_cameras(
    pts3d: Float[Tensor, "V H W 3"],
    pts3d_local: Float[Tensor, "V H W 3"],
    conf: Float[Tensor, "V H W"],
    mode: PrincipalPoint,
    device: torch.device,
) -> tuple[Float[Tensor, "V 3 3"], Float[Tensor, "V 4 4"]]:
    """``K`` and ``T_world_cam`` of every view, a chunk of views at a time on ``device`` (returned on the CPU)."""
    Ks, poses = [], []
    starts = range(0, pts3d.shape[0], CAMERA_CHUNK_VIEWS)
    for s in tqdm(starts, desc="cameras", leave=False, disable=len(starts) < 4):
        e = s + CAMERA_CHUNK_VIEWS
        K, T = camera_from_pointmaps(pts3d[s:e].to(device), pts3d_local[s:e].to(device), conf[s:e].to(device),
                                     principal_point_mode=mode)
        Ks.append(K.float().cpu())
        poses.append(T.float().cpu())
    return torch.cat(Ks), torch.cat(poses)


def check_camera_choice(choice: str) -> None:
    """Refuse, before any work, a ``--cameras`` value that cannot be served."""
    if choice not in ("auto", *CAMERA_SOURCES):
        raise UserError(f"unknown --cameras {choice!r}; choose auto, {', '.join(CAMERA_SOURCES)}")


def resolve_camera_source(choice: str, loaded: LoadedCheckpoint, has_descriptors: bool) -> str:
    """``--cameras``: ``auto`` = the checkpoint's ``camera_source`` metadata, else ``matches`` when the model has a
    descriptor head, else ``head`` (official checkpoints); an explicit source is checked against the model."""
    check_camera_choice(choice)
    source = choice
    if choice == "auto":
        meta = loaded.metadata.get(CAMERA_SOURCE_METADATA_KEY)
        if meta is not None and meta not in CAMERA_SOURCES:
            raise UserError(f"the checkpoint's camera_source metadata {meta!r} is not one of "
                            f"{', '.join(CAMERA_SOURCES)}; pass --cameras head|matches|sfm")
        source = meta or ("matches" if has_descriptors else "head")
        if meta == "matches" and not has_descriptors:
            log.warning("the checkpoint asks for camera_source=matches but has no descriptor head; using head")
            source = "head"
    if source == "matches" and not has_descriptors:
        raise UserError("--cameras matches needs a checkpoint with a descriptor head and this one has none; use "
                        "--cameras head (its own cameras) or sfm")
    check_camera_choice(source)
    return source


@dataclass(frozen=True)
class SolvedCameras:
    """The cameras of the chosen source, in the form the predictions folder stores."""

    source: str
    K: Float[Tensor, "V 3 3"]
    T_world_cam: Float[Tensor, "V 4 4"]
    pts3d: Float[Tensor, "V H W 3"]
    """Global points (NaN for views without a camera)."""
    camera_ok: np.ndarray
    """(V,) bool."""
    scale: np.ndarray
    """(V,) float: local pointmap -> world factor."""
    residuals: np.ndarray
    """(V, 4) float, columns ``CAMERA_RESIDUAL_COLUMNS``."""


def cameras_from_matches(output: InferenceOutput, pts3d_local: Float[Tensor, "V H W 3"],
                         mode: PrincipalPoint) -> SolvedCameras:
    """The classical solver on the model's dense descriptors (:mod:`panst3r_splat.core.cameras`); views it cannot
    connect get NaN cameras and points and are named in one warning line."""
    if output.descriptors is None or output.descriptor_conf is None:
        raise UserError("--cameras matches needs a checkpoint with a descriptor head; use --cameras head")
    local = pts3d_local.double().numpy()
    try:
        # One BLAS thread: the solver's products are small and many, and a second OpenBLAS thread made a 64-view
        # solve 1.3-3x slower beside another busy process (panst3r_core/cameras/design.md).
        with threadpool_limits(1, user_api="blas"):
            solution = solve_cameras_from_descriptors(local, output.descriptors, output.descriptor_conf,
                                                      SolverOptions(principal_point=mode))
    except ValueError as err:
        raise UserError(f"--cameras matches: {err}") from None
    missing = np.flatnonzero(~solution.camera_ok)
    if missing.size:
        log.warning("cameras: %d of %d views share too few matches with the others and get no camera (views %s); "
                    "they are left out of points.ply and fit", missing.size, solution.num_views,
                    ", ".join(str(int(v)) for v in missing))
    log.info("cameras from matches: %d views in %.1f s, median reprojection error %.2f px",
             int(solution.camera_ok.sum()), solution.seconds, float(np.nanmedian(solution.reprojection_px)))
    residuals = np.stack([solution.num_pairs, solution.num_inliers, solution.rotation_residual_deg,
                          solution.reprojection_px], axis=1).astype(np.float64)
    residuals[~solution.camera_ok] = np.nan
    return SolvedCameras(
        source="matches", K=torch.from_numpy(solution.K).float(),
        T_world_cam=torch.from_numpy(solution.T_world_cam).float(),
        pts3d=torch.from_numpy(solution.global_pointmaps(local)).float(), camera_ok=solution.camera_ok,
        scale=solution.scale, residuals=residuals,
    )


def cameras_from_sfm(photos: tuple[PhotoRecord, ...], pts3d_local: Float[Tensor, "V H W 3"],
                     to_orig: np.ndarray) -> SolvedCameras:
    """COLMAP on the photos at their own resolution (:mod:`panst3r_splat.core.cameras.sfm`), the model's local depth
    placed by its cameras; views COLMAP leaves out get NaN cameras and points and are named in one warning line."""
    if len(photos) < 2:
        raise UserError("--cameras sfm needs at least 2 photos; give more photos or use --cameras head")
    try:
        result = solve_cameras_sfm([read_photo(p) for p in photos], pts3d_local.double().numpy(), to_orig)
    except ValueError as err:
        raise UserError(f"--cameras sfm: {err}; use --cameras matches or head for these photos") from None
    solution = result.solution
    missing = np.flatnonzero(~solution.camera_ok)
    if missing.size:
        log.warning("cameras: COLMAP gave %d of %d views no camera (%s); they are left out of points.ply and fit",
                    missing.size, solution.num_views, ", ".join(photos[int(v)].name for v in missing))
    log.info("cameras from COLMAP: %d of %d views in %.1f s, median reprojection error %.2f px",
             int(solution.camera_ok.sum()), solution.num_views, solution.seconds,
             float(np.nanmedian(solution.reprojection_px)))
    residuals = np.stack([solution.num_pairs, solution.num_inliers, solution.rotation_residual_deg,
                          solution.reprojection_px], axis=1).astype(np.float64)
    residuals[~solution.camera_ok] = np.nan
    return SolvedCameras(
        source="sfm", K=torch.from_numpy(solution.K).float(), T_world_cam=torch.from_numpy(solution.T_world_cam).float(),
        pts3d=torch.from_numpy(result.pts3d).float(), camera_ok=solution.camera_ok, scale=solution.scale,
        residuals=residuals,
    )


def cameras_of_choice(choice: str, loaded: LoadedCheckpoint, output: InferenceOutput, pointmaps: tuple[Tensor, ...],
                  imgs: LoadedImages, photos: tuple[PhotoRecord, ...], device: torch.device) -> SolvedCameras:
    """The cameras of ``--cameras`` (``choice``): ``auto`` resolved against the model, ``matches`` falling back to
    ``head`` under ``auto``; ``pointmaps`` = ``(pts3d, pts3d_local, conf)``."""
    pts3d, pts3d_local, conf = pointmaps
    mode = PrincipalPoint.OFFICIAL if loaded.format != FORMAT_NAME else PrincipalPoint.CENTER
    V = conf.shape[0]
    source = resolve_camera_source(choice, loaded, output.descriptors is not None)
    if source == "matches" and V < 2:
        if choice != "auto":
            raise UserError("--cameras matches needs at least 2 images; give more photos or use --cameras head")
        source = "head"  # one image: nothing to match
    if source == "matches":
        try:
            return cameras_from_matches(output, pts3d_local, mode)
        except UserError as err:
            if choice != "auto":
                raise
            log.warning("%s; --cameras auto falls back to the model's own cameras (head)", err)
    elif source == "sfm":
        return cameras_from_sfm(photos, pts3d_local, imgs.to_orig)
    if loaded.metadata.get(GLOBAL_HEAD_METADATA_KEY) == "false":
        log.warning("this model's global pointmap head is untrained (it was trained for local pointmaps and "
                    "descriptors): its own cameras (head) are not meaningful; use --cameras matches")
    K, T_world_cam = estimate_cameras(pts3d, pts3d_local, conf, mode, device)
    return SolvedCameras(source="head", K=K, T_world_cam=T_world_cam, pts3d=pts3d, camera_ok=np.ones(V, dtype=bool),
                         scale=np.ones(V), residuals=np.full((V, len(CAMERA_RESIDUAL_COLUMNS)), np.nan))


def assemble_predictions(imgs: LoadedImages, output: InferenceOutput, class_set: ClassSet,
                         pts3d_local: Tensor, conf: Tensor, solved: SolvedCameras) -> Predictions:
    """The predictions record before merging (``panoptic`` all void)."""
    V, H, W = conf.shape
    return Predictions(
        image_names=np.array(imgs.names, dtype=str), images=imgs.images_uint8, pts3d=solved.pts3d,
        pts3d_local=pts3d_local, conf=conf, mask_logits=output.stacked_mask_logits().float(),
        class_logits=output.class_logits.float(), class_names=np.array(class_set.class_names, dtype=str),
        class_ids=class_set.class_ids, isthing=class_set.isthing, orig_hw=imgs.orig_hw, to_orig=imgs.to_orig,
        keyframes=np.array(output.keyframes, dtype=np.int64), K=solved.K, T_world_cam=solved.T_world_cam,
        panoptic=np.zeros((V, H, W), dtype=np.int32), camera_source=solved.source, camera_ok=solved.camera_ok,
        camera_scale=solved.scale, camera_residuals=solved.residuals,
    )


def _check_options(out: Path, options: PredictOptions) -> None:
    """Refuse, before any work, options that cannot be served."""
    check_out_folder(Path(out))
    check_class_options(options)
    check_camera_choice(options.cameras)
    if options.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {options.batch_size}")


def run_predict(images: Path, out: Path, options: PredictOptions) -> PredictResult:
    """The whole stage; see the module docstring. Bad input raises `UserError` (one line)."""
    start = time.perf_counter()
    _check_options(out, options)
    source = resolve_inputs(Path(images), options.split)
    loaded = load_model(options.checkpoint)
    class_set = resolve_class_set(loaded, options)
    merge_name = resolve_merge(options.merge, loaded)
    imgs = read_inputs(source, resolve_size(options.size, loaded), loaded.config.patch_size, options.max_video_frames)
    photos = photo_records(source, imgs.names, imgs.orig_hw)  # where the photos are (fit --fit-size)
    policy = keyframe_policy(options.keyframes, options.keyframe_selection, max(len(imgs), 2))
    t_model = time.perf_counter()
    output = infer(loaded, imgs, class_set, policy, options)
    log.info("model: %d views, keyframes %s, %.1f s on %s", len(imgs), list(output.keyframes),
             time.perf_counter() - t_model, options.device)
    pointmaps = activate_pointmaps(output.stacked_pointmaps_raw())
    solved = cameras_of_choice(options.cameras, loaded, output, pointmaps, imgs, photos, options.device)
    pred = assemble_predictions(imgs, output, class_set, pointmaps[1], pointmaps[2], solved)
    merged = merge_predictions(pred, merge_name, device=options.device, seed=options.seed)
    try:
        folder = save_predictions(merged.predictions, out, merged.segments, photos=photos)
    except ValueError as err:
        raise UserError(str(err)) from None
    log.info("predict: %d views, %d segments (%s) in %.1f s -> %s", len(imgs), len(merged.segments), merge_name,
             time.perf_counter() - start, folder)
    return PredictResult(folder=folder, predictions=merged.predictions, segments=merged.segments, merge=merge_name)

__all__ = [
    "KeyframeSelection",
    "PredictOptions",
    "PredictResult",
    "CameraChoice",
    "SolvedCameras",
    "assemble_predictions",
    "cameras_from_matches",
    "cameras_from_sfm",
    "check_class_options",
    "check_out_folder",
    "checkpoint_class_set",
    "default_checkpoint_path",
    "estimate_cameras",
    "infer",
    "is_panoptic_lifting_scene",
    "keyframe_policy",
    "load_model",
    "read_inputs",
    "resolve_camera_source",
    "resolve_class_set",
    "resolve_inputs",
    "resolve_merge",
    "resolve_size",
    "run_predict",
    "siglip_classes",
    "cameras_of_choice",
]
