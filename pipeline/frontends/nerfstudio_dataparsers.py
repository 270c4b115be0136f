"""nerfstudio dataparsers of `ns-train panst3r-splat`: `panst3r-data` and `panoptic-lifting-data`.

    ns-train panst3r-splat panst3r-data --data PHOTOS_OR_PRED
    ns-train panst3r-splat panoptic-lifting-data --data SCENE [--predictions PRED]

`panst3r-data` takes a folder of unposed images (PanSt3R `predict` runs once; its predictions folder is cached in
the run's output folder, `<output-dir>/<experiment>/panst3r-splat/panst3r-predictions/`, keyed by the images and
the predict settings, so later runs, `ns-render` and `ns-viewer` reuse it) or an existing predictions folder: the
predicted cameras, the images as the model saw them, the merged panoptic maps and the fused point cloud.

`panoptic-lifting-data` reads the Panoptic Lifting layout with its ground-truth cameras and honours `splits.json`
(nerfstudio's eval images are the `test` frames). Training labels are the ground truth (`rs_semantics` +
`rs_instance`, one segment per thing instance and per stuff class) or, with `--predictions`, the merged panoptic
maps of a predictions folder of the train frames, mapped back to the frames' resolution; the predictions' local
pointmaps are then placed under the dataset's cameras with per-view scales from image matches (`known_poses`, as
`fit --poses dataset:SCENE`), which gives the seed points when the scene has no depth. Eval labels are always the dataset's ground truth when it has them.

Both parsers normalise the cameras as nerfstudio's own do (`conventions.normalisation_from_poses`, recorded in
`dataparser_transforms.json`) and hand the model what it needs through `DataparserOutputs.metadata`:
`points3D_xyz` / `points3D_rgb` (nerfstudio's seed-point keys), `META_SCENE` (`SceneLabels`: the legend and the
frames) and `META_VIEWS` (`ViewLabels`: the split's cameras and label maps). `Panst3rDataset` puts each view's label
maps into its batch (`KEY_SEGMENT_MAP`, `KEY_GT_SEMANTICS`, `KEY_GT_INSTANCES`) and serves in-memory images.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Literal, Mapping, Optional, Type

import numpy as np
import PIL.Image
import torch
from jaxtyping import Float32, Int32, UInt8

from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from panst3r_splat.core.predictions import (
    POINT_CONF_THRESHOLD, PREDICTIONS_FILE, frame_stem, load_predictions, map_labels_to_original,
)
from panst3r_splat.pipeline.datasets.conventions import (
    Centering, NormalisationTransform, Orientation, normalisation_from_poses, to_nerfstudio_cameras,
)
from panst3r_splat.pipeline.datasets.panoptic_lifting import FOLDERS, read_panoptic_lifting, read_splits
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.evaluation.resize import resize_nearest
from panst3r_splat.pipeline.fingerprints import digest, file_listing
from panst3r_splat.splat.scene_io import Alignment, SegmentInfo, labels_from_segments

logger = logging.getLogger(__name__)

META_SCENE = "panst3r_scene"
"""`DataparserOutputs.metadata` key of the `SceneLabels`."""
META_VIEWS = "panst3r_views"
"""`DataparserOutputs.metadata` key of the split's `ViewLabels`."""
KEY_SEGMENT_MAP = "segment_map"
"""Batch key: int64 [H, W] panoptic segment ids the view trains on (0 = void)."""
KEY_GT_SEMANTICS = "gt_semantics"
"""Batch key: int64 [H, W] evaluation class ids (0 = void)."""
KEY_GT_INSTANCES = "gt_instances"
"""Batch key: int64 [H, W] evaluation instance ids, consistent across views."""
PREDICTIONS_CACHE_NAME = "panst3r-predictions"
MAX_INIT_POINTS = 400_000


@dataclass(frozen=True)
class SceneLabels:
    """What the whole scene shares: the segment legend, the frames and where the labels came from."""

    segments: tuple[SegmentInfo, ...]
    """Legend of every segment id of the training label maps."""
    normalisation: NormalisationTransform
    """Data frame -> nerfstudio's normalised frame."""
    dataset: Optional[str] = None
    """Panoptic Lifting scene whose frame is the data frame (None: the data frame is a predictions frame)."""
    alignment: Optional[Alignment] = None
    """Predictions frame -> dataset frame, when predicted labels were aligned to a dataset's cameras."""
    source: Mapping[str, Any] = field(default_factory=dict)
    """Provenance (kind, paths, settings), recorded by `load_ns_output` in scene.json."""


@dataclass(frozen=True)
class ViewLabels:
    """The views of one split: cameras in nerfstudio's normalised frame (our conventions) and their label maps."""

    names: tuple[str, ...]
    K: Float32[np.ndarray, "V 3 3"]
    """Intrinsics at the label maps' resolution, integer pixel coordinates at pixel centres."""
    T_world_cam: Float32[np.ndarray, "V 4 4"]
    """Camera-to-world, OpenCV axes, normalised frame."""
    width: int
    height: int
    segment_maps: Optional[Int32[np.ndarray, "V H W"]] = None
    """Panoptic segment ids the views train on and the labels are lifted from (ids of the legend, 0 = void)."""
    gt_semantics: Optional[UInt8[np.ndarray, "V H W"]] = None
    """Evaluation class ids (dataset ground truth, or the predictions' own when there is no dataset)."""
    gt_instances: Optional[Int32[np.ndarray, "V H W"]] = None
    """Evaluation instance ids, consistent across views."""
    images: Optional[UInt8[np.ndarray, "V H W 3"]] = None
    """Images held in memory (a predictions folder's model-resolution images); None: read the image files."""

    def __post_init__(self) -> None:
        V = len(self.names)
        if self.K.shape != (V, 3, 3) or self.T_world_cam.shape != (V, 4, 4):
            raise ValueError(f"ViewLabels: {V} names but K {self.K.shape} and T_world_cam {self.T_world_cam.shape}")
        for name in ("segment_maps", "gt_semantics", "gt_instances"):
            array = getattr(self, name)
            if array is not None and array.shape != (V, self.height, self.width):
                raise ValueError(f"ViewLabels.{name} has shape {array.shape}, expected {(V, self.height, self.width)}")
        if self.images is not None and self.images.shape != (V, self.height, self.width, 3):
            raise ValueError(f"ViewLabels.images has shape {self.images.shape}")


class Panst3rDataset(InputDataset):
    """nerfstudio's `InputDataset` plus each view's label maps in the batch, and images served from memory when
    the dataparser holds them (predictions are at model resolution and have no image files)."""

    def _views(self) -> Optional[ViewLabels]:
        return self.metadata.get(META_VIEWS)

    def get_numpy_image(self, image_idx: int) -> np.ndarray:
        views = self._views()
        if views is None or views.images is None:
            return super().get_numpy_image(image_idx)
        image = views.images[image_idx]
        if self.scale_factor != 1.0:
            h, w = image.shape[:2]
            size = (int(w * self.scale_factor), int(h * self.scale_factor))
            image = np.asarray(PIL.Image.fromarray(image).resize(size, resample=PIL.Image.Resampling.BILINEAR))
        return np.ascontiguousarray(image)

    def get_metadata(self, data: Dict) -> Dict:
        views = self._views()
        if views is None:
            return {}
        idx = int(data["image_idx"])
        height, width = data["image"].shape[:2]
        out = {}
        for key, array in ((KEY_SEGMENT_MAP, views.segment_maps), (KEY_GT_SEMANTICS, views.gt_semantics),
                           (KEY_GT_INSTANCES, views.gt_instances)):
            if array is not None:
                labels = array[idx]
                if labels.shape != (height, width):  # camera_res_scale_factor: labels follow by nearest neighbour
                    labels = resize_nearest(labels, height, width)
                out[key] = torch.from_numpy(labels.astype(np.int64))
        return out


# ----------------------------------------------------------------------------------------------- shared helpers


@dataclass(frozen=True)
class _Frames:
    """Everything a parser loaded, before the split is chosen (all frames, data frame)."""

    names: tuple[str, ...]
    K: np.ndarray  # [V, 3, 3]
    T_world_cam: np.ndarray  # [V, 4, 4], data frame
    width: int
    height: int
    image_paths: tuple[Path, ...]
    points: np.ndarray  # [P, 3], data frame
    colors: np.ndarray  # [P, 3] uint8
    scene: SceneLabels
    split_names: Mapping[str, tuple[str, ...]]
    segment_maps: dict[str, np.ndarray] = field(default_factory=dict)
    """Frame name -> training segment map (only frames that have one)."""
    gt_semantics: dict[str, np.ndarray] = field(default_factory=dict)
    gt_instances: dict[str, np.ndarray] = field(default_factory=dict)
    images: Optional[np.ndarray] = None  # [V, H, W, 3] in-memory images


def _subsample(points: np.ndarray, colors: np.ndarray, limit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most `limit` points, drawn at random with a fixed seed (the voxel downsampling of the model follows)."""
    if len(points) <= limit:
        return points, colors
    keep = np.sort(np.random.default_rng(seed).choice(len(points), limit, replace=False))
    return points[keep], colors[keep]


@dataclass
class Panst3rDataParserBaseConfig(DataParserConfig):
    """Options both parsers share: nerfstudio's pose normalisation and the initial point cloud."""

    orientation_method: Orientation = "up"
    """How to orient the scene (nerfstudio's `auto_orient_and_center_poses`): 'up' turns the mean camera up to +z."""
    center_method: Centering = "poses"
    """How to centre the scene: 'poses' puts the mean camera centre at the origin."""
    auto_scale_poses: bool = True
    """Scale the scene so the cameras fit in [-1, 1]^3."""
    scale_factor: float = 1.0
    """Extra scale applied after the automatic one."""
    max_init_points: int = MAX_INIT_POINTS
    """Points kept (at random, fixed seed) for the model's initialisation; the model voxel-downsamples further."""


class _Panst3rDataParserBase(DataParser):
    """Turns `_Frames` into nerfstudio's per-split outputs (normalised cameras, metadata); subclasses load."""

    config: Panst3rDataParserBaseConfig

    def _load(self) -> _Frames:
        raise NotImplementedError

    @functools.cached_property
    def frames(self) -> _Frames:
        """Loaded once per parser (nerfstudio asks for the train and the eval split separately)."""
        return self._load()

    def _split_frames(self, split: str) -> tuple[str, ...]:
        raise NotImplementedError

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs: Optional[Dict]) -> DataparserOutputs:
        f = self.frames
        names = self._split_frames(split)
        index = {n: i for i, n in enumerate(f.names)}
        idx = np.array([index[n] for n in names], dtype=np.int64)
        norm = f.scene.normalisation
        T_ns = norm.apply_T_world_cam(torch.from_numpy(f.T_world_cam[idx]).double()).float()
        K = torch.from_numpy(f.K[idx]).float()
        cameras = to_nerfstudio_cameras(K, T_ns, f.width, f.height)

        def stack(maps: Mapping[str, np.ndarray], dtype: Any) -> Optional[np.ndarray]:
            if not all(n in maps for n in names):
                return None
            return np.stack([maps[n] for n in names]).astype(dtype)

        views = ViewLabels(names=names, K=K.numpy(), T_world_cam=T_ns.numpy(), width=f.width, height=f.height,
                           segment_maps=stack(f.segment_maps, np.int32), gt_semantics=stack(f.gt_semantics, np.uint8),
                           gt_instances=stack(f.gt_instances, np.int32),
                           images=None if f.images is None else f.images[idx])
        metadata: dict[str, Any] = {META_SCENE: f.scene, META_VIEWS: views}
        if split == "train":
            points = norm.apply_points(torch.from_numpy(f.points).double()).float()
            metadata["points3D_xyz"] = points
            metadata["points3D_rgb"] = torch.from_numpy(f.colors.astype(np.uint8))
        extent = 1.5 * self.config.scale_factor
        return DataparserOutputs(
            image_filenames=[f.image_paths[i] for i in idx], cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-extent] * 3, [extent] * 3], dtype=torch.float32)),
            metadata=metadata, dataparser_transform=norm.matrix(), dataparser_scale=norm.scale,
        )

    def _normalisation(self, T_world_cam: np.ndarray) -> NormalisationTransform:
        c = self.config
        return normalisation_from_poses(torch.from_numpy(T_world_cam).double(), orientation=c.orientation_method,
                                        center=c.center_method, auto_scale=c.auto_scale_poses,
                                        scale_factor=c.scale_factor)


# ------------------------------------------------------------------------------------------------ panst3r-data


@dataclass
class Panst3rDataParserConfig(Panst3rDataParserBaseConfig):
    """`panst3r-data`: a folder of unposed images (PanSt3R predict runs once, cached) or a predictions folder."""

    _target: Type = field(default_factory=lambda: Panst3rDataParser)
    data: Path = Path()
    """A folder of images (or a video, or a Panoptic Lifting scene) to run predict on, or a predictions folder."""
    checkpoint: Optional[Path] = None
    """PanSt3R checkpoint for predict (official .pth or ours); default: the built-in model."""
    classes: Optional[Path] = None
    """Class-set file for predict; default: the checkpoint's own."""
    size: str = "default"
    """predict's image size: 'default' (the checkpoint's training size), a long side such as 512, or 'native'."""
    keyframes: str = "auto"
    """predict's keyframes: 'auto', 'all' or a number K."""
    merge: Optional[Literal["qubo", "standard_v2", "standard_v1"]] = None
    """Mask merging; default: the checkpoint's."""
    cameras: Literal["auto", "head", "matches", "sfm"] = "auto"
    """predict's camera source (as `predict --cameras`): 'auto' (the checkpoint's choice), 'head' (PanSt3R's own),
    'matches' (solved from the model's dense descriptors)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where predict runs."""
    predictions_cache: Optional[Path] = None
    """Folder holding cached predictions of image folders; ns-train sets it inside the run's output folder
    (`<output-dir>/<experiment>/panst3r-splat/panst3r-predictions`); when unset, a hidden folder beside --data."""
    conf_threshold: float = POINT_CONF_THRESHOLD
    """Confidence a predicted point needs to seed a Gaussian."""
    eval_mode: Literal["all", "interval"] = "all"
    """Eval views: 'all' (every input view; scores then measure agreement with the 2D predictions) or 'interval'
    (every `eval_interval`-th view held out of training)."""
    eval_interval: int = 8
    """Hold out every this many views with eval_mode 'interval'."""

    def place_predictions_cache(self, folder: Path) -> None:
        """Keep predictions of an images folder in `folder/panst3r-predictions` unless a cache is already set."""
        if self.predictions_cache is None:
            self.predictions_cache = Path(folder) / PREDICTIONS_CACHE_NAME


def is_predictions_folder(path: Path) -> bool:
    """Whether `path` holds a predictions folder written by `predict`."""
    return (Path(path) / PREDICTIONS_FILE).is_file()


def _fingerprint_inputs(config: Panst3rDataParserConfig) -> str:
    """Hash of the predict inputs and settings: same images (names, sizes, times) + same settings = same cache."""
    data = Path(config.data).resolve()
    listing = file_listing(data, relative_to=data.parent)
    from panst3r_splat.pipeline.stages.predict import default_checkpoint_path

    # The model file itself (the built-in one too): retrained weights give other predictions.
    ckpt = Path(config.checkpoint if config.checkpoint is not None else default_checkpoint_path()).resolve()
    checkpoint = [str(ckpt), *((ckpt.stat().st_size, ckpt.stat().st_mtime_ns) if ckpt.exists() else (None, None))]
    settings = {"images": str(data), "files": listing, "checkpoint": checkpoint,
                "classes": None if config.classes is None else str(Path(config.classes).resolve()),
                "size": config.size, "keyframes": config.keyframes, "merge": config.merge, "cameras": config.cameras}
    return digest(settings)


def predictions_for(config: Panst3rDataParserConfig) -> Path:
    """The predictions folder for `config.data`: itself when it is one, else the cached predict output (run once)."""
    data = Path(config.data)
    if not data.exists():
        raise UserError(f"--data {data} does not exist; pass a folder of images or a predictions folder")
    if is_predictions_folder(data):
        return data
    cache_root = config.predictions_cache
    if cache_root is None:
        cache_root = data.resolve().parent / f".{data.resolve().name}.{PREDICTIONS_CACHE_NAME}"
    cached = Path(cache_root) / f"predictions-{_fingerprint_inputs(config)}"
    if is_predictions_folder(cached):
        logger.info("panst3r-data: reusing the predictions cached in %s", cached)
        return cached
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.stages.predict import PredictOptions, run_predict

    options = PredictOptions(checkpoint=config.checkpoint, classes=config.classes, size=config.size,
                             keyframes=config.keyframes, merge=config.merge, device=resolve_device(config.device),
                             cameras=config.cameras)
    logger.info("panst3r-data: running PanSt3R predict on %s (cached in %s)", data, cached)
    return run_predict(data, cached, options).folder


class Panst3rDataParser(_Panst3rDataParserBase):
    """Predicted cameras, images, merged panoptic maps and points of a predictions folder (see the module doc)."""

    config: Panst3rDataParserConfig

    def _load(self) -> _Frames:
        from panst3r_splat.pipeline.stages.fit import inputs_from_predictions

        folder = predictions_for(self.config)
        inputs = inputs_from_predictions(folder, conf_threshold=self.config.conf_threshold)
        names = inputs.cameras.names
        segment_maps = inputs.segment_maps.numpy().astype(np.int32)
        semantics, instances = labels_from_segments(segment_maps, inputs.legend)
        T = inputs.cameras.T_world_cam.double().numpy()
        points, colors = _subsample(inputs.points, inputs.colors, self.config.max_init_points)
        scene = SceneLabels(segments=inputs.legend, normalisation=self._normalisation(T),
                            source={**dict(inputs.source), "kind": "predictions",
                                    "images": str(self.config.data)})
        return _Frames(
            names=names, K=inputs.cameras.K.double().numpy(), T_world_cam=T, width=inputs.cameras.width,
            height=inputs.cameras.height, image_paths=tuple(Path(folder) / "images" / f"{n}.png" for n in names),
            points=points, colors=colors, scene=scene, split_names={},
            segment_maps=dict(zip(names, segment_maps)), gt_semantics=dict(zip(names, semantics)),
            gt_instances=dict(zip(names, instances)), images=inputs.images.numpy(),
        )

    def _split_frames(self, split: str) -> tuple[str, ...]:
        names = self.frames.names
        if self.config.eval_mode == "all" or len(names) < 2:
            return names
        if self.config.eval_interval < 2:
            raise UserError(f"--eval-interval must be at least 2, got {self.config.eval_interval}")
        held_out = tuple(n for i, n in enumerate(names) if i % self.config.eval_interval == 0)
        return tuple(n for n in names if n not in held_out) if split == "train" else held_out


# ----------------------------------------------------------------------------------------- panoptic-lifting-data


@dataclass
class PanopticLiftingDataParserConfig(Panst3rDataParserBaseConfig):
    """`panoptic-lifting-data`: a Panoptic Lifting scene with ground-truth cameras and GT or predicted labels."""

    _target: Type = field(default_factory=lambda: PanopticLiftingDataParser)
    data: Path = Path()
    """Panoptic Lifting scene folder (color/, pose/, intrinsic/, rs_semantics/, rs_instance/, splits.json)."""
    predictions: Optional[Path] = None
    """Train on the merged labels of this predictions folder (`panst3r-splat predict --images SCENE`) instead of
    the ground truth; it must cover every train frame."""
    train_split: str = "train"
    """Split of splits.json to train on."""
    eval_split: str = "test"
    """Split of splits.json nerfstudio evaluates and renders as 'test' / 'val'."""
    init_points: Literal["auto", "depth", "predictions"] = "auto"
    """Initial points: back-projected depth of the train frames, or the (aligned) predicted points; 'auto' takes
    depth when the scene has it."""


class PanopticLiftingDataParser(_Panst3rDataParserBase):
    """The Panoptic Lifting layout (see the module docstring)."""

    config: PanopticLiftingDataParserConfig

    def _split_frames(self, split: str) -> tuple[str, ...]:
        f = self.frames
        name = self.config.train_split if split == "train" else self.config.eval_split
        if not f.split_names:
            return f.names  # no splits.json: every frame trains and evaluates
        if name not in f.split_names:
            raise UserError(f"split {name!r} is not in {Path(self.config.data) / 'splits.json'} "
                            f"(it has: {', '.join(f.split_names)}); choose it with --train-split / --eval-split")
        return f.split_names[name]

    def _load(self) -> _Frames:
        root = Path(self.config.data)
        splits = read_splits(root) if root.is_dir() else {}
        has = {part: (root / FOLDERS[part]).is_dir() for part in ("depth", "semantics", "instances")}
        has_gt = has["semantics"] and has["instances"]
        if self.config.predictions is None and not has_gt:
            raise UserError(f"{root} has no rs_semantics/ and rs_instance/ ground truth; pass --predictions PRED "
                            "(from `panst3r-splat predict --images SCENE`) to train on predicted labels")
        parts = {"color", "pose", "intrinsics"} | ({"semantics", "instances"} if has_gt else set())
        data = read_panoptic_lifting(root, parts=parts)
        V, H, W, _ = data.images.shape
        K = np.repeat(data.K[None], V, axis=0)
        names = data.frame_names
        train = splits.get(self.config.train_split, names) if splits else names
        frames = {"names": names, "K": K, "T_world_cam": data.T_world_cam, "width": W, "height": H,
                  "image_paths": data.color_paths, "split_names": splits}
        gt_sem, gt_inst = {}, {}
        if has_gt:
            gt_sem = dict(zip(names, data.semantics))
            gt_inst = dict(zip(names, data.instances.astype(np.int32)))
        normalisation = self._normalisation(data.T_world_cam)
        dataset = str(root.resolve())
        if self.config.predictions is None:
            from panst3r_splat.pipeline.datasets.panoptic_lifting import gt_segments

            seg, legend = gt_segments(data.semantics, data.instances)
            segment_maps = dict(zip(names, seg.astype(np.int32)))
            alignment, pred_points = None, None
            source = {"kind": "dataset", "path": dataset, "labels": "ground truth"}
        else:
            segment_maps, legend, alignment, pred_points = _predicted_labels(
                Path(self.config.predictions), train, (H, W), dataset)
            source = {"kind": "dataset", "path": dataset, "labels": "predictions",
                      "predictions": str(Path(self.config.predictions).resolve())}
        points, colors = self._init_points(root, data, train, has["depth"], pred_points)
        scene = SceneLabels(segments=legend, normalisation=normalisation, dataset=dataset, alignment=alignment,
                            source=source)
        return _Frames(**frames, points=points, colors=colors, scene=scene, segment_maps=segment_maps,
                       gt_semantics=gt_sem, gt_instances=gt_inst)

    def _init_points(self, root: Path, data: Any, train: tuple[str, ...], has_depth: bool,
                     pred_points: Optional[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        choice = self.config.init_points
        if choice == "auto":
            choice = "depth" if has_depth else "predictions"
        if choice == "predictions":
            if pred_points is None:
                raise UserError(f"{root} has no depth/ to seed the Gaussians; pass --predictions PRED so the "
                                "predicted points (aligned to the dataset) seed them")
            return _subsample(*pred_points, self.config.max_init_points)
        if not has_depth:
            raise UserError(f"--init-points depth: {root} has no depth/ folder")
        from panst3r_splat.core.geometry import backproject_depth

        train_data = read_panoptic_lifting(root, split=None, parts={"depth"})
        index = {n: i for i, n in enumerate(data.frame_names)}
        idx = np.array([index[n] for n in train])
        points, flat = backproject_depth(train_data.depth[idx], np.repeat(data.K[None], len(idx), axis=0),
                                         data.T_world_cam[idx])
        if len(points) == 0:
            raise UserError(f"the depth maps of the train frames of {root} hold no valid depth")
        colors = data.images[idx].reshape(-1, 3)[flat]
        return _subsample(points, colors, self.config.max_init_points)


def _predicted_labels(folder: Path, train: tuple[str, ...], hw: tuple[int, int], dataset: str
                      ) -> tuple[dict[str, np.ndarray], tuple[SegmentInfo, ...], Optional[Alignment],
                                 tuple[np.ndarray, np.ndarray]]:
    """Segment maps of the train frames from a predictions folder (at the frames' resolution), the legend, the
    predictions -> dataset alignment (identity: the predictions are placed under the dataset's cameras) and the
    predicted points in the dataset frame.

    The placement is `fit --poses dataset:SCENE`'s (`known_poses`): the dataset's cameras of the predicted frames,
    each view's local pointmap at a scale from image matches under those cameras (never the dataset's depth).
    """
    from panst3r_splat.pipeline.stages.fit import inputs_from_predictions

    try:
        pred = load_predictions(folder)
    except ValueError as err:
        raise UserError(str(err)) from None
    pred_names = [frame_stem(str(n)) for n in pred.image_names]
    missing = [n for n in train if n not in pred_names]
    if missing:
        raise UserError(f"{folder} has no prediction for train frames {', '.join(missing[:5])} "
                        f"({len(missing)} of {len(train)}); run `panst3r-splat predict --images SCENE --split train`")
    segment_maps: dict[str, np.ndarray] = {}
    for i, name in enumerate(pred_names):
        if name not in train:
            continue
        if tuple(int(x) for x in pred.orig_hw[i]) != hw:
            raise UserError(f"{folder}: frame {name} was predicted from a {pred.orig_hw[i][1]}x{pred.orig_hw[i][0]} "
                            f"image but the scene's frames are {hw[1]}x{hw[0]}; predict from this scene")
        segment_maps[name] = map_labels_to_original(pred.panoptic[i], pred.to_orig[i], hw).astype(np.int32)
    inputs = inputs_from_predictions(folder, poses=Path(dataset))
    logger.info("placed the predictions under the dataset's cameras: per-view scales %s",
                np.round(inputs.source["poses"]["scales"], 4).tolist())
    return segment_maps, inputs.legend, inputs.alignment, (inputs.points.astype(np.float64), inputs.colors)


panst3r_dataparser = DataParserSpecification(
    config=Panst3rDataParserConfig(),
    description="panst3r-splat: unposed images (PanSt3R predict runs once, cached) or a predictions folder",
)
panoptic_lifting_dataparser = DataParserSpecification(
    config=PanopticLiftingDataParserConfig(),
    description="panst3r-splat: Panoptic Lifting scene layout (GT cameras, splits.json, GT or predicted labels)",
)
