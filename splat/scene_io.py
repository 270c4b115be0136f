"""The fitted scene folder (`fit --out SCENE`, CLI.md "Fitted scene folder"), read by `render`, `export`, `view`.

    SCENE/gaussians.ply    standard 3DGS PLY + semantic_id, instance_id, segment_id, label_conf (see ply.py)
    SCENE/cameras.json     input views: name, width, height, K, T_world_cam (OpenCV, camera-to-world)
    SCENE/segments.json    legend: id, category_id (index into the class names), class_id, class_name, isthing,
                           color, score (COCO-panoptic keys, so renders and evaluation share the format)
    SCENE/alignment.json   when a dataset frame is known: Sim(3) scene -> dataset frame, with its residual
    SCENE/scene.json       source, settings, versions, counts

`save_scene` writes everything into a hidden sibling folder and renames it into place (a crash never leaves a
half-written scene), replacing only an empty folder or an earlier scene.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Int32

from panst3r_splat.core.atomic_io import atomic_output, swap_into_place
from panst3r_splat.core.transforms import Similarity
from panst3r_splat.splat.gaussians import Cameras, GaussianScene
from panst3r_splat.splat.palette import segment_color
from panst3r_splat.splat.ply import read_ply, write_ply

logger = logging.getLogger(__name__)

GAUSSIANS_FILE = "gaussians.ply"
CAMERAS_FILE = "cameras.json"
SEGMENTS_FILE = "segments.json"
ALIGNMENT_FILE = "alignment.json"
SCENE_FILE = "scene.json"
SCENE_FORMAT = "panst3r-splat scene"
SCENE_VERSION = 1


@dataclass(frozen=True)
class SegmentInfo:
    """One entry of the scene legend: a panoptic segment the Gaussians can carry."""

    id: int
    """Segment id (> 0; 0 is void), the value of `GaussianScene.segment_ids`."""
    category_id: int
    """Index into the class names of the predictions (or of the class table for datasets)."""
    class_id: int
    """Dataset label id written to `pred_semantics`."""
    class_name: str
    isthing: bool
    color: tuple[int, int, int]
    """Legend / panoptic render colour, RGB uint8."""
    score: float = 1.0

    def __post_init__(self) -> None:
        if self.id <= 0:
            raise ValueError(f"segment id must be > 0 (0 is void), got {self.id}")
        object.__setattr__(self, "color", tuple(int(c) for c in self.color))


def make_segment(id: int, category_id: int, class_id: int, class_name: str, isthing: bool,
                 score: float = 1.0) -> SegmentInfo:
    """A legend entry with the palette's colour for it."""
    return SegmentInfo(id=int(id), category_id=int(category_id), class_id=int(class_id), class_name=str(class_name),
                       isthing=bool(isthing), color=segment_color(int(id), int(class_id), bool(isthing)),
                       score=float(score))


@dataclass(frozen=True)
class Alignment:
    """Similarity taking scene-frame points to the dataset frame: `x_dataset = scale * R @ x_scene + t`."""

    scale: float
    R: tuple[tuple[float, float, float], ...]
    t: tuple[float, float, float]
    residual: float
    """RMS distance between aligned scene camera centres and the dataset's (dataset units)."""
    rotation_error_deg: float | None = None
    """Mean angle between aligned scene camera rotations and the dataset's, when checked."""
    views: tuple[str, ...] = ()
    """Frames the fit used."""
    dataset: str = ""
    """Dataset scene the frame belongs to."""

    def similarity(self, dtype: torch.dtype = torch.float64) -> Similarity:
        """As the one similarity type (to transform points and cameras)."""
        return Similarity(scale=torch.tensor(self.scale, dtype=dtype), R=torch.tensor(self.R, dtype=dtype),
                          t=torch.tensor(self.t, dtype=dtype), residual=torch.tensor(self.residual, dtype=dtype))

    @staticmethod
    def from_similarity(fit: Similarity, *, rotation_error_deg: float | None = None, views: Sequence[str] = (),
                        dataset: str = "") -> "Alignment":
        """The record of `fit` (its residual, 0 when it has none) with the diagnostics of how it was found."""
        R = fit.R.detach().double().cpu().tolist()
        residual = 0.0 if fit.residual is None else float(fit.residual)
        return Alignment(scale=float(fit.scale), R=tuple(tuple(r) for r in R),
                         t=tuple(fit.t.detach().double().cpu().tolist()), residual=residual,
                         rotation_error_deg=rotation_error_deg, views=tuple(views), dataset=str(dataset))


@dataclass(frozen=True)
class FittedScene:
    """Everything in a SCENE folder."""

    gaussians: GaussianScene
    cameras: Cameras
    segments: tuple[SegmentInfo, ...]
    alignment: Alignment | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    """Contents of scene.json: `source`, `settings`, `versions` and whatever else the writer recorded."""

    def __post_init__(self) -> None:
        ids = [s.id for s in self.segments]
        if len(set(ids)) != len(ids):
            raise ValueError("the segment legend lists a segment id twice")

    def gaussian_labels(self) -> tuple[Int32[np.ndarray, "N"], Int32[np.ndarray, "N"]]:
        """Per-Gaussian (semantic class id, instance id); see `labels_from_segments`."""
        return labels_from_segments(self.gaussians.segment_ids, self.segments)


def labels_from_segments(segment_ids: torch.Tensor | np.ndarray, segments: Iterable[SegmentInfo]
                         ) -> tuple[Int32[np.ndarray, "*S"], Int32[np.ndarray, "*S"]]:
    """Semantic class ids and instance ids of segment ids (any shape): the class of the segment; the segment id as
    instance id for things, 0 for stuff. Void (0) and ids missing from the legend give (0, 0)."""
    seg = segment_ids.detach().cpu().numpy() if isinstance(segment_ids, torch.Tensor) else np.asarray(segment_ids)
    seg = seg.astype(np.int64)
    table = sorted(segments, key=lambda s: s.id)
    keys = np.array([s.id for s in table], dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(seg.shape, np.int32), np.zeros(seg.shape, np.int32)
    pos = np.clip(np.searchsorted(keys, seg), 0, len(keys) - 1)
    known = keys[pos] == seg
    class_ids = np.array([s.class_id for s in table], dtype=np.int32)
    things = np.array([s.isthing for s in table], dtype=bool)
    semantic = np.where(known, class_ids[pos], 0).astype(np.int32)
    instance = np.where(known & things[pos], seg, 0).astype(np.int32)
    return semantic, instance


def software_versions() -> dict[str, str]:
    """Versions of the packages that shape a fitted scene (for scene.json)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("panst3r-splat", "gsplat", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _cameras_json(cameras: Cameras) -> dict[str, Any]:
    K = cameras.K.detach().double().cpu().tolist()
    T = cameras.T_world_cam.detach().double().cpu().tolist()
    return {
        "convention": "OpenCV axes (x right, y down, z forward); T_world_cam is camera-to-world; "
                      "K has integer pixel coordinates at pixel centres",
        "cameras": [{"name": name, "width": cameras.width, "height": cameras.height, "K": K[i], "T_world_cam": T[i]}
                    for i, name in enumerate(cameras.names)],
    }


def _cameras_from_json(data: Any, path: Path) -> Cameras:
    try:
        entries = data["cameras"]
        sizes = {(int(e["width"]), int(e["height"])) for e in entries}
        if len(sizes) != 1:
            raise ValueError(f"all cameras must share one image size, found {sorted(sizes)}")
        (width, height), = sizes
        return Cameras(K=torch.tensor([e["K"] for e in entries], dtype=torch.float32),
                       T_world_cam=torch.tensor([e["T_world_cam"] for e in entries], dtype=torch.float32),
                       width=width, height=height, names=tuple(str(e["name"]) for e in entries))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid cameras file: {err}") from err


def _segment_json(s: SegmentInfo) -> dict[str, Any]:
    return {"id": s.id, "category_id": s.category_id, "class_id": s.class_id, "class_name": s.class_name,
            "isthing": s.isthing, "color": list(s.color), "score": s.score}


def _segments_from_json(data: Any, path: Path) -> tuple[SegmentInfo, ...]:
    try:
        return tuple(SegmentInfo(id=int(e["id"]), category_id=int(e["category_id"]), class_id=int(e["class_id"]),
                                 class_name=str(e["class_name"]), isthing=bool(e["isthing"]),
                                 color=tuple(e["color"]), score=float(e.get("score", 1.0))) for e in data)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid segment legend: {err}") from err


def _alignment_json(a: Alignment) -> dict[str, Any]:
    return {"direction": "scene -> dataset: x_dataset = scale * R @ x_scene + t", "scale": a.scale,
            "R": [list(r) for r in a.R], "t": list(a.t), "residual": a.residual,
            "rotation_error_deg": a.rotation_error_deg, "views": list(a.views), "dataset": a.dataset}


def _alignment_from_json(data: Any, path: Path) -> Alignment:
    try:
        return Alignment(scale=float(data["scale"]), R=tuple(tuple(float(x) for x in r) for r in data["R"]),
                         t=tuple(float(x) for x in data["t"]), residual=float(data["residual"]),
                         rotation_error_deg=(None if data.get("rotation_error_deg") is None
                                             else float(data["rotation_error_deg"])),
                         views=tuple(data.get("views", ())), dataset=str(data.get("dataset", "")))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid alignment file: {err}") from err


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def save_alignment(path: str | Path, alignment: Alignment) -> Path:
    """Write an alignment file (the format of SCENE/alignment.json) atomically, e.g. once `render` has estimated
    the frame of a scene fitted from predictions; returns the path."""
    path = Path(path)
    with atomic_output(path) as tmp:
        _write_json(tmp, _alignment_json(alignment))
    return path


def read_alignment(path: str | Path) -> Alignment:
    """Read an alignment file written by `save_alignment` or `save_scene`."""
    path = Path(path)
    return _alignment_from_json(_read_json(path), path)


def is_scene_folder(folder: str | Path) -> bool:
    """Whether `folder` looks like a fitted scene (has gaussians.ply)."""
    return (Path(folder) / GAUSSIANS_FILE).is_file()


def save_scene(folder: str | Path, scene: FittedScene) -> Path:
    """Write the SCENE folder atomically (see the module docstring); returns its path."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not is_scene_folder(folder))):
        raise ValueError(f"{folder} exists and is not a fitted scene folder: choose a new --out folder or empty it")
    known = {s.id for s in scene.segments}
    unknown = sorted(set(scene.gaussians.segment_ids.unique().tolist()) - known - {0})
    if unknown:
        raise ValueError(f"Gaussians carry segment ids missing from the legend: {unknown[:10]}")
    semantic, instance = scene.gaussian_labels()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = folder.parent / f".{folder.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        write_ply(tmp / GAUSSIANS_FILE, scene.gaussians, semantic_ids=semantic, instance_ids=instance)
        _write_json(tmp / CAMERAS_FILE, _cameras_json(scene.cameras))
        _write_json(tmp / SEGMENTS_FILE, [_segment_json(s) for s in scene.segments])
        if scene.alignment is not None:
            _write_json(tmp / ALIGNMENT_FILE, _alignment_json(scene.alignment))
        info = {"format": SCENE_FORMAT, "version": SCENE_VERSION, **dict(scene.info)}
        info.setdefault("versions", software_versions())
        info["num_gaussians"] = len(scene.gaussians)
        info["sh_degree"] = scene.gaussians.sh_degree
        _write_json(tmp / SCENE_FILE, info)
        swap_into_place(tmp, folder, tag)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote fitted scene %s (%d Gaussians, %d segments)", folder, len(scene.gaussians),
                len(scene.segments))
    return folder


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err


def load_scene(folder: str | Path) -> FittedScene:
    """Read a SCENE folder written by `save_scene` (errors name the missing or broken file)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: point to a scene written by `panst3r-splat fit`")
    for name in (GAUSSIANS_FILE, CAMERAS_FILE, SEGMENTS_FILE):
        if not (folder / name).is_file():
            raise ValueError(f"{folder} lacks {name}: point to a scene written by `panst3r-splat fit`")
    ply = read_ply(folder / GAUSSIANS_FILE)
    cameras = _cameras_from_json(_read_json(folder / CAMERAS_FILE), folder / CAMERAS_FILE)
    segments = _segments_from_json(_read_json(folder / SEGMENTS_FILE), folder / SEGMENTS_FILE)
    alignment = None
    if (folder / ALIGNMENT_FILE).is_file():
        alignment = _alignment_from_json(_read_json(folder / ALIGNMENT_FILE), folder / ALIGNMENT_FILE)
    info = _read_json(folder / SCENE_FILE) if (folder / SCENE_FILE).is_file() else {}
    return FittedScene(gaussians=ply.scene, cameras=cameras, segments=segments, alignment=alignment, info=info)
