"""`fit --fit-size`: fit the splats on the input photos at their own resolution instead of the model's.

The model sees each photo centre-cropped and resized to its resolution (`to_orig`: model pixel -> photo pixel);
its cameras, segment maps and points are at that resolution. Training on the photos themselves gives the splats
every pixel the user took (the model's 192x144 or 512x384 is often a fraction of them):

- images: the photos (`PRED/photos.json`, checked unchanged), resized so the long side is at most `fit_size`;
- intrinsics: `K_fit = A_fit A_orig K_model`, with `A_orig = to_orig` and `A_fit` the resize (pixel centres at
  integers, CLI.md);
- segment maps: each fit pixel takes the label of the model pixel it falls on (nearest), and pixels outside the
  model's crop are `NO_LABEL` (-1): they train the colours but never vote in lifting nor enter the regulariser;
- points, colours and legend: unchanged (they live in the scene frame).

Predictions folders without `photos.json` (written before it existed), photos of different sizes, or a fit size
that changes nothing keep the model's resolution (logged). A photo that moved or changed is an error.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from jaxtyping import Float, Int64, UInt8

from panst3r_splat.core.images import capped_hw, resize_affine
from panst3r_splat.core.photos import PhotoRecord, check_photos, read_photo, read_photos
from panst3r_splat.core.predictions import frame_stem, map_labels_to_original
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.stages.fit import FitInputs
from panst3r_splat.splat.gaussians import Cameras
from panst3r_splat.splat.lifting import NO_LABEL

logger = logging.getLogger(__name__)

DEFAULT_FIT_SIZE = 512
"""Long side (pixels) the photos are fitted at by default: about 7x the pixels of the model's 192x144, a fit step of
about 0.1-0.3 s on 2 CPU cores at 20k Gaussians; 0 = the model's resolution."""


def segments_at(labels: Int64[np.ndarray, "h w"], to_fit: Float[np.ndarray, "3 3"],
                out_hw: tuple[int, int]) -> Int64[np.ndarray, "H W"]:
    """Model-resolution segment map -> fit resolution (nearest model pixel); `NO_LABEL` outside the model's crop."""
    shifted = map_labels_to_original(labels.astype(np.int64) - NO_LABEL, to_fit.astype(np.float32), out_hw)
    return shifted.astype(np.int64) + NO_LABEL  # the mapping writes 0 outside the crop: NO_LABEL after the shift


def _photo_at(record: PhotoRecord, out_hw: tuple[int, int]) -> UInt8[np.ndarray, "H W 3"]:
    rgb = read_photo(record)
    if rgb.shape[:2] == out_hw:
        return rgb
    image = PIL.Image.fromarray(rgb).resize((out_hw[1], out_hw[0]), PIL.Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def _records_of(folder: Path, records: tuple[PhotoRecord, ...], names: tuple[str, ...]) -> list[PhotoRecord]:
    by_stem = {frame_stem(r.name): r for r in records}
    missing = [n for n in names if n not in by_stem]
    if missing:
        raise UserError(f"{folder}/photos.json has no photo for views {', '.join(missing[:5])}; re-run "
                        "`panst3r-splat predict`, or fit at the model's resolution with --fit-size 0")
    return [by_stem[n] for n in names]


def at_photo_resolution(inputs: FitInputs, folder: Path, fit_size: int) -> FitInputs:
    """`inputs` (from `inputs_from_predictions(folder)`, model resolution) at the photos' resolution, long side at
    most `fit_size`; `inputs` itself when there is nothing to do (see the module docstring)."""
    if fit_size < 0:
        raise UserError(f"--fit-size must be 0 (the model's resolution) or a long side in pixels, got {fit_size}")
    if fit_size == 0:
        return inputs
    folder = Path(folder)
    try:
        records = read_photos(folder)
    except ValueError as err:
        raise UserError(str(err)) from None
    if records is None:
        logger.info("fit: %s does not record its photos (written by an older predict): fitting at the model's "
                    "resolution", folder)
        return inputs
    names = tuple(inputs.cameras.names)
    used = _records_of(folder, records, names)
    sizes = {(r.height, r.width) for r in used}
    if len(sizes) > 1:
        logger.warning("fit: the photos have %d different sizes; fitting at the model's resolution", len(sizes))
        return inputs
    orig_hw = sizes.pop()
    out_hw = capped_hw(orig_hw, fit_size)
    # `inputs.source["to_orig"]` holds the used views' maps, in the order of `names` (inputs_from_predictions).
    to_fit = [resize_affine(orig_hw, out_hw) @ np.asarray(m, dtype=np.float64) for m in inputs.source["to_orig"]]
    if out_hw == (inputs.cameras.height, inputs.cameras.width) and all(np.allclose(a, np.eye(3)) for a in to_fit):
        return inputs  # the photos are what the model saw
    try:
        check_photos(used)
        images = np.stack([_photo_at(r, out_hw) for r in used])
    except ValueError as err:
        raise UserError(str(err)) from None
    maps = inputs.segment_maps.numpy()
    segment_maps = np.stack([segments_at(maps[i], to_fit[i], out_hw) for i in range(len(names))])
    K = torch.from_numpy(np.stack(to_fit)).float() @ inputs.cameras.K
    cameras = Cameras(K=K, T_world_cam=inputs.cameras.T_world_cam, width=out_hw[1], height=out_hw[0], names=names)
    logger.info("fit: %d photos at %dx%d (model resolution %dx%d)", len(names), out_hw[1], out_hw[0],
                inputs.cameras.width, inputs.cameras.height)
    source = dict(inputs.source, fit_size=[out_hw[1], out_hw[0]], photos=[r.path for r in used])
    return dataclasses.replace(inputs, cameras=cameras, images=torch.from_numpy(images),
                               segment_maps=torch.from_numpy(segment_maps), source=source)


__all__ = ["DEFAULT_FIT_SIZE", "at_photo_resolution", "segments_at"]
