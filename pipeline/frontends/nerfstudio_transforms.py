"""`panst3r-nerfstudio-data`: a nerfstudio `transforms.json` (as `ns-process-data` writes it) with PanSt3R labels.

    ns-train panst3r-splat panst3r-nerfstudio-data --data DIR [--predictions PRED] [--downscale-factor N]

Named so because plugin dataparser names override nerfstudio's built-ins (`nerfstudio-data` must stay nerfstudio's).
The cameras are the file's: `transform_matrix` camera-to-world with OpenGL axes (`conventions.opengl_to_opencv`),
intrinsics per frame or global (`fl_x fl_y cx cy w h`, pixel centres at +0.5, `conventions.intrinsics_from_nerfstudio`).
Distorted cameras are refused with a message saying how to undistort (this parser trains a pinhole model; a
distortion it ignored would misplace every label). `--downscale-factor N` reads `images_N/` (as `ns-process-data`
writes it) with the intrinsics scaled by 1/N. The eval split is nerfstudio's (`train_filenames` / `val_filenames` /
`test_filenames` in the file, else `--eval-mode fraction|filename|interval|all`).

The labels and seed points come from a predictions folder of the frames (`--predictions`, or `predict` run once on
the frames' image folder and cached as `panst3r-data` does): its merged panoptic maps (mapped to the frames'
resolution) and its local pointmaps placed under the file's cameras with per-view scales from image matches
(`known_poses`, as `fit --poses`), so the scene is in the file's frame. Frames are matched by file stem; a train frame
without a prediction is an error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Type

import numpy as np
import torch
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from panst3r_splat.core.predictions import Predictions, frame_stem, load_predictions, map_labels_to_original
from panst3r_splat.pipeline.datasets.conventions import intrinsics_from_nerfstudio, opengl_to_opencv
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.evaluation.resize import resize_nearest
from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import (
    Panst3rDataParserBaseConfig, Panst3rDataParserConfig, SceneLabels, _Frames, _Panst3rDataParserBase, _subsample,
    predictions_for,
)
from panst3r_splat.splat.scene_io import labels_from_segments

logger = logging.getLogger(__name__)

DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
PINHOLE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")


@dataclass(frozen=True)
class TransformsFrames:
    """The frames of a transforms.json, in file order, at the resolution of the images read."""

    names: tuple[str, ...]
    image_paths: tuple[Path, ...]
    K: np.ndarray  # [V, 3, 3] ours (pixel centres at integers), at the read images' resolution
    K_full: np.ndarray  # [V, 3, 3] ours, at the file's (full) resolution
    T_world_cam: np.ndarray  # [V, 4, 4] OpenCV axes
    width: int
    height: int
    full_hw: tuple[int, int]
    splits: dict[str, tuple[str, ...]]


def _value(frame: dict, meta: dict, key: str, where: str) -> Any:
    if key in frame:
        return frame[key]
    if key in meta:
        return meta[key]
    raise UserError(f"{where}: no {key!r} for frame {frame.get('file_path')!r} (per frame or at the top level)")


def read_transforms(path: Path, downscale: int = 1) -> TransformsFrames:
    """Parse a transforms.json (nerfstudio's format); distortion and non-pinhole models are refused."""
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist; --data must be a folder with a transforms.json (ns-process-data)")
    try:
        meta = json.loads(path.read_text())
        frames = list(meta["frames"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"cannot read {path} as nerfstudio's transforms.json ({err})") from None
    if not frames:
        raise UserError(f"{path} lists no frames")
    names, paths, K, T, sizes = [], [], [], [], set()
    for frame in frames:
        model = str(frame.get("camera_model", meta.get("camera_model", "OPENCV")))
        if model not in PINHOLE_MODELS:
            raise UserError(f"{path}: camera model {model} is not supported; undistort the images to a pinhole "
                            "camera first (e.g. COLMAP's image_undistorter, then ns-process-data on its output)")
        distortion = {k: float(frame.get(k, meta.get(k, 0.0))) for k in DISTORTION_KEYS}
        if any(abs(v) > 1e-9 for v in distortion.values()):
            raise UserError(f"{path}: frame {frame.get('file_path')} has lens distortion {distortion}; this parser "
                            "trains pinhole cameras: undistort the images first (COLMAP's image_undistorter, or "
                            "ns-process-data with a PINHOLE camera) or use nerfstudio's own nerfstudio-data")
        file_path = Path(str(frame["file_path"]))
        if downscale > 1:
            file_path = Path(f"{file_path.parent}_{downscale}") / file_path.name
        image = (path.parent / file_path)
        if not image.is_file():
            hint = " (written by ns-process-data --num-downscales)" if downscale > 1 else ""
            raise UserError(f"{image} is missing{hint}; check --data and --downscale-factor")
        names.append(frame_stem(file_path.name))
        paths.append(image)
        fx, fy, cx, cy = (torch.tensor([[float(_value(frame, meta, k, str(path)))]], dtype=torch.float64)
                          for k in ("fl_x", "fl_y", "cx", "cy"))
        K.append(intrinsics_from_nerfstudio(fx, fy, cx, cy)[0].numpy())
        sizes.add((int(_value(frame, meta, "h", str(path))), int(_value(frame, meta, "w", str(path)))))
        T.append(opengl_to_opencv(torch.tensor(frame["transform_matrix"], dtype=torch.float64)).numpy())
    if len(sizes) != 1:
        raise UserError(f"{path}: frames have several image sizes {sorted(sizes)}; this parser needs one size")
    if len(set(names)) != len(names):
        raise UserError(f"{path}: several frames share a file stem; rename the images")
    full_h, full_w = sizes.pop()
    K_full = np.stack(K)
    K_read = K_full.copy()
    if downscale > 1:  # nerfstudio scales (fx, fy, cx + 0.5, cy + 0.5) by 1 / N
        K_read[:, :2, :2] /= downscale
        K_read[:, :2, 2] = (K_full[:, :2, 2] + 0.5) / downscale - 0.5
    splits = {s: tuple(frame_stem(Path(str(f)).name) for f in meta[f"{s}_filenames"])
              for s in ("train", "val", "test") if f"{s}_filenames" in meta}
    T4 = np.stack([np.concatenate([t[:3], [[0, 0, 0, 1]]]) for t in T])
    return TransformsFrames(names=tuple(names), image_paths=tuple(paths), K=K_read, K_full=K_full, T_world_cam=T4,
                            width=full_w // downscale if downscale > 1 else full_w,
                            height=full_h // downscale if downscale > 1 else full_h, full_hw=(full_h, full_w),
                            splits=splits)


@dataclass
class Panst3rNerfstudioDataParserConfig(Panst3rDataParserBaseConfig):
    """`panst3r-nerfstudio-data`: a transforms.json (ns-process-data) with PanSt3R labels placed under its cameras."""

    _target: Type = field(default_factory=lambda: Panst3rNerfstudioDataParser)
    data: Path = Path()
    """Folder with transforms.json (or the file itself), as ns-process-data writes it."""
    predictions: Optional[Path] = None
    """Predictions folder of the frames (`panst3r-splat predict --images DIR/images`); default: predict once on the
    frames' image folder (cached as panst3r-data does)."""
    downscale_factor: int = 1
    """Read `images_N/` with the intrinsics scaled by 1/N (N = 1: the full-resolution images)."""
    eval_mode: Literal["fraction", "filename", "interval", "all"] = "fraction"
    """nerfstudio's eval split when the file has no *_filenames lists."""
    train_split_fraction: float = 0.9
    eval_interval: int = 8


class Panst3rNerfstudioDataParser(_Panst3rDataParserBase):
    """See the module docstring."""

    config: Panst3rNerfstudioDataParserConfig

    def _split_frames(self, split: str) -> tuple[str, ...]:
        return self._splits[split if split == "train" else "eval"]

    def _load(self) -> _Frames:
        from panst3r_splat.pipeline.stages.fit import inputs_from_predictions
        from panst3r_splat.pipeline.stages.known_poses import known_cameras

        c = self.config
        if c.downscale_factor < 1:
            raise UserError(f"--downscale-factor must be at least 1, got {c.downscale_factor}")
        tf = read_transforms(c.data, c.downscale_factor)
        self._splits = _splits(tf, c)
        folder = c.predictions
        if folder is None:
            folder = predictions_for(Panst3rDataParserConfig(data=read_transforms(c.data).image_paths[0].parent))
        index = {n: i for i, n in enumerate(tf.names)}
        K_full = {n: tf.K_full[i] for n, i in index.items()}
        T = {n: tf.T_world_cam[i] for n, i in index.items()}
        hw = {n: tf.full_hw for n in index}
        source = str(Path(c.data))
        inputs = inputs_from_predictions(Path(folder), cameras=lambda p: known_cameras(p, K_full, T, hw, source))
        pred = load_predictions(Path(folder))
        missing = [n for n in self._splits["train"] if n not in inputs.cameras.names]
        if missing:
            raise UserError(f"{folder} has no prediction for train frames {', '.join(missing[:5])} ({len(missing)} "
                            f"of {len(self._splits['train'])}); predict from the frames' images")
        segment_maps = _label_maps(pred, tf)
        semantics, instances = labels_from_segments(np.stack(list(segment_maps.values())), inputs.legend)
        points, colors = _subsample(inputs.points.astype(np.float64), inputs.colors, c.max_init_points)
        scene = SceneLabels(segments=inputs.legend, normalisation=self._normalisation(tf.T_world_cam),
                            source={**dict(inputs.source), "kind": "transforms", "data": str(Path(c.data).resolve())})
        return _Frames(names=tf.names, K=tf.K, T_world_cam=tf.T_world_cam, width=tf.width, height=tf.height,
                       image_paths=tf.image_paths, points=points, colors=colors, scene=scene, split_names={},
                       segment_maps=segment_maps, gt_semantics=dict(zip(segment_maps, semantics)),
                       gt_instances=dict(zip(segment_maps, instances.astype(np.int32))))


def _label_maps(pred: Predictions, tf: TransformsFrames) -> dict[str, np.ndarray]:
    """The merged panoptic map of every predicted frame, at the read images' resolution."""
    out = {}
    for i, name in enumerate(frame_stem(str(n)) for n in pred.image_names):
        if name not in tf.names:
            continue
        full = map_labels_to_original(pred.panoptic[i], pred.to_orig[i], tf.full_hw)
        if full.shape != (tf.height, tf.width):
            full = resize_nearest(full, tf.height, tf.width)
        out[name] = full.astype(np.int32)
    return out


def _splits(tf: TransformsFrames, c: Panst3rNerfstudioDataParserConfig) -> dict[str, tuple[str, ...]]:
    """Train and eval frame names: the file's lists, else nerfstudio's split functions on the frame order."""
    from nerfstudio.data.utils import dataparsers_utils as splits

    if tf.splits:
        train = tf.splits.get("train", ())
        evaluation = tf.splits.get("val", tf.splits.get("test", ()))
        return {"train": train, "eval": evaluation}
    files = [str(p) for p in tf.image_paths]
    if c.eval_mode == "fraction":
        i_train, i_eval = splits.get_train_eval_split_fraction(files, c.train_split_fraction)
    elif c.eval_mode == "filename":
        i_train, i_eval = splits.get_train_eval_split_filename(files)
    elif c.eval_mode == "interval":
        i_train, i_eval = splits.get_train_eval_split_interval(files, c.eval_interval)
    else:
        i_train, i_eval = splits.get_train_eval_split_all(files)
    return {"train": tuple(tf.names[i] for i in i_train), "eval": tuple(tf.names[i] for i in i_eval)}



panst3r_nerfstudio_dataparser = DataParserSpecification(
    config=Panst3rNerfstudioDataParserConfig(),
    description="panst3r-splat: a nerfstudio transforms.json (ns-process-data) with PanSt3R labels placed under its "
                "cameras",
)
