"""A disk cache of rendered training scenes, regenerable from their seeds on any machine.

Rendering a synthetic room (numpy ray casting, about 0.5 s for 8 views at 192x144 on one core) costs as much as a
training step, so a run that mixes several rooms in every batch cannot render each sample's room afresh. The bank
keeps every rendered room in ``<root>/<config key>/<seed>.npz`` (images, depth, labels, cameras: about 1.8 MB) and
renders a missing one on demand, so a resume on another machine (or after the cache was wiped) gets the same data,
only slower at first. The key is a hash of the scene configuration, so rooms of different settings never mix.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float, UInt8, UInt16

from panst3r_splat.configs.synth import SynthConfig, training_seed
from panst3r_splat.core.atomic_io import atomic_output
from panst3r_splat.pipeline.fingerprints import digest


def default_bank_root() -> Path:
    """``$PANST3R_SCENE_BANK``, else ``$XDG_CACHE_HOME/panst3r_splat/scene_bank`` (``~/.cache/...``)."""
    if os.environ.get("PANST3R_SCENE_BANK"):
        return Path(os.environ["PANST3R_SCENE_BANK"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "panst3r_splat" / "scene_bank"


@dataclass(frozen=True)
class BankedScene:
    """What training needs of one rendered room."""

    images: UInt8[np.ndarray, "V H W 3"]
    depth: Float[np.ndarray, "V H W"]
    """z-depth, 0 where no surface (float32)."""
    K: Float[np.ndarray, "3 3"]
    T_world_cam: Float[np.ndarray, "V 4 4"]
    """Camera-to-world, OpenCV axes."""
    semantics: UInt8[np.ndarray, "V H W"]
    instances: UInt16[np.ndarray, "V H W"]


def config_key(config: SynthConfig) -> str:
    """A short stable hash of every field of ``config``."""
    return digest(asdict(config))


class SceneBank:
    """``bank[seed]``: the room of a training seed, from the disk cache or rendered (and cached) on a miss."""

    def __init__(self, config: SynthConfig, root: Path | None = None) -> None:
        self.config = config
        self.folder = (root or default_bank_root()) / config_key(config)

    def path(self, seed: int) -> Path:
        return self.folder / f"{seed}.npz"

    def __getitem__(self, seed: int) -> BankedScene:
        path = self.path(training_seed(seed))
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    return BankedScene(**{k: data[k] for k in BankedScene.__dataclass_fields__})
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file: render the room again and overwrite it
        scene = self._render(seed)
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp, tmp.open("wb") as f:
            np.savez(f, **{k: getattr(scene, k) for k in BankedScene.__dataclass_fields__})
        return scene

    def _render(self, seed: int) -> BankedScene:
        from panst3r_splat.pipeline.datasets.synth import generate_scene

        s = generate_scene(self.config, seed)
        return BankedScene(images=s.images, depth=s.depth.astype(np.float32), K=np.asarray(s.K, dtype=np.float64),
                           T_world_cam=s.T_world_cam, semantics=s.semantics, instances=s.instances)
