"""Synthetic indoor scenes with exact multi-view panoptic ground truth (`panst3r-splat synth`).

    scene = generate_scene(SynthConfig(), seed=0)   # in memory: images, depth, K, T_world_cam, labels
    write_scene(scene, "out/scene0")                # Panoptic Lifting layout + scene.json
    write_images(scene, "out/images")               # the training views only, as a user would have them

Seeds from `HELD_OUT_SEED_START` up are reserved for evaluation scenes; training data must use `training_seed`.
"""

from panst3r_splat.configs.synth import (
    HELD_OUT_SEED_START,
    TRAINING_PRESET,
    SynthConfig,
    training_seed,
    with_views,
)
from panst3r_splat.pipeline.datasets.synth.scene import (
    SCENE_JSON,
    SynthScene,
    as_panoptic_lifting,
    generate_scene,
    write_images,
    write_scene,
)

__all__ = [
    "HELD_OUT_SEED_START", "SCENE_JSON", "TRAINING_PRESET", "SynthConfig", "SynthScene", "as_panoptic_lifting",
    "generate_scene", "training_seed", "with_views", "write_images", "write_scene",
]
