"""Labelled 3D Gaussians and the cameras that see them.

`GaussianScene` holds every per-Gaussian tensor of a scene in raw (optimised) form: log-scales, opacity logits and
spherical-harmonic colour coefficients exactly as 3DGS stores them, plus the second colour set of PanSt3R's
instance-colour regularisation (docs/method.md section 5) and the lifted labels (`segment_ids`, `label_conf`).
Keeping the labels next to the geometry means any operation that adds, splits or drops Gaussians (densification,
pruning, `select`) keeps them aligned: `to_params` puts all of them in one `torch.nn.ParameterDict`, the container
gsplat's `DefaultStrategy` edits row by row.

`Cameras` is the camera set crossing the stage boundaries: OpenCV axes, `T_world_cam` camera-to-world, `K` with the
pixel-centre convention of CLI.md (integer pixel coordinates are pixel centres).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Mapping, Union

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8
from torch import Tensor

from panst3r_splat.core.transforms import rigid_inverse

logger = logging.getLogger(__name__)

SH_C0 = 0.28209479177387814
"""Zeroth spherical-harmonic basis value, 1 / (2 sqrt(pi)); 3DGS stores DC colours as (rgb - 0.5) / SH_C0."""

MAX_SH_DEGREE = 3

# Keys of the ParameterDict built by `GaussianScene.to_params`. The first four are the names gsplat's strategies
# require; "sh0"/"shN" follow gsplat's simple_trainer so its learning-rate conventions carry over.
KEY_MEANS = "means"
KEY_QUATS = "quats"
KEY_SCALES = "scales"  # log-scales, as gsplat's strategies expect
KEY_OPACITIES = "opacities"  # logits
KEY_SH0 = "sh0"
KEY_SHN = "shN"
KEY_REG_COLORS = "reg_colors"
KEY_SEGMENT_IDS = "segment_ids"
KEY_LABEL_CONF = "label_conf"
LABEL_KEYS = (KEY_SEGMENT_IDS, KEY_LABEL_CONF)
"""Per-Gaussian tensors that are carried through densification but never optimised."""
GaussianParams = Union[Mapping[str, Tensor], torch.nn.ParameterDict]
"""Per-Gaussian tensors under the keys above: `to_params`' ParameterDict (an `nn.Module`, not a `Mapping`) or a plain
dict, the two containers gsplat's strategies take (`gsplat/strategy/default.py`)."""


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel for a degree: (degree + 1)^2."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_bases(num_bases: int) -> int:
    """Inverse of `num_sh_bases`, with an error for counts that are not (d + 1)^2, d <= 3."""
    degree = int(round(math.sqrt(num_bases))) - 1
    if degree < 0 or degree > MAX_SH_DEGREE or (degree + 1) ** 2 != num_bases:
        raise ValueError(f"{num_bases} SH coefficients per channel is not (d + 1)^2 for a degree d in 0..3")
    return degree


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    """RGB in [0, 1] -> the DC SH coefficient that renders it (3DGS convention: colour = SH_C0 * dc + 0.5)."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: Tensor) -> Tensor:
    """Inverse of `rgb_to_sh_dc` (not clamped)."""
    return dc * SH_C0 + 0.5


@dataclass(frozen=True)
class Cameras:
    """Pinhole cameras of one image size (OpenCV axes: x right, y down, z forward)."""

    K: Float[Tensor, "C 3 3"]
    """Intrinsics; integer pixel coordinates are pixel centres, the image centre is ((W - 1) / 2, (H - 1) / 2)."""
    T_world_cam: Float[Tensor, "C 4 4"]
    """Camera-to-world transforms."""
    width: int
    height: int
    names: tuple[str, ...]
    """One name per camera (image file stem or frame name)."""

    def __post_init__(self) -> None:
        n = self.K.shape[0] if self.K.ndim == 3 else -1
        if self.K.shape != (n, 3, 3) or self.T_world_cam.shape != (n, 4, 4):
            raise ValueError(f"Cameras need K (C, 3, 3) and T_world_cam (C, 4, 4), got {tuple(self.K.shape)} and "
                             f"{tuple(self.T_world_cam.shape)}")
        if len(self.names) != n:
            raise ValueError(f"Cameras got {len(self.names)} names for {n} cameras")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Cameras need a positive image size, got {self.width}x{self.height}")
        object.__setattr__(self, "names", tuple(str(s) for s in self.names))

    def __len__(self) -> int:
        return self.K.shape[0]

    @property
    def T_cam_world(self) -> Float[Tensor, "C 4 4"]:
        """World-to-camera transforms (the `viewmats` of the rasteriser)."""
        return rigid_inverse(self.T_world_cam)

    @property
    def centers(self) -> Float[Tensor, "C 3"]:
        """Camera centres in the world frame."""
        return self.T_world_cam[:, :3, 3]

    def select(self, index: Tensor | list[int] | slice) -> "Cameras":
        """A subset of the cameras, in the given order."""
        idx = torch.arange(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index).long()
        idx = idx.reshape(-1)
        return Cameras(K=self.K[idx.to(self.K.device)], T_world_cam=self.T_world_cam[idx.to(self.K.device)],
                       width=self.width, height=self.height, names=tuple(self.names[int(i)] for i in idx))

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "Cameras":
        """The same cameras on another device (and dtype)."""
        return dataclasses.replace(self, K=self.K.to(device, dtype), T_world_cam=self.T_world_cam.to(device, dtype))


@dataclass(frozen=True)
class GaussianScene:
    """A labelled 3DGS scene: N Gaussians, all tensors in raw (pre-activation) form, one row per Gaussian."""

    means: Float[Tensor, "N 3"]
    """Centres in the world frame."""
    quats: Float[Tensor, "N 4"]
    """Rotations as quaternions w, x, y, z (not necessarily normalised; renderers normalise)."""
    log_scales: Float[Tensor, "N 3"]
    """Natural log of the standard deviations along the rotated axes."""
    opacity_logits: Float[Tensor, "N"]
    """Logit of the opacity."""
    sh: Float[Tensor, "N S 3"]
    """Spherical-harmonic colour coefficients, S = (sh_degree + 1)^2, DC first (3DGS convention)."""
    reg_colors: Float[Tensor, "N 3"]
    """Second colour set (RGB) of the instance-colour regularisation; shares the geometry above."""
    segment_ids: Int[Tensor, "N"]
    """Lifted panoptic segment id (0 = unlabelled / void), the id of the scene's segment legend."""
    label_conf: Float[Tensor, "N"]
    """Confidence of `segment_ids` in [0, 1] (share of the Gaussian's blending weight that voted for it)."""

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {
            "means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,),
            "reg_colors": (n, 3), "segment_ids": (n,), "label_conf": (n,),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"GaussianScene.{name} must have shape {shape} for {n} Gaussians, got {got}")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"GaussianScene.sh must have shape ({n}, S, 3), got {tuple(self.sh.shape)}")
        try:
            sh_degree_from_bases(self.sh.shape[1])
        except ValueError as err:
            raise ValueError(f"GaussianScene.sh: {err}") from None
        if self.segment_ids.is_floating_point():
            raise ValueError("GaussianScene.segment_ids must be an integer tensor")

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        """Degree of the SH colour model (0 = view-independent colour)."""
        return sh_degree_from_bases(self.sh.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def scales(self) -> Float[Tensor, "N 3"]:
        """Linear standard deviations (exp of `log_scales`)."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Float[Tensor, "N"]:
        """Opacities in [0, 1] (sigmoid of the logits)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def base_colors(self) -> Float[Tensor, "N 3"]:
        """View-independent RGB from the DC coefficient, clamped to [0, 1] (for point clouds and previews)."""
        return sh_dc_to_rgb(self.sh[:, 0]).clamp(0.0, 1.0)

    def colors(self, T_world_cam: Float[Tensor, "C 4 4"] | None = None) -> Tensor:
        """Render colours: (N, 3) for degree 0 or no camera, else view-dependent (C, N, 3), clamped at 0 like 3DGS."""
        return sh_colors(self.means, self.sh, T_world_cam)

    def tensors(self) -> dict[str, Tensor]:
        """All per-Gaussian tensors by field name (shared storage, no copy)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **fields: Tensor) -> "GaussianScene":
        """A copy with some tensors replaced (validated like the constructor)."""
        return dataclasses.replace(self, **fields)

    def with_labels(self, segment_ids: Int[Tensor, "N"], label_conf: Float[Tensor, "N"]) -> "GaussianScene":
        """The same Gaussians with new lifted labels."""
        return self.replace(segment_ids=segment_ids.to(self.device, torch.int64),
                            label_conf=label_conf.to(self.device, self.means.dtype))

    def select(self, index: Tensor) -> "GaussianScene":
        """The Gaussians picked by a boolean mask or an index tensor; every tensor, labels included, follows."""
        index = index.to(self.device)
        return GaussianScene(**{k: v[index] for k, v in self.tensors().items()})

    def to(self, device: torch.device | str) -> "GaussianScene":
        """The same scene on another device."""
        return GaussianScene(**{k: v.to(device) for k, v in self.tensors().items()})

    def detach(self) -> "GaussianScene":
        """A copy without autograd history (tensors cloned, so later in-place edits of parameters do not leak)."""
        return GaussianScene(**{k: v.detach().clone() for k, v in self.tensors().items()})

    def to_params(self) -> torch.nn.ParameterDict:
        """All per-Gaussian tensors as one ParameterDict under gsplat's key names.

        The labels ride along as float64 parameters (exact for any int32 id) so gsplat's `DefaultStrategy`, which
        duplicates, splits and removes rows of every entry it finds, keeps them aligned with the geometry. They get
        no gradient because no loss reads them.
        """
        params = {
            KEY_MEANS: self.means, KEY_QUATS: self.quats, KEY_SCALES: self.log_scales,
            KEY_OPACITIES: self.opacity_logits, KEY_SH0: self.sh[:, :1], KEY_REG_COLORS: self.reg_colors,
            KEY_SEGMENT_IDS: self.segment_ids.to(torch.float64), KEY_LABEL_CONF: self.label_conf,
        }
        if self.sh.shape[1] > 1:
            params[KEY_SHN] = self.sh[:, 1:]
        return torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.detach().clone(), requires_grad=k not in LABEL_KEYS) for k, v in params.items()})

    @staticmethod
    def from_params(params: GaussianParams) -> "GaussianScene":
        """Inverse of `to_params` (detached copies)."""
        sh = params[KEY_SH0]
        if KEY_SHN in params:
            sh = torch.cat([sh, params[KEY_SHN]], dim=1)
        return GaussianScene(
            means=params[KEY_MEANS].detach().clone(), quats=params[KEY_QUATS].detach().clone(),
            log_scales=params[KEY_SCALES].detach().clone(), opacity_logits=params[KEY_OPACITIES].detach().clone(),
            sh=sh.detach().clone(), reg_colors=params[KEY_REG_COLORS].detach().clone(),
            segment_ids=params[KEY_SEGMENT_IDS].detach().round().to(torch.int64),
            label_conf=params[KEY_LABEL_CONF].detach().clone().to(params[KEY_MEANS].dtype),
        )


def sh_colors(means: Float[Tensor, "N 3"], sh: Float[Tensor, "N S 3"],
              T_world_cam: Float[Tensor, "C 4 4"] | None = None) -> Tensor:
    """Evaluate SH colours as 3DGS does (`max(SH(dir) + 0.5, 0)`, dir from the camera centre to the Gaussian).

    Returns (N, 3) when the degree is 0 or no camera is given (DC term only), else (C, N, 3).
    """
    degree = sh_degree_from_bases(sh.shape[1])
    if degree == 0 or T_world_cam is None:
        return torch.clamp_min(sh[:, 0] * SH_C0 + 0.5, 0.0)
    # gsplat's pure-torch SH evaluation (the same polynomials its CUDA kernel uses).
    from gsplat.cuda._torch_impl import _spherical_harmonics

    dirs = means[None, :, :] - T_world_cam[:, None, :3, 3]  # [C, N, 3]
    coeffs = sh[None].expand(dirs.shape[0], -1, -1, -1)  # [C, N, S, 3]
    return torch.clamp_min(_spherical_harmonics(degree, dirs, coeffs) + 0.5, 0.0)


@torch.no_grad()
def voxel_downsample(points: np.ndarray, colors: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Average the points (and colours) that fall in the same cubic voxel; output sorted by voxel key.

    Voxels are aligned to the origin (floor(p / voxel_size)), so the result does not depend on point order.
    """
    _, inverse, counts = np.unique(_voxel_keys(points, voxel_size), return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    out_pts = np.zeros((len(counts), 3), dtype=np.float64)
    out_cols = np.zeros((len(counts), colors.shape[1]), dtype=np.float64)
    np.add.at(out_pts, inverse, points)
    np.add.at(out_cols, inverse, colors)
    return out_pts / counts[:, None], out_cols / counts[:, None]


def _voxel_keys(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """One sortable key per point for its voxel ``floor(p / voxel_size)``: the three integer coordinates (offset to
    start at 0) packed into one int64 of 21 bits each, whose order is their lexicographic order. A 1-D ``np.unique``
    on these is many times faster than ``np.unique(..., axis=0)`` on the triples (it ran 20 times per fit set-up).
    Extents of 2**21 voxels or more per axis keep structured (row) keys, which sort the same way."""
    cells = np.floor(np.asarray(points, dtype=np.float64) / voxel_size).astype(np.int64)
    if len(cells) == 0:
        return np.zeros(0, dtype=np.int64)
    cells -= cells.min(axis=0)
    if int(cells.max()) >= 1 << 21:
        return np.ascontiguousarray(cells).view([("x", np.int64), ("y", np.int64), ("z", np.int64)]).reshape(-1)
    return (cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2]


def _voxel_downsample(points: np.ndarray, colors: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Reference twin of `voxel_downsample`: a dictionary of voxels filled point by point."""
    cells: dict[tuple[int, int, int], list[int]] = {}
    for i, p in enumerate(points):
        key = tuple(int(math.floor(float(c) / voxel_size)) for c in p)
        cells.setdefault(key, []).append(i)
    keys = sorted(cells)
    pts = np.array([points[cells[k]].mean(axis=0) for k in keys]).reshape(-1, 3)
    cols = np.array([colors[cells[k]].mean(axis=0) for k in keys]).reshape(-1, colors.shape[1])
    return pts, cols


def voxel_size_for_budget(points: np.ndarray, budget: int, *, iterations: int = 20) -> float:
    """Smallest voxel size (found by bisection on a log scale) whose downsampling keeps at most `budget` points."""
    extent = float(np.max(points.max(axis=0) - points.min(axis=0)))
    if extent <= 0.0:
        return 1.0
    lo, hi = extent * 1e-6, extent * 2.0  # at hi every point falls into at most 8 voxels

    def count(size: float) -> int:
        return len(np.unique(_voxel_keys(points, size)))

    for _ in range(iterations):
        mid = math.sqrt(lo * hi)
        if count(mid) > budget:
            lo = mid
        else:
            hi = mid
    return hi


def init_from_points(points: Float[Tensor, "P 3"] | np.ndarray,
                     colors: Float[Tensor, "P 3"] | UInt8[Tensor, "P 3"] | np.ndarray,
                     budget: int, *, sh_degree: int = 0, init_opacity: float = 0.1,
                     init_scale: float = 1.0) -> GaussianScene:
    """Gaussians from a coloured point cloud: voxel-downsampled to at most `budget`, isotropic, unlabelled.

    Follows gsplat's simple_trainer initialisation: scale = `init_scale` x the RMS distance to the 3 nearest
    neighbours, opacity `init_opacity`, colour in the DC SH coefficient. Rotations are the identity (the Gaussians are
    isotropic, so any rotation is equivalent) and the result is deterministic. Colours may be uint8 or floats in
    [0, 1]. The regularisation colours start at mid grey.
    """
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().numpy() if isinstance(points, Tensor) else np.asarray(points)
    cols = colors.detach().cpu().numpy() if isinstance(colors, Tensor) else np.asarray(colors)
    if pts.ndim != 2 or pts.shape[1] != 3 or cols.shape != pts.shape:
        raise ValueError(f"init_from_points needs points (P, 3) and colors (P, 3), got {pts.shape} and {cols.shape}")
    if len(pts) == 0:
        raise ValueError("init_from_points got an empty point cloud; lower the confidence threshold or add views")
    if budget < 1:
        raise ValueError(f"the Gaussian budget must be at least 1, got {budget}")
    cols = cols.astype(np.float64) / 255.0 if cols.dtype == np.uint8 else cols.astype(np.float64)
    pts = pts.astype(np.float64)
    finite = np.isfinite(pts).all(axis=1) & np.isfinite(cols).all(axis=1)
    if not finite.all():
        logger.warning("init_from_points: dropping %d non-finite points", int((~finite).sum()))
        pts, cols = pts[finite], cols[finite]
        if len(pts) == 0:
            raise ValueError("init_from_points: no finite point left")
    if len(pts) > budget:
        pts, cols = voxel_downsample(pts, cols, voxel_size_for_budget(pts, budget))
        if len(pts) > budget:  # only for budgets below 8, where one voxel can still straddle 8 cells
            keep = np.linspace(0, len(pts) - 1, budget).round().astype(np.int64)
            pts, cols = pts[keep], cols[keep]
    n = len(pts)
    if n > 1:
        k = min(4, n)
        dists, _ = cKDTree(pts).query(pts, k=k)
        dist = np.sqrt(np.mean(dists[:, 1:] ** 2, axis=1))
        positive = dist[dist > 0]
        floor = float(positive.min()) if positive.size else 1e-3
        dist = np.maximum(dist, floor)
    else:
        dist = np.full(1, 1e-2)
    dtype = torch.float32
    sh = torch.zeros(n, num_sh_bases(sh_degree), 3, dtype=dtype)
    sh[:, 0] = rgb_to_sh_dc(torch.from_numpy(np.clip(cols, 0.0, 1.0)).to(dtype))
    return GaussianScene(
        means=torch.from_numpy(pts).to(dtype),
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype).repeat(n, 1),
        log_scales=torch.from_numpy(np.log(dist * init_scale)).to(dtype)[:, None].repeat(1, 3),
        opacity_logits=torch.full((n,), math.log(init_opacity / (1.0 - init_opacity)), dtype=dtype),
        sh=sh,
        reg_colors=torch.full((n, 3), 0.5, dtype=dtype),
        segment_ids=torch.zeros(n, dtype=torch.int64),
        label_conf=torch.zeros(n, dtype=dtype),
    )
