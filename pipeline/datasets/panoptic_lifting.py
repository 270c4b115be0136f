"""Reader and writer of the Panoptic Lifting scene layout (docs/formats.md, "Panoptic Lifting scene layout").

    color/<frame>.jpg|png            RGB images
    depth/<frame>.png                uint16 z-depth in millimetres (0 = no depth)
    pose/<frame>.txt                 4x4 camera-to-world, OpenCV axes (x right, y down, z forward)
    intrinsic/intrinsic_color.txt    4x4, K top-left; integer pixel coordinates are pixel centres
    rs_semantics/<frame>.png         uint8 class id (0 = void)
    rs_instance/<frame>.png          uint16 instance id (0 = stuff or void), the same object has one id in every view
    splits.json                      {"train": [...], "test": [...]}, frame names without extension

The reader loads only the parts a caller asks for and turns every problem a file can have into one-line
`UserError`s that name the file and the fix. The writer is deterministic: the same arrays give byte-identical files.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping, Optional, get_args

import numpy as np
from jaxtyping import Float32, Float64, Int64, UInt8, UInt16
from PIL import Image, UnidentifiedImageError

from panst3r_splat.core import class_table
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.splat.scene_io import SegmentInfo, make_segment

log = logging.getLogger(__name__)

Part = Literal["color", "depth", "pose", "intrinsics", "semantics", "instances"]
ALL_PARTS: frozenset[str] = frozenset(get_args(Part))
FOLDERS: dict[str, str] = {"color": "color", "depth": "depth", "pose": "pose", "semantics": "rs_semantics",
                           "instances": "rs_instance"}
"""Sub-folder of each per-frame part."""
INTRINSIC_FILE = "intrinsic/intrinsic_color.txt"
SPLITS_FILE = "splits.json"
DEPTH_UNITS_PER_METRE = 1000.0
"""depth/ PNGs store millimetres."""
COLOR_SUFFIXES = (".jpg", ".jpeg", ".png")
_LAYOUT = "color/, depth/, pose/, intrinsic/intrinsic_color.txt, rs_semantics/, rs_instance/, splits.json"


@dataclass(frozen=True)
class PanopticLiftingScene:
    """V frames of a scene; parts that were not loaded (or not present when writing) are None."""

    frame_names: tuple[str, ...]
    """Frame names without extension, in the order of the arrays."""
    splits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Frame names per split (usually 'train' and 'test')."""
    images: Optional[UInt8[np.ndarray, "V H W 3"]] = None
    depth: Optional[Float32[np.ndarray, "V H W"]] = None
    """z-depth in metres, 0 where unknown."""
    K: Optional[Float64[np.ndarray, "3 3"]] = None
    """Intrinsics at the colour resolution, pixel-centre convention."""
    T_world_cam: Optional[Float64[np.ndarray, "V 4 4"]] = None
    """Camera-to-world, OpenCV axes."""
    semantics: Optional[UInt8[np.ndarray, "V H W"]] = None
    """Class id per pixel (0 void)."""
    instances: Optional[UInt16[np.ndarray, "V H W"]] = None
    """Instance id per pixel (0 for stuff and void), consistent across views."""
    root: Optional[Path] = None
    """Folder the scene was read from."""
    color_paths: tuple[Path, ...] = ()
    """Colour file of every frame (reader only)."""

    @property
    def num_views(self) -> int:
        return len(self.frame_names)

    def split_indices(self, split: str) -> np.ndarray:
        """Indices into the arrays of the frames of `split`."""
        if split not in self.splits:
            raise UserError(f"split {split!r} is not one of this scene's splits ({', '.join(self.splits) or 'none'})")
        index = {name: i for i, name in enumerate(self.frame_names)}
        missing = [n for n in self.splits[split] if n not in index]
        if missing:
            raise UserError(f"split {split!r} lists frames that were not loaded: {_names(missing, len(self.splits[split]))}")
        return np.array([index[n] for n in self.splits[split]], dtype=np.int64)


def _names(names: list[str], total: int) -> str:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"{shown} ({len(names)} of {total})"


def _natural_key(name: str) -> tuple:
    # Numeric frame names sort as numbers ("2" before "10"), as the reference loader does.
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", name) if tok)


# --- reading -------------------------------------------------------------------------------------------------------

def read_splits(root: Path) -> dict[str, tuple[str, ...]]:
    """The splits of a scene folder ({} when it has no splits.json)."""
    path = Path(root) / SPLITS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot parse {path} ({err}); it must be JSON like {{\"train\": [...], \"test\": [...]}}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise UserError(f"{path} must map split names to lists of frame names, like {{\"train\": [...], \"test\": [...]}}")
    return {str(k): tuple(str(x) for x in v) for k, v in data.items()}


def list_frames(root: Path) -> dict[str, Path]:
    """Frame name -> colour file of every image in ``root/color``, in natural order."""
    folder = Path(root) / FOLDERS["color"]
    if not folder.is_dir():
        raise UserError(f"{root} has no color/ folder, so it is not a Panoptic Lifting scene (expected {_LAYOUT})")
    frames: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in COLOR_SUFFIXES:
            continue
        if path.stem in frames:
            raise UserError(f"{folder} has two images for frame {path.stem!r} ({frames[path.stem].name}, {path.name}); "
                            "keep one")
        frames[path.stem] = path
    if not frames:
        raise UserError(f"{folder} holds no .jpg or .png images")
    return {name: frames[name] for name in sorted(frames, key=_natural_key)}


def _open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise UserError(f"cannot read {path} as an image ({err}); re-export it or drop the frame from splits.json") from None
    return image


def _read_color(path: Path) -> np.ndarray:
    image = _open_image(path)
    if image.mode not in ("RGB", "RGBA", "L", "P"):
        raise UserError(f"{path} is a {image.mode} image; colour frames must be 8-bit RGB")
    return np.asarray(image.convert("RGB"))


def _read_label(path: Path, sixteen_bit: bool) -> np.ndarray:
    image = _open_image(path)
    allowed = ("L", "P", "I;16", "I") if sixteen_bit else ("L", "P")
    if image.mode not in allowed:
        kind = "an 8- or 16-bit" if sixteen_bit else "an 8-bit"
        raise UserError(f"{path} is a {image.mode} image; it must be {kind} single-channel label image")
    array = np.asarray(image)
    if sixteen_bit:
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise UserError(f"{path} holds ids outside 0..65535; instance ids must fit in uint16")
        return array.astype(np.uint16)
    return array.astype(np.uint8)


def _read_depth(path: Path, hw: tuple[int, int]) -> np.ndarray:
    image = _open_image(path)
    if image.mode not in ("I;16", "I"):
        raise UserError(f"{path} is a {image.mode} image; depth must be a 16-bit PNG in millimetres")
    depth = np.asarray(image).astype(np.float32) / DEPTH_UNITS_PER_METRE
    if depth.shape != hw:
        h, w = depth.shape
        if abs(w / h - hw[1] / hw[0]) > 0.01:
            raise UserError(f"{path} is {w}x{h} but the colour frames are {hw[1]}x{hw[0]} with another aspect ratio; "
                            "depth must cover the colour image")
        # Lower-resolution depth of the same field of view (as in ScanNet exports): nearest-neighbour upsampling,
        # sampling at pixel centres, keeps depth values exact.
        rows = np.minimum(((np.arange(hw[0]) + 0.5) * h / hw[0]).astype(int), h - 1)
        cols = np.minimum(((np.arange(hw[1]) + 0.5) * w / hw[1]).astype(int), w - 1)
        depth = depth[rows][:, cols]
        log.debug("upsampled %s from %dx%d to %dx%d (nearest)", path, w, h, hw[1], hw[0])
    return depth


def _read_matrix(path: Path, what: str) -> np.ndarray:
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        matrix = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"cannot read {path} as a matrix of numbers ({err}); it must hold {what}") from None
    return matrix


def _read_pose(path: Path) -> np.ndarray:
    matrix = _read_matrix(path, "a 4x4 camera-to-world matrix")
    if matrix.shape != (4, 4):
        raise UserError(f"{path} must hold a 4x4 camera-to-world matrix (4 lines of 4 numbers), got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise UserError(f"{path} holds a non-finite pose (a tracking failure?); drop frame {path.stem} from splits.json")
    return matrix


def read_pose(path: Path) -> np.ndarray:
    """A 4x4 camera-to-world matrix (OpenCV axes) from a ``pose/<frame>.txt`` file."""
    return _read_pose(path)


def read_intrinsics(root: Path) -> np.ndarray:
    """K (3, 3) from ``intrinsic/intrinsic_color.txt`` (a 4x4 or 3x3 matrix)."""
    path = Path(root) / INTRINSIC_FILE
    if not path.exists():
        raise UserError(f"{path} is missing; it must hold the 4x4 colour intrinsics (K top-left)")
    matrix = _read_matrix(path, "the 4x4 colour intrinsics")
    if matrix.shape not in ((4, 4), (3, 3)):
        raise UserError(f"{path} must hold a 4x4 (or 3x3) intrinsics matrix, got shape {matrix.shape}")
    K = matrix[:3, :3].copy()
    if not (np.all(np.isfinite(K)) and K[0, 0] > 0 and K[1, 1] > 0 and np.allclose(K[2], [0, 0, 1])):
        raise UserError(f"{path} is not a pinhole intrinsics matrix (fx, fy > 0, last row 0 0 1): {K.tolist()}")
    return K


def _frame_files(root: Path, part: str, names: tuple[str, ...], suffix: str) -> list[Path]:
    folder = root / FOLDERS[part]
    if not folder.is_dir():
        raise UserError(f"{folder} is missing; a Panoptic Lifting scene needs it for {part} (expected {_LAYOUT})")
    paths = [folder / f"{name}{suffix}" for name in names]
    missing = [name for name, path in zip(names, paths) if not path.exists()]
    if missing:
        raise UserError(f"{folder} has no {suffix} file for frames {_names(missing, len(names))}")
    return paths


def _check_size(path: Path, array: np.ndarray, hw: tuple[int, int]) -> None:
    if array.shape[:2] != hw:
        raise UserError(f"{path} is {array.shape[1]}x{array.shape[0]} but the colour frames are {hw[1]}x{hw[0]}; "
                        "every image of a scene must have the colour frames' size")


def read_panoptic_lifting(root: Path, *, split: Optional[str] = None,
                          parts: Iterable[str] = ALL_PARTS) -> PanopticLiftingScene:
    """Read the frames of `split` (all frames of color/ when None) and the requested `parts` of a scene folder."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"scene folder {root} does not exist; pass a Panoptic Lifting scene folder ({_LAYOUT})")
    wanted = frozenset(parts)
    unknown = wanted - ALL_PARTS
    if unknown:
        raise ValueError(f"unknown scene parts {sorted(unknown)}; choose from {sorted(ALL_PARTS)}")
    frames = list_frames(root)
    splits = read_splits(root)
    if split is None:
        names = tuple(frames)
    else:
        if not splits:
            raise UserError(f"{root / SPLITS_FILE} is missing; it must list the frames of split {split!r} "
                            "as {\"train\": [...], \"test\": [...]}")
        if split not in splits:
            raise UserError(f"split {split!r} is not in {root / SPLITS_FILE} (it has: {', '.join(splits) or 'none'})")
        names = splits[split]
        missing = [n for n in names if n not in frames]
        if missing:
            raise UserError(f"{root / 'color'} has no image for frames {_names(missing, len(names))} of split {split!r}")
    if not names:
        raise UserError(f"split {split!r} of {root} lists no frames")
    color_paths = tuple(frames[n] for n in names)
    first = _read_color(color_paths[0])
    hw = first.shape[:2]
    images = None
    if "color" in wanted:
        stack = [first]
        for path in color_paths[1:]:
            image = _read_color(path)
            if image.shape[:2] != hw:
                raise UserError(f"{path} is {image.shape[1]}x{image.shape[0]} but {color_paths[0].name} is "
                                f"{hw[1]}x{hw[0]}; all colour frames of a scene must have one size")
            stack.append(image)
        images = np.stack(stack)
    labels: dict[str, np.ndarray] = {}
    for part, sixteen in (("semantics", False), ("instances", True)):
        if part in wanted:
            arrays = []
            for path in _frame_files(root, part, names, ".png"):
                arrays.append(_read_label(path, sixteen))
                _check_size(path, arrays[-1], hw)
            labels[part] = np.stack(arrays)
    depth = None
    if "depth" in wanted:
        depth = np.stack([_read_depth(p, hw) for p in _frame_files(root, "depth", names, ".png")])
    poses = None
    if "pose" in wanted:
        poses = np.stack([_read_pose(p) for p in _frame_files(root, "pose", names, ".txt")])
    K = read_intrinsics(root) if "intrinsics" in wanted else None
    return PanopticLiftingScene(frame_names=names, splits=splits, images=images, depth=depth, K=K, T_world_cam=poses,
                                semantics=labels.get("semantics"), instances=labels.get("instances"), root=root,
                                color_paths=color_paths)


# --- writing -------------------------------------------------------------------------------------------------------

def _matrix_text(matrix: np.ndarray) -> str:
    return "".join(" ".join(f"{v:.9f}" for v in row) + "\n" for row in matrix)


def save_png(path: Path, array: np.ndarray) -> None:
    """Write uint8 (H, W), (H, W, 3) or uint16 (H, W) as PNG. Pillow's encoder with fixed settings and no metadata
    (no timestamp) writes the same bytes for the same array."""
    if array.dtype not in (np.uint8, np.uint16) or (array.dtype == np.uint16 and array.ndim != 2):
        raise ValueError(f"save_png takes uint8 (H, W[, 3]) or uint16 (H, W) arrays, got {array.dtype} {array.shape}")
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=6)


def _validate_for_writing(scene: PanopticLiftingScene) -> None:
    n = scene.num_views
    if scene.images is None or scene.images.shape[0] != n or scene.images.ndim != 4 or scene.images.shape[-1] != 3:
        raise ValueError(f"a scene to write needs images (V, H, W, 3) with V = {n} frame names")
    if len(set(scene.frame_names)) != n or any(not name or "/" in name for name in scene.frame_names):
        raise ValueError(f"frame names must be unique plain file stems, got {scene.frame_names}")
    hw = scene.images.shape[1:3]
    for name in ("depth", "semantics", "instances"):
        array = getattr(scene, name)
        if array is not None and array.shape != (n, *hw):
            raise ValueError(f"{name} has shape {array.shape}, expected {(n, *hw)}")
    if scene.T_world_cam is not None and scene.T_world_cam.shape != (n, 4, 4):
        raise ValueError(f"T_world_cam has shape {scene.T_world_cam.shape}, expected {(n, 4, 4)}")
    known = set(scene.frame_names)
    for split, names in scene.splits.items():
        if not set(names) <= known:
            raise ValueError(f"split {split!r} names frames that are not in the scene: {sorted(set(names) - known)[:5]}")


def write_panoptic_lifting(scene: PanopticLiftingScene, root: Path, *, overwrite: bool = False) -> None:
    """Write the scene's present parts (colour as PNG) under `root` in the Panoptic Lifting layout.

    A folder that already holds a scene is refused unless `overwrite`, which first removes only the layout's own
    sub-folders and files (so no stale frames of an earlier, longer scene survive).
    """
    _validate_for_writing(scene)
    root = Path(root)
    owned = [root / f for f in FOLDERS.values()] + [root / "intrinsic", root / SPLITS_FILE]
    if any(p.exists() for p in owned):
        if not overwrite:
            raise UserError(f"{root} already holds a scene; choose another output folder or pass --overwrite")
        for p in owned:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    present = {"color": scene.images, "depth": scene.depth, "pose": scene.T_world_cam, "semantics": scene.semantics,
               "instances": scene.instances}
    for part, array in present.items():
        if array is not None:
            (root / FOLDERS[part]).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(scene.frame_names):
        save_png(root / FOLDERS["color"] / f"{name}.png", scene.images[i])
        if scene.depth is not None:
            mm = np.clip(np.round(scene.depth[i].astype(np.float64) * DEPTH_UNITS_PER_METRE), 0, 65535)
            save_png(root / FOLDERS["depth"] / f"{name}.png", mm.astype(np.uint16))
        if scene.T_world_cam is not None:
            (root / FOLDERS["pose"] / f"{name}.txt").write_text(_matrix_text(scene.T_world_cam[i]))
        if scene.semantics is not None:
            save_png(root / FOLDERS["semantics"] / f"{name}.png", scene.semantics[i].astype(np.uint8))
        if scene.instances is not None:
            save_png(root / FOLDERS["instances"] / f"{name}.png", scene.instances[i].astype(np.uint16))
    if scene.K is not None:
        (root / "intrinsic").mkdir(parents=True, exist_ok=True)
        K4 = np.eye(4)
        K4[:3, :3] = scene.K
        (root / INTRINSIC_FILE).write_text(_matrix_text(K4))
    if scene.splits:
        splits = {k: list(v) for k, v in scene.splits.items()}
        (root / SPLITS_FILE).write_text(json.dumps(splits, indent=1) + "\n")


def gt_segments(semantics: UInt8[np.ndarray, "V H W"], instances: UInt16[np.ndarray, "V H W"]
                ) -> tuple[Int64[np.ndarray, "V H W"], tuple[SegmentInfo, ...]]:
    """Ground-truth panoptic segments: one per thing instance, one per stuff class.

    A pixel of a thing class (class table) with an instance id > 0 belongs to that instance: segment id = the
    dataset's instance id, so exported `instance_id`s are the dataset's. Every other labelled pixel (stuff classes,
    and thing-class pixels without an instance) belongs to its class's segment, id `max instance id + class id`
    (isthing False: one region per class). Class 0 is void (segment 0). An instance seen with several classes
    takes its majority class.
    """
    sem = semantics.astype(np.int64)
    inst = instances.astype(np.int64)
    unknown = sorted(set(np.unique(sem).tolist()) - set(class_table.CLASS_BY_ID) - {class_table.VOID_ID})
    if unknown:
        raise UserError(f"ground-truth classes {unknown[:10]} are not in the class table (ids 1..21); "
                        "the dataset must use the 21 reduced ScanNet classes")
    is_thing = np.zeros(class_table.NUM_CLASSES + 1, dtype=bool)
    is_thing[sorted(class_table.THING_IDS)] = True
    thing_px = is_thing[sem] & (inst > 0)
    offset = int(inst[thing_px].max(initial=0))
    if offset + class_table.NUM_CLASSES > np.iinfo(np.uint16).max:
        raise UserError(f"instance ids reach {offset}: too large to add one stuff segment per class within uint16")
    seg = np.where(thing_px, inst, np.where(sem > 0, offset + sem, 0))
    legend = []
    for sid in np.unique(seg[thing_px]).tolist():
        classes, counts = np.unique(sem[thing_px & (seg == sid)], return_counts=True)
        cls = class_table.CLASS_BY_ID[int(classes[np.argmax(counts)])]
        legend.append(make_segment(sid, cls.id - 1, cls.id, cls.name, True))
    for cid in np.unique(sem[~thing_px & (sem > 0)]).tolist():
        cls = class_table.CLASS_BY_ID[int(cid)]
        legend.append(make_segment(offset + cls.id, cls.id - 1, cls.id, cls.name, False))
    return seg, tuple(legend)
