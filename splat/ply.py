"""Standard 3DGS PLY files with label properties.

The vertex properties are those of the reference 3DGS implementation, which other splat viewers read:
`x y z nx ny nz f_dc_0..2 f_rest_* opacity scale_0..2 rot_0..3`, stored pre-activation (opacity as a logit, scales
as logs, rotation as a w-first quaternion) and with `f_rest_*` channel-major (all red coefficients, then green, then
blue: graphdeco-inria/gaussian-splatting `GaussianModel.save_ply` transposes the SH tensor before flattening).
Appended properties, ignored by viewers that do not know them: `semantic_id` (dataset class id, 0 = void),
`instance_id` (0 for stuff and void, as `rs_instance`), `segment_id` (panoptic segment of the scene legend),
`label_conf`, and `reg_0..2` (the regularisation colour set, so a scene read back is complete).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from jaxtyping import Int32
from plyfile import PlyData, PlyElement

from panst3r_splat.core.atomic_io import atomic_output
from panst3r_splat.splat.gaussians import GaussianScene, num_sh_bases, sh_degree_from_bases

logger = logging.getLogger(__name__)

STANDARD_SCALAR_PROPS = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")
TAIL_PROPS = ("opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
LABEL_PROPS = ("semantic_id", "instance_id", "segment_id", "label_conf")
REG_PROPS = ("reg_0", "reg_1", "reg_2")
_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class PlyGaussians:
    """What a labelled 3DGS PLY holds."""

    scene: GaussianScene
    semantic_ids: Int32[np.ndarray, "N"]
    """Dataset class id per Gaussian (0 = void)."""
    instance_ids: Int32[np.ndarray, "N"]
    """Instance id per Gaussian (0 = stuff or void)."""


def f_rest_names(sh_degree: int) -> list[str]:
    """`f_rest_0 ..` names for a degree: 3 x ((degree + 1)^2 - 1) of them."""
    return [f"f_rest_{i}" for i in range(3 * (num_sh_bases(sh_degree) - 1))]


def property_names(sh_degree: int) -> list[str]:
    """All vertex property names `write_ply` writes, in file order."""
    return [*STANDARD_SCALAR_PROPS, *f_rest_names(sh_degree), *TAIL_PROPS, *LABEL_PROPS, *REG_PROPS]


def _label_array(values: np.ndarray | torch.Tensor | None, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=np.int32)
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have one entry per Gaussian ({n}), got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > _INT32_MAX):
        raise ValueError(f"{name} must be in [0, {_INT32_MAX}] to fit a PLY int property")
    return arr.astype(np.int32)


def _vertex_array(scene: GaussianScene, semantic_ids: np.ndarray, instance_ids: np.ndarray) -> np.ndarray:
    n = len(scene)
    names = property_names(scene.sh_degree)
    int_props = {"semantic_id", "instance_id", "segment_id"}
    vertex = np.empty(n, dtype=[(name, "i4" if name in int_props else "f4") for name in names])
    t = {k: v.detach().cpu().to(torch.float32).numpy() for k, v in scene.tensors().items() if k != "segment_ids"}
    for i, axis in enumerate("xyz"):
        vertex[axis] = t["means"][:, i]
        vertex["n" + axis] = 0.0
    for c in range(3):
        vertex[f"f_dc_{c}"] = t["sh"][:, 0, c]
    rest = t["sh"][:, 1:, :].transpose(0, 2, 1).reshape(n, -1)  # [N, 3 * (S - 1)], channel-major
    for i in range(rest.shape[1]):
        vertex[f"f_rest_{i}"] = rest[:, i]
    vertex["opacity"] = t["opacity_logits"]
    for i in range(3):
        vertex[f"scale_{i}"] = t["log_scales"][:, i]
        vertex[f"reg_{i}"] = t["reg_colors"][:, i]
    for i in range(4):
        vertex[f"rot_{i}"] = t["quats"][:, i]
    vertex["semantic_id"] = semantic_ids
    vertex["instance_id"] = instance_ids
    vertex["segment_id"] = _label_array(scene.segment_ids, n, "segment_ids")
    vertex["label_conf"] = t["label_conf"]
    return vertex


def write_ply(path: str | Path, scene: GaussianScene, *, semantic_ids: np.ndarray | torch.Tensor | None = None,
              instance_ids: np.ndarray | torch.Tensor | None = None) -> Path:
    """Write a binary little-endian 3DGS PLY (atomically) with the label properties; returns the path."""
    n = len(scene)
    vertex = _vertex_array(scene, _label_array(semantic_ids, n, "semantic_ids"),
                           _label_array(instance_ids, n, "instance_ids"))
    path = Path(path)
    with atomic_output(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<").write(str(tmp))
    return path


def _columns(vertex: np.ndarray, names: list[str] | tuple[str, ...]) -> np.ndarray:
    return np.stack([np.asarray(vertex[name], dtype=np.float32) for name in names], axis=-1)


def read_ply(path: str | Path) -> PlyGaussians:
    """Read a 3DGS PLY (ours or another tool's); label properties that are absent read as 0, `reg_*` as 0.5 grey."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} not found: point to the gaussians.ply of a fitted scene")
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"].data
    except (OSError, KeyError, ValueError, IndexError) as err:
        raise ValueError(f"cannot read {path} as a PLY with a vertex element: {err}") from err
    present = set(vertex.dtype.names or ())
    required = [*STANDARD_SCALAR_PROPS[:3], *STANDARD_SCALAR_PROPS[6:], *TAIL_PROPS]
    missing = [name for name in required if name not in present]
    if missing:
        raise ValueError(f"{path} is not a 3DGS PLY: missing vertex properties {', '.join(missing)}")
    n_rest = sum(1 for name in present if re.fullmatch(r"f_rest_\d+", name))
    if n_rest % 3:
        raise ValueError(f"{path}: {n_rest} f_rest_* properties is not a multiple of 3")
    try:
        degree = sh_degree_from_bases(n_rest // 3 + 1)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    n = len(vertex)
    sh = np.empty((n, num_sh_bases(degree), 3), dtype=np.float32)
    sh[:, 0] = _columns(vertex, ["f_dc_0", "f_dc_1", "f_dc_2"])
    if n_rest:
        sh[:, 1:] = _columns(vertex, f_rest_names(degree)).reshape(n, 3, -1).transpose(0, 2, 1)

    def optional_int(name: str) -> np.ndarray:
        return np.asarray(vertex[name], dtype=np.int64) if name in present else np.zeros(n, dtype=np.int64)

    reg = _columns(vertex, REG_PROPS) if all(p in present for p in REG_PROPS) else np.full((n, 3), 0.5, np.float32)
    conf = np.asarray(vertex["label_conf"], np.float32) if "label_conf" in present else np.zeros(n, np.float32)
    scene = GaussianScene(
        means=torch.from_numpy(_columns(vertex, ["x", "y", "z"])),
        quats=torch.from_numpy(_columns(vertex, ["rot_0", "rot_1", "rot_2", "rot_3"])),
        log_scales=torch.from_numpy(_columns(vertex, ["scale_0", "scale_1", "scale_2"])),
        opacity_logits=torch.from_numpy(np.asarray(vertex["opacity"], np.float32).copy()),
        sh=torch.from_numpy(sh), reg_colors=torch.from_numpy(reg), segment_ids=torch.from_numpy(optional_int("segment_id")),
        label_conf=torch.from_numpy(conf.copy()),
    )
    return PlyGaussians(scene=scene, semantic_ids=optional_int("semantic_id").astype(np.int32),
                        instance_ids=optional_int("instance_id").astype(np.int32))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "instance"


def write_instance_plys(folder: str | Path, scene: GaussianScene, semantic_ids: np.ndarray,
                        instance_ids: np.ndarray, *, class_names: Mapping[int, str] | None = None) -> list[Path]:
    """One PLY per instance (instance id > 0), named `instance_<id>[_<class name>].ply`; returns the paths.

    `class_names` maps dataset class ids to names for the file names.
    """
    n = len(scene)
    semantic_ids = _label_array(semantic_ids, n, "semantic_ids")
    instance_ids = _label_array(instance_ids, n, "instance_ids")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for inst in np.unique(instance_ids[instance_ids > 0]).tolist():
        keep = instance_ids == inst
        classes, counts = np.unique(semantic_ids[keep], return_counts=True)
        cls = int(classes[np.argmax(counts)])
        suffix = f"_{_safe_name(class_names[cls])}" if class_names and cls in class_names else ""
        path = folder / f"instance_{inst:04d}{suffix}.ply"
        write_ply(path, scene.select(torch.from_numpy(keep)), semantic_ids=semantic_ids[keep],
                  instance_ids=instance_ids[keep])
        paths.append(path)
    logger.info("wrote %d instance PLY files to %s", len(paths), folder)
    return paths
