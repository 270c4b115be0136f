"""Image loading as the official PanSt3R demo does it, with a map back to the original pixels.

Official path (tools/demo_panst3r.py ``load_images`` -> must3r/tools/image.py ``get_resize_function``):

1. ``PIL.Image.open(path).convert('RGB')``, then ``ImgNorm`` (ToTensor + Normalize(0.5, 0.5)): float in [-1, 1].
2. If ``(max(H, W), min(H, W))`` is one of the bucket resolutions of the target long side, the image is used as is.
3. Otherwise the bucket whose aspect ratio is closest is chosen (portrait images compare against the inverted
   ratios and stay portrait), the image is centre-cropped to that ratio (``crop_H = int(W / ratio)`` or
   ``crop_W = int(H * ratio)``; no crop when the ratios agree within float32 eps) with torchvision ``CenterCrop``
   (offset ``int(round((H - crop_H) / 2))``) and resized with torchvision ``Resize`` on the normalised tensor,
   which is bilinear interpolation with antialiasing (``F.interpolate(..., antialias=True)``).

We reproduce that with plain torch (no torchvision). Additions: EXIF orientation is applied first (phone photos),
a video file is accepted (frames sampled evenly), ``size="native"`` keeps the images as they are, and long sides that
are not in the official table get buckets derived from the 512 ones (see :func:`bucket_resolutions`).

``to_orig`` uses the project's pixel convention (integer coordinates are pixel centres): a model pixel ``(u, v)``
maps to ``x = (u + 0.5) * crop_W / W_model - 0.5 + crop_left`` in the original image. The official ``to_orig`` is
written for pixel corners and uses the unrounded crop offset ``(W - crop_W) / 2``; ours uses the offset the crop
really applied, so odd margins are exact.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F
from jaxtyping import Float, Float32, Int32, UInt8
from torch import Tensor
from tqdm.auto import tqdm

from panst3r_splat.core.transforms import resize_pixels

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})

OFFICIAL_RESOLUTIONS: dict[int, dict[float, tuple[int, int]]] = {
    224: {1.0: (224, 224)},
    336: {1.0: (336, 336)},
    384: {4 / 3: (384, 288), 3 / 2: (384, 256), 2 / 1: (384, 192), 3 / 1: (384, 128)},
    448: {1.0: (448, 448)},
    512: {4 / 3: (512, 384), 32 / 21: (512, 336), 16 / 9: (512, 288), 2 / 1: (512, 256), 16 / 5: (512, 160)},
    768: {4 / 3: (768, 576), 3 / 2: (768, 512), 16 / 9: (768, 432), 2 / 1: (768, 384), 16 / 5: (768, 240)},
}
"""must3r/tools/image.py ``ratios_resolutions``: aspect ratio -> (long side, short side)."""

DEFAULT_MAX_VIDEO_FRAMES = 100
"""Frames sampled from a video when the caller does not say."""

NATIVE: Literal["native"] = "native"
"""``size`` value that keeps the images' own resolution (each side a multiple of the patch size, no crop)."""


def bucket_resolutions(long_side: int, patch_size: int = 16) -> dict[float, tuple[int, int]]:
    """Aspect-ratio buckets ``{ratio: (long, short)}`` for a target long side.

    The official table is used when it has the long side (224, 336, 384, 448, 512, 768). Any other multiple of
    ``patch_size`` gets the 512 buckets' ratios (4/3, 32/21, 16/9, 2/1, 16/5) with the short side rounded to the
    nearest multiple of ``patch_size`` (at least one patch); the keys are then the real ratios of the rounded sizes,
    and ratios that collapse onto the same size are kept once. ``bucket_resolutions(512)`` equals the official table.
    """
    if long_side <= 0 or long_side % patch_size != 0:
        raise ValueError(
            f"image size {long_side} must be a positive multiple of the patch size {patch_size} (e.g. 512)"
        )
    if long_side in OFFICIAL_RESOLUTIONS:
        return dict(OFFICIAL_RESOLUTIONS[long_side])
    out: dict[float, tuple[int, int]] = {}
    for ratio in OFFICIAL_RESOLUTIONS[512]:
        short = max(patch_size, int(math.floor(long_side / ratio / patch_size + 0.5)) * patch_size)
        if (long_side, short) not in out.values():
            out[long_side / short] = (long_side, short)
    return out


def select_resolution(height: int, width: int, buckets: dict[float, tuple[int, int]]) -> tuple[int, int]:
    """Target ``(H, W)`` of the bucket closest in aspect ratio (must3r ``get_HW_resolution``).

    Landscape (``W >= H``) compares ``W / H`` with the ratios, portrait compares it with their inverses; ties go to
    the first bucket in table order, as ``np.argmin`` does upstream.
    """
    ratio = width / height
    ref = np.array(list(buckets.keys()))
    landscape = width >= height
    diff = np.abs(ratio - ref) if landscape else np.abs(ratio - 1.0 / ref)
    long_side, short_side = buckets[float(ref[int(np.argmin(diff))])]
    return (short_side, long_side) if landscape else (long_side, short_side)


@dataclass(frozen=True)
class ResizePlan:
    """Centre crop then resize of one image: what the model sees and how it maps back."""

    orig_h: int
    orig_w: int
    crop_top: int
    crop_left: int
    crop_h: int
    crop_w: int
    out_h: int
    out_w: int

    @property
    def is_identity(self) -> bool:
        """True when the image is used as it is."""
        return (self.crop_h, self.crop_w, self.out_h, self.out_w) == (self.orig_h, self.orig_w) * 2

    def to_orig(self) -> Float32[np.ndarray, "3 3"]:
        """Model pixel coordinates -> original pixel coordinates (pixel centres at integers)."""
        sx = self.crop_w / self.out_w
        sy = self.crop_h / self.out_h
        return np.array(
            [
                [sx, 0.0, 0.5 * sx - 0.5 + self.crop_left],
                [0.0, sy, 0.5 * sy - 0.5 + self.crop_top],
                [0.0, 0.0, 1.0],
            ],
            dtype=np.float32,
        )


def capped_hw(hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(height, width) of an image of size ``hw`` with its long side capped at ``long_side`` (never enlarged)."""
    h, w = int(hw[0]), int(hw[1])
    scale = min(1.0, long_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_affine(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Float[np.ndarray, "3 3"]:
    """Pixel coordinates of an ``in_hw`` image -> those of its resize to ``out_hw`` (pixel centres at integers):
    ``u' = s (u + 0.5) - 0.5`` per axis."""
    return resize_pixels(out_hw[1] / in_hw[1], out_hw[0] / in_hw[0])


def plan_resize(height: int, width: int, long_side: int, patch_size: int = 16) -> ResizePlan:
    """The official demo's crop and resize for an ``height x width`` image at a target long side."""
    buckets = bucket_resolutions(long_side, patch_size)
    if (max(height, width), min(height, width)) in buckets.values():
        return ResizePlan(height, width, 0, 0, height, width, height, width)
    out_h, out_w = select_resolution(height, width, buckets)
    ratio = width / height
    target_ratio = out_w / out_h
    crop_h, crop_w = height, width
    if abs(ratio - target_ratio) < np.finfo(np.float32).eps:
        pass
    elif ratio < target_ratio:
        crop_h = int(width / target_ratio)
    else:
        crop_w = int(height * target_ratio)
    # torchvision CenterCrop offsets: int(round(margin / 2)) with Python's round (half to even).
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return ResizePlan(height, width, top, left, crop_h, crop_w, out_h, out_w)


def _normalise(rgb: np.ndarray) -> Float[Tensor, "3 H W"]:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1]: dust3r ``ImgNorm`` = ToTensor + Normalize(0.5, 0.5)."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32) / 255.0
    return (x - 0.5) / 0.5


def apply_resize(image: Float[Tensor, "3 H W"], plan: ResizePlan) -> Float[Tensor, "3 h w"]:
    """Crop and resize a normalised image as torchvision ``CenterCrop`` + ``Resize`` (bilinear, antialiased)."""
    if plan.is_identity:
        return image
    crop = image[:, plan.crop_top : plan.crop_top + plan.crop_h, plan.crop_left : plan.crop_left + plan.crop_w]
    if (plan.crop_h, plan.crop_w) == (plan.out_h, plan.out_w):
        return crop.contiguous()
    out = F.interpolate(
        crop[None], size=(plan.out_h, plan.out_w), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0]


def _filter_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of an antialiased linear (triangle) filter, as PIL / torch ``antialias=True`` use."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale  # in input pixel-edge coordinates
        for j in range(n_in):
            weights[i, j] = max(0.0, 1.0 - abs((j + 0.5 - centre) / support))
        weights[i] /= weights[i].sum()
    return weights


def _apply_resize(image: np.ndarray, plan: ResizePlan) -> np.ndarray:
    """Reference twin of :func:`apply_resize`: explicit crop and separable triangle-filter matrices (float64)."""
    crop = image[:, plan.crop_top : plan.crop_top + plan.crop_h, plan.crop_left : plan.crop_left + plan.crop_w]
    rows = _filter_matrix(plan.crop_h, plan.out_h)
    cols = _filter_matrix(plan.crop_w, plan.out_w)
    return np.einsum("ij,cjk,lk->cil", rows, crop.astype(np.float64), cols)


def to_uint8(images: Float[Tensor, "*batch 3 H W"]) -> UInt8[np.ndarray, "*batch H W 3"]:
    """[-1, 1] images back to uint8 RGB, channels last (what the model saw, for display and colours)."""
    x = ((images.detach().to(torch.float32).cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).numpy()


@dataclass(frozen=True)
class LoadedImages:
    """Images ready for the model, in input order, with what is needed to map results back.

    When every view has the same model resolution ``images`` is one ``(V, 3, H, W)`` tensor and ``images_uint8``
    one ``(V, H, W, 3)`` array. With mixed aspect ratios (bucketed to different sizes) both are tuples with one
    entry per size group, stacked in the order of ``groups`` (view indices of each group, ascending).
    """

    images: Float[Tensor, "V 3 H W"] | tuple[Float[Tensor, "_G 3 _H _W"], ...]
    """Normalised RGB in [-1, 1] (float32, CPU)."""
    images_uint8: UInt8[np.ndarray, "V H W 3"] | tuple[UInt8[np.ndarray, "_G _H _W 3"], ...]
    """The same images as uint8 RGB, channels last."""
    names: tuple[str, ...]
    """File name of each view (for a video: ``<stem>_frame<index>``)."""
    orig_hw: Int32[np.ndarray, "V 2"]
    """Original ``(H, W)`` after EXIF orientation."""
    to_orig: Float32[np.ndarray, "V 3 3"]
    """Model pixel coordinates -> original pixel coordinates (pixel centres at integers)."""
    groups: tuple[np.ndarray, ...]
    """View indices (int64, ascending) of each size group; a single group of all views when sizes agree."""

    def __len__(self) -> int:
        return len(self.names)

    @property
    def uniform(self) -> bool:
        """True when every view has the same model resolution."""
        return isinstance(self.images, Tensor)

    @property
    def true_shape(self) -> Int32[np.ndarray, "V 2"]:
        """Model resolution ``(H, W)`` of every view."""
        out = np.zeros((len(self), 2), dtype=np.int32)
        stacks = (self.images,) if isinstance(self.images, Tensor) else self.images
        for idx, stack in zip(self.groups, stacks):
            out[idx] = stack.shape[-2:]
        return out

    def view_image(self, i: int) -> Float[Tensor, "3 H W"]:
        """Normalised image of view ``i``."""
        g, j = self._locate(i)
        return self.images[j] if isinstance(self.images, Tensor) else self.images[g][j]

    def view_uint8(self, i: int) -> UInt8[np.ndarray, "H W 3"]:
        """uint8 image of view ``i``."""
        g, j = self._locate(i)
        return self.images_uint8[j] if isinstance(self.images_uint8, np.ndarray) else self.images_uint8[g][j]

    def _locate(self, i: int) -> tuple[int, int]:
        for g, idx in enumerate(self.groups):
            hit = np.flatnonzero(idx == i)
            if hit.size:
                return g, int(hit[0])
        raise IndexError(f"view {i} out of range for {len(self)} views")


def _natural_key(path: Path) -> list[object]:
    """Sort ``frame2`` before ``frame10``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path.name)]


def list_inputs(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Image files of a folder (natural order; hidden files and other extensions skipped with a warning),
    a single video or image file, or an explicit list of files (kept in the given order)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ValueError(f"input {path} does not exist: give a folder of images, an image or a video file")
        if path.is_file():
            return [path]
        files = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")), key=_natural_key)
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        skipped = [p.name for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
        if skipped:
            log.warning("skipping %d non-image file(s) in %s: %s", len(skipped), path, ", ".join(skipped[:5]))
        if not images:
            hint = f" (found only {', '.join(skipped[:5])})" if skipped else ""
            raise ValueError(
                f"no images in folder {path}{hint}: put {'/'.join(sorted(IMAGE_EXTENSIONS))} files there, "
                "or pass a video file itself"
            )
        return images
    paths = [Path(p) for p in source]
    if not paths:
        raise ValueError("no input images given: pass at least one image")
    for p in paths:
        if not p.is_file():
            raise ValueError(f"input image {p} does not exist or is not a file")
    return paths


def read_image(path: Path) -> UInt8[np.ndarray, "H W 3"]:
    """RGB uint8 pixels of an image file, EXIF orientation applied."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"unsupported image extension {path.suffix!r} for {path}: use one of "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} (or a video: {', '.join(sorted(VIDEO_EXTENSIONS))})"
        )
    try:
        with PIL.Image.open(path) as img:
            img.load()
            img = PIL.ImageOps.exif_transpose(img)
            rgb = np.array(img.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}; replace or remove the file") from err
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"image {path} is empty; replace or remove the file")
    return rgb


def read_video_frames(path: Path, max_frames: int = DEFAULT_MAX_VIDEO_FRAMES) -> tuple[list[str], list[np.ndarray]]:
    """Up to ``max_frames`` frames sampled evenly over a video (first and last included), with their names."""
    import imageio.v2 as iio  # imported here: only video input needs the ffmpeg plugin

    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    try:
        reader = iio.get_reader(str(path), format="FFMPEG")
    except Exception as err:  # imageio raises a mix of OSError / RuntimeError / ValueError for bad files
        raise ValueError(f"cannot open video {path}: {err}; check the file, or extract its frames") from err
    try:
        n_frames = reader.count_frames()
        if n_frames < 1:
            raise ValueError(f"video {path} has no frames")
        wanted = np.unique(np.linspace(0, n_frames - 1, min(max_frames, n_frames)).round().astype(np.int64))
        wanted_set = set(wanted.tolist())
        names, frames = [], []
        for index, frame in enumerate(reader):
            if index in wanted_set:
                names.append(f"{path.stem}_frame{index:06d}")
                frames.append(np.array(np.asarray(frame)[..., :3], dtype=np.uint8))
            if index >= wanted[-1]:
                break
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(f"cannot decode video {path}: {err}; check the file, or extract its frames") from err
    finally:
        reader.close()
    if not frames:
        raise ValueError(f"no frames could be decoded from video {path}")
    return names, frames


def _check_native(name: str, height: int, width: int, patch_size: int) -> None:
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image {name} is {width}x{height}: with --size native each side must be a multiple of {patch_size}; "
            f"use --size 512 (official aspect buckets) or crop the images to e.g. "
            f"{width // patch_size * patch_size}x{height // patch_size * patch_size}"
        )


def load_images(
    source: str | Path | Sequence[str | Path],
    *,
    size: int | str = 512,
    patch_size: int = 16,
    max_video_frames: int = DEFAULT_MAX_VIDEO_FRAMES,
) -> LoadedImages:
    """Load a folder of images, a list of image files, or a video, as the official demo prepares them.

    Args:
        source: folder (its image files in natural name order), list of image files, a single image, or a video
            file (``max_video_frames`` frames sampled evenly).
        size: target long side (aspect-ratio buckets, centre crop and resize; see :func:`bucket_resolutions`), or
            ``"native"``: images as they are, each side a multiple of ``patch_size``, all of one size.
        patch_size: the model's patch size; every output side is a multiple of it.
        max_video_frames: frames taken from a video input.

    Raises:
        ValueError: missing or empty folder, unreadable image (named), unsupported extension, a side that is not a
            multiple of the patch size or mixed sizes under ``"native"``.
    """
    paths = list_inputs(source)
    names: list[str] = []
    rgbs: list[np.ndarray] = []
    if len(paths) == 1 and paths[0].suffix.lower() in VIDEO_EXTENSIONS:
        names, rgbs = read_video_frames(paths[0], max_video_frames)
    else:
        for p in tqdm(paths, desc="reading images", unit="img", leave=False, disable=len(paths) < 20):
            if p.suffix.lower() in VIDEO_EXTENSIONS:
                raise ValueError(f"video {p} given among other inputs: pass a video on its own")
            rgbs.append(read_image(p))
            names.append(p.name)

    plans: list[ResizePlan] = []
    for name, rgb in zip(names, rgbs):
        h, w = rgb.shape[:2]
        if size == NATIVE:
            _check_native(name, h, w, patch_size)
            plans.append(ResizePlan(h, w, 0, 0, h, w, h, w))
        elif isinstance(size, int) and not isinstance(size, bool):
            plans.append(plan_resize(h, w, size, patch_size))
        else:
            raise ValueError(f"size must be a long side in pixels (e.g. 512) or 'native', got {size!r}")
    if size == NATIVE:
        shapes = {(p.out_h, p.out_w) for p in plans}
        if len(shapes) > 1:
            examples = {(p.out_h, p.out_w): n for p, n in zip(plans, names)}
            listed = ", ".join(f"{n} ({w}x{h})" for (h, w), n in examples.items())
            raise ValueError(
                f"mixed image sizes under --size native: {listed}; resize the images to one size or use --size 512"
            )

    tensors = [apply_resize(_normalise(rgb), plan) for rgb, plan in zip(rgbs, plans)]
    return _assemble(tensors, names, plans)


def _assemble(tensors: list[Tensor], names: list[str], plans: list[ResizePlan]) -> LoadedImages:
    """Group views by model resolution and stack them."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(tensors):
        by_shape.setdefault(tuple(t.shape[-2:]), []).append(i)
    groups = tuple(np.array(idx, dtype=np.int64) for idx in by_shape.values())
    stacks = tuple(torch.stack([tensors[i] for i in idx]) for idx in groups)
    images: Tensor | tuple[Tensor, ...] = stacks[0] if len(stacks) == 1 else stacks
    images_uint8: np.ndarray | tuple[np.ndarray, ...] = (
        to_uint8(stacks[0]) if len(stacks) == 1 else tuple(to_uint8(s) for s in stacks)
    )
    if len(stacks) > 1:
        log.info("images fall into %d size groups: %s", len(stacks), ", ".join(f"{w}x{h}" for h, w in by_shape))
    return LoadedImages(
        images=images,
        images_uint8=images_uint8,
        names=tuple(names),
        orig_hw=np.array([(p.orig_h, p.orig_w) for p in plans], dtype=np.int32).reshape(-1, 2),
        to_orig=np.stack([p.to_orig() for p in plans]).astype(np.float32),
        groups=groups,
    )
