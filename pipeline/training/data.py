"""Training samples from synthetic scenes, generated on the fly and deterministic by index.

Sample `i` uses the scene of seed `first_seed + i // reuse` (always inside the training seed range, see
`synth.config.HELD_OUT_SEED_START`), rendered with `scene_views` cameras along an arc, and takes a window of `views`
consecutive cameras from it (start and direction drawn from a generator seeded by `i`). Everything is a function
of `i`, so resuming at step `s` with batch `b` reproduces the data order exactly by starting at index `s * b`.
Rendering dominates the cost, so each data-loader worker keeps its last scene: with batches handed to workers
whole, the `reuse` consecutive samples of one scene are rendered once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from panst3r_splat.core.training.losses import SceneTargets
from panst3r_splat.pipeline.synth.config import HELD_OUT_SEED_START, SynthConfig, training_seed
from panst3r_splat.pipeline.training.targets import normalise_images, scene_targets


@dataclass(frozen=True)
class DataConfig:
    """Which scenes a training run sees."""

    views: int = 4
    """Views per sample (all go into the model's memory, as PanSt3R trains with 5)."""
    scene_views: int = 8
    """Cameras rendered per scene; each sample takes `views` consecutive ones."""
    reuse: int = 4
    """Consecutive samples drawn from one scene (different windows and orders)."""
    width: int = 192
    """Image width (a multiple of the patch size)."""
    height: int = 144
    """Image height (a multiple of the patch size)."""
    arc_deg: tuple[float, float] = (60.0, 220.0)
    """Range of the arc the scene's cameras span (a window of `views` of them spans (views-1)/(scene_views-1) of
    it): short arcs give large overlaps between views."""
    first_seed: int = 0
    """Scene seed of sample 0."""
    color_jitter: float = 0.1
    """Largest relative brightness/contrast change per view (photometric augmentation)."""
    synth: SynthConfig = SynthConfig(train_views=4, test_views=0, path="mixed", num_objects=(4, 10),
                                     texture_strength=0.45, ceiling_probability=0.9)
    """Scene variety (views, size and arc are overridden by the fields above)."""

    def scene_config(self) -> SynthConfig:
        return replace(self.synth, train_views=self.scene_views, test_views=0, width=self.width, height=self.height,
                       arc_deg=self.arc_deg)


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

    def __init__(self, config: DataConfig, length: int | None = None) -> None:
        if not 1 <= config.views <= config.scene_views:
            raise ValueError(f"need 1 <= views <= scene_views, got {config.views} and {config.scene_views}")
        self.config = config
        most = (HELD_OUT_SEED_START - config.first_seed) * config.reuse
        self.length = most if length is None else min(length, most)
        self._cached: tuple[int, object] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        from panst3r_splat.pipeline.synth import generate_scene

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
