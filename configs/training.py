"""Training presets of our own PanSt3R (`panst3r-splat train-model --preset NAME`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from panst3r_splat.core.training.losses import PanopticCriterion
from panst3r_splat.configs.synth import SynthConfig
from panst3r_splat.configs.data import DataConfig

BALANCED_FLOOR_WEIGHTS = (
    ("table", 1.0), ("chair", 0.8), ("sofa", 1.2), ("bed", 1.2), ("cabinet", 1.0), ("counter", 1.0),
    ("shelves", 0.8), ("refrigerator", 1.2), ("toilet", 1.0), ("sink", 1.0), ("bag", 1.0), ("person", 1.0),
    ("lamp", 0.6), ("otherprop", 0.5),
)
"""Flatter floor-piece frequencies than the generator's defaults: bed, sofa and refrigerator appeared in only 4-6 of
24 sampled training pairs of the first model, which never predicted them (model_and_cameras_findings.md)."""

V2_SYNTH = SynthConfig(
    train_views=8, test_views=0, path="mixed", num_objects=(4, 10), texture_strength=0.45, ceiling_probability=0.9,
    floor_weights=BALANCED_FLOOR_WEIGHTS, ambient=(0.2, 0.6), light_strength=(0.3, 1.0), fov_deg=(50.0, 80.0),
    room_size_min=(3.2, 3.0, 2.4), room_size_max=(8.0, 6.5, 3.2), pattern_contrast=0.6,
)
"""Rooms of the second model's scene bank: balanced classes, wider lighting, field of view and room sizes."""


@dataclass(frozen=True)
class TrainPreset:
    """One training recipe: model, data, optimisation, bookkeeping."""

    model: str = "builtin_small"
    """Architecture preset (configs/model_presets.py)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Scenes the run sees."""
    criterion: PanopticCriterion = field(default_factory=lambda: PanopticCriterion(
        num_points=4096, pts_global_weight=4.0, pts_local_weight=2.0, pose_rotation_weight=4.0,
        pose_translation_weight=4.0, memory_pass_weight=1.0, correspondence_weight=1.0))
    """Loss weights: PanSt3R's panoptic weights as published; the geometry terms weighted up because here the
    MUSt3R backbone is trained from scratch together with the panoptic head (PanSt3R freezes a pretrained one), and
    the panoptic sum over 4 decoder layers would otherwise dominate the shared encoder's gradients by about 10:1.
    The geometry terms also supervise the memory pass's pointmaps (`memory_pass_weight`): with the render pass
    alone, 2,000 steps left the relative rotation exactly at the no-rotation baseline (the render pass treats the
    reference view like any other, so nothing tells it which frame to predict in until correspondence is learnt).
    The correspondence InfoNCE on the encoder and decoder tokens (`correspondence_weight`) stands in for the CroCo
    pre-training MUSt3R starts from: without it the global pointmap stayed a copy of the local one for 4,000 steps."""
    panoptic: bool = True
    """Train the panoptic head too (False: the MUSt3R geometry alone, DINOv2 and the panoptic decoder untouched, as
    PanSt3R starts from a trained MUSt3R)."""
    steps: int = 60_000
    """Total optimiser steps of the schedule (a run can stop earlier and resume)."""
    batch_size: int = 2
    """Scenes per step."""
    lr: float = 3e-4
    """Peak learning rate (AdamW)."""
    min_lr: float = 1e-6
    """Final learning rate of the cosine schedule."""
    warmup_steps: int = 1000
    """Linear warm-up from 0."""
    weight_decay: float = 0.05
    """AdamW weight decay (not on biases, norms, embeddings)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas (PanSt3R's)."""
    grad_clip: float = 1.0
    """Gradient norm clipping."""
    num_workers: int = 1
    """Data-loader processes rendering scenes."""
    log_every: int = 50
    """Steps between CSV log rows."""
    checkpoint_every: int = 500
    """Steps between checkpoints (model + resume file, written atomically)."""
    eval_every: int = 2000
    """Steps between held-out evaluations (geometry and segmentation metrics on unseen seeds)."""
    eval_scenes: int = 4
    """Held-out scenes per evaluation."""
    seed: int = 777
    """Initialisation and loss-sampling seed."""
    threads: int | None = None
    """Torch intra-op threads of the training process (None: torch's default). On 2 shared cores one thread is
    fastest: with a data worker busy beside it, 2-thread ops run many times slower."""
    checkpoint_minutes: float | None = None
    """Also checkpoint every this many minutes of wall time (a session may end without a signal)."""
    compact_resume: bool = False
    """Resume file with fp16 weights and no optimiser moments (small enough to live in the repository; AdamW's
    moments, with betas (0.9, 0.95), remember about 20 steps and restart from zero on a resume), instead of the
    bit-for-bit one (fp32 weights and moments)."""
    grad_share_every: int = 0
    """Every this many steps, log each loss term's gradient norm on the shared MUSt3R trunk (0: never)."""
    camera_source: str | None = None
    """``camera_source`` metadata of the checkpoints (which cameras ``predict --cameras auto`` uses)."""


_V2_DATA = DataConfig(views=4, scene_views=8, width=192, height=144, arc_deg=(120.0, 330.0), sampling="bank",
                      low_res=(128, 96), low_res_probability=0.75, descriptor_queries=256, synth=V2_SYNTH)
"""The second model's samples: 4 of 8 cameras of a banked room, 3 of 4 batches at 128x96."""
_V2_CRITERION = PanopticCriterion(num_points=4096, mask_weight=5.0, pts_global_weight=0.0, pts_local_weight=2.0,
                                  pose_rotation_weight=0.0, pose_translation_weight=0.0, memory_pass_weight=0.0,
                                  correspondence_weight=0.0, local_per_view=True, descriptor_weight=1.0)
"""The second model's losses: panoptic (mask BCE weight 5, not 20), per-view local pointmaps, descriptors."""

PRESETS: dict[str, TrainPreset] = {
    # 2 CPU cores: small batches, one data worker (the other core trains).
    "tiny": TrainPreset(data=DataConfig(views=3)),
    # 2 CPU cores, first stage: pairs of nearby views (6-23 degrees apart) so that cross-view geometry (the relative
    # pose between the memory's reference view and another) starts to learn before the wider windows of `tiny`; at
    # 128x96 (48 tokens a view, 2.2x cheaper than 192x144: the RoPE model is not tied to one size) for more steps.
    "pairs": TrainPreset(data=DataConfig(views=2, arc_deg=(40.0, 160.0), width=128, height=96), batch_size=4,
                         eval_every=500),
    # 2 CPU cores, the same pairs with the geometry losses only (no DINOv2 or panoptic decoder in the step): all of
    # the compute and gradient go to the cross-view geometry, as MUSt3R is trained before PanSt3R's head.
    "geometry": TrainPreset(data=DataConfig(views=2, arc_deg=(40.0, 160.0), width=128, height=96), batch_size=4,
                            eval_every=500, panoptic=False),
    # A CUDA GPU with many CPU cores for the scene rendering: bigger batches, same model and data.
    "gpu": TrainPreset(batch_size=8, num_workers=14, lr=4e-4, steps=40_000, log_every=50, checkpoint_every=1000,
                       eval_every=2000, warmup_steps=1000),
    # The second built-in model (builtin_v2), one stage from scratch on 2 CPU cores: 4 views from rooms rendered
    # like the evaluation's (8 cameras at 192x144 along orbits or sweeps), rooms mixed in every batch from a growing
    # bank, 3 of 4 batches downsampled to 128x96; geometry = per-view local pointmaps + dense descriptors (cameras
    # come from matches), the global-pointmap, pose and memory-pass terms off. docs/training/README.md says why.
    "v2": TrainPreset(
        model="builtin_v2", data=_V2_DATA, criterion=_V2_CRITERION,
        batch_size=2, steps=30_000, lr=3e-4, warmup_steps=500, grad_clip=50.0, num_workers=1, threads=1,
        log_every=50, checkpoint_every=500, checkpoint_minutes=10.0, eval_every=1000, eval_scenes=4,
        compact_resume=True, grad_share_every=100, camera_source="matches",
    ),
    # The v2 recipe on a CUDA machine with many CPU cores: batch 16, the bank grown by 14 data workers (one BLAS and
    # torch thread each); model, losses and schedule length as `v2`, so a run can move between a GPU and the CPUs with
    # --resume (sample indices follow step x batch, so a move replays or skips random draws, which is harmless).
    "v2_gpu": TrainPreset(
        model="builtin_v2",
        data=dataclasses.replace(_V2_DATA, bank_growth=0.25),
        criterion=_V2_CRITERION, batch_size=16, steps=30_000, lr=3e-4, warmup_steps=500, grad_clip=50.0,
        num_workers=14, threads=None, log_every=50, checkpoint_every=500, checkpoint_minutes=5.0, eval_every=1000,
        eval_scenes=4, compact_resume=True, grad_share_every=100, camera_source="matches",
    ),
    # A few steps: the smoke test of the training command.
    "smoke": TrainPreset(data=DataConfig(views=2, width=64, height=48), batch_size=1, steps=3, warmup_steps=1,
                         log_every=1, checkpoint_every=2, eval_every=1000, eval_scenes=1, num_workers=0,
                         criterion=PanopticCriterion(num_points=256, memory_pass_weight=1.0)),
    # A few steps of the v2 recipe (tests).
    "smoke_v2": TrainPreset(
        model="builtin_v2",
        data=DataConfig(views=3, scene_views=4, width=64, height=48, arc_deg=(40.0, 80.0), sampling="bank",
                        low_res=(32, 32), low_res_probability=0.5, bank_start=2, bank_growth=0.5, synth=V2_SYNTH),
        criterion=PanopticCriterion(num_points=256, pts_global_weight=0.0, pose_rotation_weight=0.0,
                                    pose_translation_weight=0.0, local_per_view=True, descriptor_weight=1.0,
                                    descriptor_queries=32),
        batch_size=2, steps=3, warmup_steps=1, log_every=1, checkpoint_every=2, eval_every=1000, eval_scenes=1,
        num_workers=0, threads=1, compact_resume=True, grad_share_every=1, camera_source="matches",
    ),
}


def get_preset(name: str) -> TrainPreset:
    """The preset called `name`, or a ValueError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown training preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None
