"""The predictions folder (``predict --out PRED``, CLI.md "Predictions folder") and the class-set file (``--classes``).

``PRED/predictions.npz`` holds the model outputs at model resolution (:class:`Predictions`, one field per key, no
pickles: strings are fixed-width unicode); ``PRED/segments.json`` the COCO-panoptic segment list;
``PRED/points.ply`` the fused coloured point cloud; ``PRED/pred_semantics/`` and ``PRED/pred_surrogateid/`` the label
PNGs of the input frames at their *original* resolution (the evaluation format of Panoptic Lifting), mapped back
through the resize and crop (``to_orig``), void outside the crop. :func:`save_predictions` writes the whole folder
into a temporary sibling and renames it into place, so a crash never leaves a half-written folder behind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, no_type_check

import numpy as np
import PIL.Image
import torch
from jaxtyping import Bool, Float, Float32, Int32, Int64, Shaped, UInt8, UInt16
from plyfile import PlyData, PlyElement

from panst3r_splat.core.arrays import as_numpy, coerce_array
from panst3r_splat.core.atomic_io import swap_into_place
from panst3r_splat.core.geometry import fused_point_cloud
from panst3r_splat.core.images import IMAGE_EXTENSIONS
from panst3r_splat.core.photos import PhotoRecord, write_photos

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.npz"
SEGMENTS_FILE = "segments.json"
POINTS_FILE = "points.ply"
SEMANTICS_DIR = "pred_semantics"
SURROGATE_DIR = "pred_surrogateid"
POINT_CONF_THRESHOLD = 3.0
"""Confidence threshold of ``points.ply`` (the official viewer's default)."""

CAMERAS_FILE = "cameras.json"
CAMERA_SOURCES = ("head", "matches", "sfm")
"""Where a predictions folder's cameras come from (``predict --cameras``): PanSt3R's own pointmap head, the classical
solver on the model's dense matches (:mod:`panst3r_splat.core.cameras`), or COLMAP."""
CAMERA_RESIDUAL_COLUMNS = ("num_pairs", "num_inliers", "rotation_residual_deg", "reprojection_px")
"""Columns of ``camera_residuals``: usable view pairs, inlier matches of those pairs, median disagreement of the
view's pairs with the averaged rotations (degrees), median reprojection error of the matches landing in the view
(pixels). NaN where the source does not measure them (``head``) or the view is unconnected."""

SEGMENT_REQUIRED_KEYS = ("id", "category_id", "isthing", "score", "query_id", "area")
"""Keys every entry of ``segments.json`` carries (COCO-panoptic ``segments_info`` plus the query and area)."""


# ------------------------------------------------------------------------------------------------ predictions


@no_type_check  # construction coerces and validates its inputs itself (__post_init__, one-line errors)
@dataclass(frozen=True)
class Predictions:
    """Everything ``predictions.npz`` holds (CLI.md), at model resolution, views in input order.

    Construction coerces dtypes (torch tensors and float64 / int64 arrays are accepted, lossy kind changes are not)
    and checks every shape against the others; a mismatch raises ``ValueError`` naming the key.
    """

    image_names: Shaped[np.ndarray, "V"]
    """Input file names, fixed-width unicode."""
    images: UInt8[np.ndarray, "V H W 3"]
    """The images as the model saw them."""
    pts3d: Float32[np.ndarray, "V H W 3"]
    """Points in the world frame (= camera frame of keyframe #0)."""
    pts3d_local: Float32[np.ndarray, "V H W 3"]
    """Points in each view's camera frame (OpenCV)."""
    conf: Float32[np.ndarray, "V H W"]
    """Point confidence ``1 + exp(raw)``."""
    mask_logits: Float32[np.ndarray, "V Q h w"]
    """Per-query mask logits at half resolution (h = H/2, w = W/2)."""
    class_logits: Float32[np.ndarray, "Q K"]
    """Per-query class logits."""
    class_names: Shaped[np.ndarray, "K"]
    """Class names, fixed-width unicode."""
    class_ids: Int32[np.ndarray, "K"]
    """Dataset label id of each class (written to ``pred_semantics``)."""
    isthing: Bool[np.ndarray, "K"]
    """Thing (True) or stuff class."""
    orig_hw: Int32[np.ndarray, "V 2"]
    """Original image size ``(H, W)``."""
    to_orig: Float32[np.ndarray, "V 3 3"]
    """Model pixel coordinates -> original pixel coordinates (pixel centres at integers)."""
    keyframes: Int64[np.ndarray, "k"]
    """Indices of the keyframes, in memory order."""
    K: Float32[np.ndarray, "V 3 3"]
    """Intrinsics at model resolution."""
    T_world_cam: Float32[np.ndarray, "V 4 4"]
    """Camera-to-world, OpenCV axes."""
    panoptic: Int32[np.ndarray, "V H W"]
    """Merged segment id per pixel, 0 = void, same id = same object in every view."""
    camera_source: str = "head"
    """Where ``K``, ``T_world_cam`` and ``pts3d`` come from, one of :data:`CAMERA_SOURCES` (folders written before
    the key existed load as ``head``)."""
    camera_ok: Bool[np.ndarray, "V"] | None = None
    """Whether each view has a camera. False: its camera and ``pts3d`` are NaN, it is left out of ``points.ply`` and
    of fitting (its 2D labels are still written). None at construction = every view."""
    camera_scale: Float32[np.ndarray, "V"] | None = None
    """Factor from each view's local pointmap to the world, ``pts3d = camera_scale * R pts3d_local + t`` (NaN when
    unconnected; ones for ``head``, whose global points are the model's own). None at construction = ones."""
    camera_residuals: Float32[np.ndarray, "V 4"] | None = None
    """Per-view solver statistics, columns :data:`CAMERA_RESIDUAL_COLUMNS`. None at construction = NaN."""

    def __post_init__(self) -> None:
        for name, (dtype, ndim) in _FIELD_SPECS.items():
            object.__setattr__(self, name, coerce_array(name, getattr(self, name), dtype, ndim))
        self._fill_camera_record()
        self._check_shapes()

    def _fill_camera_record(self) -> None:
        source = self.camera_source
        if isinstance(source, (np.ndarray, np.generic)):
            source = str(np.asarray(source).item())
        if source not in CAMERA_SOURCES:
            raise ValueError(f"camera_source must be one of {', '.join(CAMERA_SOURCES)}, got {source!r}")
        object.__setattr__(self, "camera_source", source)
        V = self.images.shape[0]
        defaults = {
            "camera_ok": np.ones(V, dtype=bool),
            "camera_scale": np.ones(V, dtype=np.float32),
            "camera_residuals": np.full((V, len(CAMERA_RESIDUAL_COLUMNS)), np.nan, dtype=np.float32),
        }
        for name, (dtype, ndim) in _CAMERA_SPECS.items():
            value = getattr(self, name)
            object.__setattr__(self, name, coerce_array(name, defaults[name] if value is None else value, dtype, ndim))

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    def _check_shapes(self) -> None:
        V, H, W, _ = self.images.shape
        Q, K = self.class_logits.shape
        expected = {
            "image_names": (V,),
            "images": (V, H, W, 3),
            "pts3d": (V, H, W, 3),
            "pts3d_local": (V, H, W, 3),
            "conf": (V, H, W),
            "mask_logits": (V, Q, H // 2, W // 2),
            "class_logits": (Q, K),
            "class_names": (K,),
            "class_ids": (K,),
            "isthing": (K,),
            "orig_hw": (V, 2),
            "to_orig": (V, 3, 3),
            "K": (V, 3, 3),
            "T_world_cam": (V, 4, 4),
            "panoptic": (V, H, W),
            "camera_ok": (V,),
            "camera_scale": (V,),
            "camera_residuals": (V, len(CAMERA_RESIDUAL_COLUMNS)),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(
                    f"predictions key {name!r} has shape {got}, expected {shape} (V={V}, H={H}, W={W}, Q={Q}, K={K})"
                )
        if V == 0:
            raise ValueError("predictions hold no views")
        kf = self.keyframes
        if kf.size and (kf.min() < 0 or kf.max() >= V or len(np.unique(kf)) != kf.size):
            raise ValueError(
                f"predictions key 'keyframes' must hold distinct view indices in [0, {V}), got {kf.tolist()}"
            )
        if self.panoptic.size and self.panoptic.min() < 0:
            raise ValueError("predictions key 'panoptic' has negative segment ids (0 is void)")
        if (self.orig_hw <= 0).any():
            raise ValueError("predictions key 'orig_hw' must hold positive sizes")

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        """The arrays under their ``predictions.npz`` keys (``camera_source`` as a 0-d string array)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["camera_source"] = np.array(self.camera_source, dtype=str)
        return out

    def camera_records(self) -> list[dict[str, Any]]:
        """Per view, what ``cameras.json`` lists: name, source, status, scale and residuals (NaN -> None)."""

        def number(x: float | np.floating) -> float | None:
            return None if not np.isfinite(x) else float(x)

        records = []
        for v in range(self.num_views):
            entry: dict[str, Any] = {
                "name": str(self.image_names[v]),
                "source": self.camera_source,
                "status": "ok" if self.camera_ok[v] else "unconnected",
                "scale": number(self.camera_scale[v]),
            }
            for column, value in zip(CAMERA_RESIDUAL_COLUMNS, self.camera_residuals[v]):
                entry[column] = number(value) if not column.startswith("num_") or not np.isfinite(value) else int(value)
            records.append(entry)
        return records


_FIELD_SPECS: dict[str, tuple[Any, int]] = {
    "image_names": (np.str_, 1),
    "images": (np.uint8, 4),
    "pts3d": (np.float32, 4),
    "pts3d_local": (np.float32, 4),
    "conf": (np.float32, 3),
    "mask_logits": (np.float32, 4),
    "class_logits": (np.float32, 2),
    "class_names": (np.str_, 1),
    "class_ids": (np.int32, 1),
    "isthing": (np.bool_, 1),
    "orig_hw": (np.int32, 2),
    "to_orig": (np.float32, 3),
    "keyframes": (np.int64, 1),
    "K": (np.float32, 3),
    "T_world_cam": (np.float32, 3),
    "panoptic": (np.int32, 3),
}
PREDICTION_KEYS: tuple[str, ...] = tuple(_FIELD_SPECS)
"""Keys every ``predictions.npz`` has, in the order of CLI.md."""
_CAMERA_SPECS: dict[str, tuple[Any, int]] = {
    "camera_ok": (np.bool_, 1),
    "camera_scale": (np.float32, 1),
    "camera_residuals": (np.float32, 2),
}
CAMERA_KEYS: tuple[str, ...] = ("camera_source", *_CAMERA_SPECS)
"""Keys of the camera record (issue #17); folders written before them load as ``head`` with every view connected."""


def load_predictions(folder: str | Path) -> Predictions:
    """Read ``folder/predictions.npz`` (no pickle) and validate every key's presence, dtype and shape."""
    path = Path(folder) / PREDICTIONS_FILE
    if not path.is_file():
        raise ValueError(f"{path} not found: point to a folder written by `panst3r-splat predict`")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in PREDICTION_KEYS if k not in npz.files]
            if missing:
                raise ValueError(
                    f"{path} lacks key(s) {', '.join(repr(k) for k in missing)}: re-run `panst3r-splat predict`"
                )
            for key in PREDICTION_KEYS + tuple(k for k in CAMERA_KEYS if k in npz.files):
                try:
                    arrays[key] = npz[key]
                except ValueError as err:  # object arrays need pickle, which we refuse
                    raise ValueError(f"{path}: key {key!r} cannot be read without pickle ({err})") from err
            extra = sorted(set(npz.files) - set(PREDICTION_KEYS) - set(CAMERA_KEYS))
    except ValueError:
        raise
    except Exception as err:  # zipfile.BadZipFile, OSError, EOFError for truncated files
        raise ValueError(f"cannot read {path}: {err}; re-run `panst3r-splat predict`") from err
    if extra:
        log.debug("%s: ignoring extra keys %s", path, extra)
    try:
        return Predictions(**arrays)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


# ---------------------------------------------------------------------------------------------- segments.json


def _plain(value: Any) -> Any:
    """NumPy / torch scalars -> Python scalars for JSON."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def normalise_segments(segments: Iterable[Mapping[str, Any]], num_classes: int | None = None) -> list[dict[str, Any]]:
    """Check COCO-panoptic segment entries and give them plain Python types (extra keys are kept).

    Required: ``id`` (int > 0, unique), ``category_id`` (index into the class names), ``isthing`` (bool),
    ``score`` (float), ``query_id`` (int), ``area`` (int >= 0).
    """
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for n, seg in enumerate(segments):
        missing = [k for k in SEGMENT_REQUIRED_KEYS if k not in seg]
        if missing:
            raise ValueError(f"segment #{n} lacks key(s) {', '.join(missing)}")
        entry = {k: _plain(v) for k, v in seg.items()}
        try:
            entry["id"] = int(entry["id"])
            entry["category_id"] = int(entry["category_id"])
            entry["query_id"] = int(entry["query_id"])
            entry["area"] = int(entry["area"])
            entry["score"] = float(entry["score"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"segment #{n} has a non-numeric field: {err}") from err
        if not isinstance(entry["isthing"], bool):
            if entry["isthing"] in (0, 1):
                entry["isthing"] = bool(entry["isthing"])
            else:
                raise ValueError(f"segment #{n}: isthing must be a bool, got {entry['isthing']!r}")
        if entry["id"] <= 0:
            raise ValueError(f"segment #{n}: id must be > 0 (0 is void), got {entry['id']}")
        if entry["id"] in seen:
            raise ValueError(f"segment id {entry['id']} appears twice")
        seen.add(entry["id"])
        if num_classes is not None and not 0 <= entry["category_id"] < num_classes:
            raise ValueError(f"segment {entry['id']}: category_id {entry['category_id']} not in [0, {num_classes})")
        if entry["area"] < 0:
            raise ValueError(f"segment {entry['id']}: negative area")
        out.append(entry)
    return out


def write_segments(path: str | Path, segments: Iterable[Mapping[str, Any]], num_classes: int | None = None) -> None:
    """Write ``segments.json`` (a JSON list of segment dicts)."""
    entries = normalise_segments(segments, num_classes)
    Path(path).write_text(json.dumps(entries, indent=1) + "\n")


def read_segments(path: str | Path, num_classes: int | None = None) -> list[dict[str, Any]]:
    """Read and check ``segments.json``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} not found: point to a folder written by `panst3r-splat predict`")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
        raise ValueError(f"{path} must hold a JSON list of segment objects")
    try:
        return normalise_segments(data, num_classes)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


# -------------------------------------------------------------------------------------------------- points.ply


def write_points_ply(
    path: str | Path,
    points: Float[np.ndarray, "N 3"] | torch.Tensor,
    colors: UInt8[np.ndarray, "N 3"] | Float[np.ndarray, "N 3"] | torch.Tensor,
) -> None:
    """Binary PLY point cloud with ``x y z`` (float32) and ``red green blue`` (uint8; float colours in [0, 1] are
    scaled to 0..255)."""
    pts = as_numpy(points).astype(np.float32).reshape(-1, 3)
    rgb = as_numpy(colors)
    if rgb.dtype.kind == "f":
        rgb = np.clip(np.round(rgb * 255.0), 0, 255)
    rgb = rgb.astype(np.uint8).reshape(-1, 3)
    if len(rgb) != len(pts):
        raise ValueError(f"{len(pts)} points but {len(rgb)} colours")
    vertex = np.empty(
        len(pts), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    for i, axis in enumerate("xyz"):
        vertex[axis] = pts[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = rgb[:, i]
    PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(path))


def read_points_ply(path: str | Path) -> tuple[Float32[np.ndarray, "N 3"], UInt8[np.ndarray, "N 3"]]:
    """Points and colours of a PLY written by :func:`write_points_ply`."""
    v = PlyData.read(str(path))["vertex"]
    pts = np.stack([v["x"], v["y"], v["z"]], axis=-1).astype(np.float32)
    rgb = np.stack([v["red"], v["green"], v["blue"]], axis=-1).astype(np.uint8)
    return pts, rgb


# ------------------------------------------------------------------------------------------------ label PNGs


def map_labels_to_original(
    labels: Shaped[np.ndarray, "H W"], to_orig: Float32[np.ndarray, "3 3"], orig_hw: tuple[int, int]
) -> Shaped[np.ndarray, "Ho Wo"]:
    """Nearest-neighbour map of a model-resolution label map to the original image; outside the crop is 0 (void).

    Every original pixel centre ``(x, y)`` goes through ``to_orig^-1`` to model coordinates, which are rounded to
    the nearest model pixel; pixels whose nearest model pixel lies outside the model image (the cropped margins)
    are void.
    """
    height, width = labels.shape
    orig_h, orig_w = int(orig_hw[0]), int(orig_hw[1])
    inv = np.linalg.inv(np.asarray(to_orig, dtype=np.float64))
    if not np.allclose(inv[2], [0.0, 0.0, 1.0]) or abs(inv[0, 1]) > 1e-12 or abs(inv[1, 0]) > 1e-12:
        raise ValueError("to_orig must be an axis-aligned scale + translation")
    # The map is separable: compute the source column of every original column and the row of every original row.
    u = np.floor(inv[0, 0] * np.arange(orig_w) + inv[0, 2] + 0.5).astype(np.int64)
    v = np.floor(inv[1, 1] * np.arange(orig_h) + inv[1, 2] + 0.5).astype(np.int64)
    valid_u = (u >= 0) & (u < width)
    valid_v = (v >= 0) & (v < height)
    out = labels[np.clip(v, 0, height - 1)[:, None], np.clip(u, 0, width - 1)[None, :]]
    out = np.where(valid_v[:, None] & valid_u[None, :], out, np.zeros((), dtype=labels.dtype))
    return out.astype(labels.dtype)


def _map_labels_to_original(labels: np.ndarray, to_orig: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
    """Reference twin of :func:`map_labels_to_original`: pixel by pixel with the full 3x3 inverse."""
    height, width = labels.shape
    inv = np.linalg.inv(np.asarray(to_orig, dtype=np.float64))
    out = np.zeros(tuple(int(x) for x in orig_hw), dtype=labels.dtype)
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            mu, mv, mw = inv @ np.array([x, y, 1.0])
            col, row = int(np.floor(mu / mw + 0.5)), int(np.floor(mv / mw + 0.5))
            if 0 <= col < width and 0 <= row < height:
                out[y, x] = labels[row, col]
    return out


def panoptic_to_labels(
    panoptic: Int32[np.ndarray, "V H W"],
    segments: Sequence[Mapping[str, Any]],
    class_ids: Int32[np.ndarray, "K"],
) -> tuple[UInt8[np.ndarray, "V H W"], UInt16[np.ndarray, "V H W"]]:
    """Semantic class id (``class_ids[category_id]``, 0 = void) and surrogate instance id (the segment id, uint16)
    of every pixel, the Panoptic Lifting evaluation format."""
    if panoptic.size and int(panoptic.max()) > np.iinfo(np.uint16).max:
        raise ValueError(f"segment ids above {np.iinfo(np.uint16).max} do not fit pred_surrogateid (uint16)")
    class_ids = np.asarray(class_ids)
    if class_ids.size and (class_ids.min() < 1 or class_ids.max() > 255):
        raise ValueError("class_ids must lie in 1..255 to be written as uint8 pred_semantics (0 is void)")
    lut_size = max(int(panoptic.max(initial=0)), max((int(s["id"]) for s in segments), default=0)) + 1
    lut = np.zeros(lut_size, dtype=np.uint8)
    known = np.zeros(lut_size, dtype=bool)
    known[0] = True
    for seg in segments:
        lut[int(seg["id"])] = class_ids[int(seg["category_id"])]
        known[int(seg["id"])] = True
    present = np.unique(panoptic)
    unknown = present[~known[present]]
    if unknown.size:
        raise ValueError(f"panoptic map holds segment ids {unknown[:10].tolist()} missing from the segment list")
    return lut[panoptic], panoptic.astype(np.uint16)


def frame_stem(name: str) -> str:
    """File stem of an input frame name (only an image extension is stripped, so video frame names stay whole)."""
    path = Path(name)
    return path.stem if path.suffix.lower() in IMAGE_EXTENSIONS else path.name


def write_label_pngs(folder: str | Path, pred: Predictions, segments: Sequence[Mapping[str, Any]]) -> None:
    """``folder/pred_semantics/<frame>.png`` (uint8) and ``folder/pred_surrogateid/<frame>.png`` (uint16), at the
    original resolution of every input frame."""
    folder = Path(folder)
    stems = [frame_stem(str(n)) for n in pred.image_names]
    if len(set(stems)) != len(stems):
        dupes = sorted({s for s in stems if stems.count(s) > 1})
        raise ValueError(f"input frames share the name(s) {dupes[:5]}: rename them so label PNGs do not collide")
    semantics, surrogate = panoptic_to_labels(pred.panoptic, segments, pred.class_ids)
    (folder / SEMANTICS_DIR).mkdir(parents=True, exist_ok=True)
    (folder / SURROGATE_DIR).mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        hw = (int(pred.orig_hw[i, 0]), int(pred.orig_hw[i, 1]))
        sem = map_labels_to_original(semantics[i], pred.to_orig[i], hw)
        sid = map_labels_to_original(surrogate[i], pred.to_orig[i], hw)
        PIL.Image.fromarray(sem).save(folder / SEMANTICS_DIR / f"{stem}.png")
        PIL.Image.fromarray(sid).save(folder / SURROGATE_DIR / f"{stem}.png")


def read_label_png(path: str | Path) -> np.ndarray:
    """A label PNG as written here: uint8 semantics or uint16 surrogate ids."""
    with PIL.Image.open(path) as img:
        arr = np.array(img)
    return arr.astype(np.uint16) if arr.dtype.kind in "iu" and arr.dtype.itemsize > 1 else arr


# ------------------------------------------------------------------------------------------------ the folder


def _fill_segments(pred: Predictions, segments: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Segment entries with ``area`` filled from the panoptic map where absent, plus class name and id."""
    ids, counts = np.unique(pred.panoptic, return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist()))
    out = []
    for seg in segments:
        entry = dict(seg)
        entry.setdefault("area", area.get(int(entry["id"]), 0))
        cat = int(entry["category_id"])
        if 0 <= cat < len(pred.class_names):
            entry.setdefault("class_name", str(pred.class_names[cat]))
            entry.setdefault("class_id", int(pred.class_ids[cat]))
        out.append(entry)
    return normalise_segments(out, num_classes=len(pred.class_names))


def _replaceable(folder: Path) -> bool:
    """Only an empty folder or an earlier predictions folder may be replaced (never a user's unrelated folder)."""
    return not any(folder.iterdir()) or (folder / PREDICTIONS_FILE).is_file()


def save_predictions(
    pred: Predictions,
    folder: str | Path,
    segments: Sequence[Mapping[str, Any]],
    *,
    point_conf_threshold: float = POINT_CONF_THRESHOLD,
    photos: Sequence[PhotoRecord] | None = None,
) -> Path:
    """Write the whole predictions folder atomically and return its path.

    ``photos``: where the input photos are (``photos.json``, :mod:`panst3r_splat.core.photos`); None writes none.

    Everything is written to a hidden sibling folder which then replaces ``folder`` by renames; an existing
    ``folder`` must be empty or an earlier predictions folder. ``segments`` may omit ``area`` (counted from
    ``pred.panoptic``); class names and dataset ids are added to each entry.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or not _replaceable(folder)):
        raise ValueError(
            f"{folder} exists and is not a predictions folder: choose a new --out folder or empty this one"
        )
    entries = _fill_segments(pred, segments)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = folder.parent / f".{folder.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        np.savez(tmp / PREDICTIONS_FILE, **pred.to_npz_dict())
        write_segments(tmp / SEGMENTS_FILE, entries, num_classes=len(pred.class_names))
        ok = pred.camera_ok  # views without a camera have NaN points: never in the cloud
        points, colors = fused_point_cloud(
            torch.from_numpy(pred.pts3d[ok]), torch.from_numpy(pred.images[ok]), torch.from_numpy(pred.conf[ok]),
            point_conf_threshold,
        )
        write_points_ply(tmp / POINTS_FILE, points, colors)
        cameras = {"source": pred.camera_source, "views": pred.camera_records()}
        (tmp / CAMERAS_FILE).write_text(json.dumps(cameras, indent=1) + "\n")
        write_label_pngs(tmp, pred, entries)
        if photos is not None:
            write_photos(tmp, photos)
        swap_into_place(tmp, folder, tag)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
