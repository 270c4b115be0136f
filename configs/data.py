"""Which scenes a training run of our own model sees (`pipeline/training/data.py` draws the samples)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from panst3r_splat.configs.synth import SynthConfig


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
    sampling: Literal["window", "bank"] = "window"
    """How samples are drawn (module docstring)."""
    bank_start: int = 32
    """``"bank"``: rooms in the bank at sample 0."""
    bank_growth: float = 0.05
    """``"bank"``: rooms added to the bank per sample (its rendering cost per sample is this times one room's)."""
    bank_max: int = 50_000
    """``"bank"``: largest bank."""
    low_res: tuple[int, int] | None = None
    """``"bank"``: (width, height) that a share of the batches is downsampled to (None: never)."""
    low_res_probability: float = 0.0
    """``"bank"``: share of the batches shown at ``low_res``."""
    descriptor_queries: int = 0
    """``"bank"``: query pixels per view whose ground-truth counterparts in the other views the data worker finds
    ahead for the descriptor loss (0: the criterion does it, on the training process)."""

    def scene_config(self) -> SynthConfig:
        return replace(self.synth, train_views=self.scene_views, test_views=0, width=self.width, height=self.height,
                       arc_deg=self.arc_deg)
