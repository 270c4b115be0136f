"""Training samples from synthetic scenes, deterministic by index.

Two ways of drawing them (``DataConfig.sampling``):

- ``"bank"`` (the second built-in model's recipe): sample ``i`` draws its room from a growing bank of rendered
  rooms (``bank.py``; seeds ``first_seed + [0, n(i))`` with ``n(i) = bank_start + bank_growth * i``), so the
  samples of a batch come from different rooms, takes ``views`` of the room's ``scene_views`` cameras in path order,
  and is shown at the bank's resolution or, for a ``low_res_probability`` share of the batches, downsampled to
  ``low_res`` (with the intrinsics scaled), so the model sees several focal lengths in pixels.
- ``"window"`` (the first model's):

Sample `i` uses the scene of seed `first_seed + i // reuse` (always inside the training seed range, see
`configs.synth.HELD_OUT_SEED_START`), rendered with `scene_views` cameras along an arc, and takes a window of `views`
consecutive cameras from it (start and direction drawn from a generator seeded by `i`). Everything is a function
of `i`, so resuming at step `s` with batch `b` reproduces the data order exactly by starting at index `s * b`.
Rendering dominates the cost, so each data-loader worker keeps its last scene: with batches handed to workers
whole, the `reuse` consecutive samples of one scene are rendered once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from panst3r_splat.configs.data import DataConfig
from panst3r_splat.configs.synth import HELD_OUT_SEED_START, training_seed
from panst3r_splat.core.training.descriptors import pixel_correspondences, sample_query_pixels
from panst3r_splat.core.training.losses import SceneTargets
from panst3r_splat.core.transforms import scale_intrinsics
from panst3r_splat.pipeline.training.bank import SceneBank
from panst3r_splat.pipeline.training.targets import normalise_images, scene_targets


@dataclass(frozen=True)
class Sample:
    """One training scene: images in the model's normalisation and the ground truth."""

    index: int
    images: torch.Tensor
    """[V, 3, H, W] float in [-1, 1]."""
    targets: SceneTargets


def _jitter(images: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Per-view brightness and contrast jitter (uint8 in, uint8 out)."""
    if strength <= 0:
        return images
    out = images.astype(np.float32)
    gain = 1.0 + rng.uniform(-strength, strength, size=(len(images), 1, 1, 1))
    bias = 255.0 * rng.uniform(-strength, strength, size=(len(images), 1, 1, 1)) / 2
    return np.clip(out * gain + bias, 0, 255).astype(np.uint8)


class SyntheticScenes(Dataset):
    """Map-style dataset: index -> `Sample` (rendered on demand, deterministic)."""

    def __init__(self, config: DataConfig, length: int | None = None, *, batch_size: int = 1,
                 bank_root: Path | None = None) -> None:
        if not 1 <= config.views <= config.scene_views:
            raise ValueError(f"need 1 <= views <= scene_views, got {config.views} and {config.scene_views}")
        self.config = config
        most = (HELD_OUT_SEED_START - config.first_seed) * config.reuse
        self.length = most if length is None else min(length, most)
        self._cached: tuple[int, object] | None = None
        self.batch_size = batch_size
        """Samples per batch: all samples of one batch share a resolution (``"bank"`` sampling)."""
        self.bank = SceneBank(config.scene_config(), bank_root) if config.sampling == "bank" else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if self.bank is not None:
            return self._bank_sample(index)
        from panst3r_splat.pipeline.datasets.synth import generate_scene

        cfg = self.config
        seed = training_seed(cfg.first_seed + index // cfg.reuse)
        if self._cached is None or self._cached[0] != seed:
            self._cached = (seed, generate_scene(cfg.scene_config(), seed))
        scene = self._cached[1]
        rng = np.random.default_rng([seed, index % cfg.reuse, 7])
        start = int(rng.integers(0, cfg.scene_views - cfg.views + 1))
        views = np.arange(start, start + cfg.views)
        if rng.random() < 0.5:
            views = views[::-1].copy()
        images = _jitter(scene.images[views], rng, cfg.color_jitter)
        K = np.broadcast_to(scene.K, (len(views), 3, 3))
        targets = scene_targets(scene.depth[views], K, scene.T_world_cam[views], scene.semantics[views],
                                scene.instances[views])
        return Sample(index=index, images=normalise_images(torch.from_numpy(images)), targets=targets)


    def bank_seed(self, index: int) -> int:
        """Seed of the room that sample ``index`` draws from the bank."""
        cfg = self.config
        size = min(cfg.bank_max, cfg.bank_start + int(cfg.bank_growth * index))
        rng = np.random.default_rng([index, 11])
        return training_seed(cfg.first_seed + int(rng.integers(size)))

    def _bank_sample(self, index: int) -> Sample:
        cfg = self.config
        seed = self.bank_seed(index)
        scene = self.bank[seed]
        rng = np.random.default_rng([index, 13])
        views = np.sort(rng.choice(cfg.scene_views, size=cfg.views, replace=False))
        if rng.random() < 0.5:
            views = views[::-1].copy()
        images, depth = scene.images[views], scene.depth[views]
        semantics, instances = scene.semantics[views], scene.instances[views]
        K = scene.K
        batch_rng = np.random.default_rng([index // self.batch_size, 17])
        if cfg.low_res is not None and batch_rng.random() < cfg.low_res_probability:
            images, depth, semantics, instances, K = downsample_views(images, depth, semantics, instances, K,
                                                                      cfg.low_res)
        images = _jitter(images, rng, cfg.color_jitter)
        K_views = np.broadcast_to(K, (len(views), 3, 3))
        targets = scene_targets(depth, K_views, scene.T_world_cam[views], semantics, instances)
        if cfg.descriptor_queries > 0:
            queries = sample_query_pixels(targets.valid, cfg.descriptor_queries,
                                          torch.Generator().manual_seed(index))
            matches = pixel_correspondences(targets.gt_pts3d_world, targets.gt_pts3d_local, targets.valid, queries)
            targets = replace(targets, pixel_queries=queries, pixel_matches=matches)
        return Sample(index=index, images=normalise_images(torch.from_numpy(np.ascontiguousarray(images))),
                      targets=targets)


def downsample_views(
    images: np.ndarray, depth: np.ndarray, semantics: np.ndarray, instances: np.ndarray, K: np.ndarray,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Views at ``size = (width, height)``: images area-averaged, depth and labels by the nearest pixel centre,
    intrinsics scaled (integer pixel coordinates are pixel centres, as everywhere in the project)."""
    V, H, W = depth.shape
    w, h = size
    sx, sy = W / w, H / h
    rows = np.minimum(((np.arange(h) + 0.5) * sy).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * sx).astype(np.int64), W - 1)
    small = torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(), size=(h, w),
                                            mode="area")
    images_small = small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    pick = lambda a: a[:, rows][:, :, cols]  # noqa: E731
    K_small = scale_intrinsics(torch.from_numpy(np.asarray(K, dtype=np.float64)), 1.0 / sx, 1.0 / sy).numpy()
    return images_small, pick(depth), pick(semantics), pick(instances), K_small


class ContinuingSampler(Sampler[int]):
    """Indices `start, start + 1, ...`: the data order of a run, resumable at any step."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def collate(samples: list[Sample]) -> list[Sample]:
    """Keep samples as a list (scenes have different segment counts)."""
    return samples
