"""PanSt3R architecture: MUSt3R encoder/decoder with memory, DINOv2 branch, v1/v2 heads, mask transformer.

Public API: :class:`PanSt3R` (training forward and ``forward_inference``), :class:`PanSt3RConfig` and its presets,
the typed outputs and :func:`activate_pointmaps`, and the keyframe policies.
"""

from panst3r_splat.core.model.config import (
    DecoderConfig,
    DescriptorHeadConfig,
    DinoConfig,
    EncoderConfig,
    InputMixerConfig,
    LoftUpConfig,
    MaskTransformerConfig,
    PanSt3RConfig,
    PixelShuffleConfig,
    config_from_dict,
    config_to_dict,
    official_v1_config,
    official_v2_config,
    small_config,
    small_v2_config,
)
from panst3r_splat.core.model.keyframes import (
    AllKeyframes,
    FarthestPointKeyframes,
    KeyframePolicy,
    LinspaceKeyframes,
    default_keyframe_policy,
)
from panst3r_splat.core.model.outputs import (
    AuxPrediction,
    InferenceOutput,
    PanopticOutput,
    TrainingOutput,
    activate_descriptors,
    activate_pointmaps,
)
from panst3r_splat.core.model.panst3r import InferenceOptions, PanSt3R, PortraitHandling

__all__ = [
    "AllKeyframes",
    "AuxPrediction",
    "DecoderConfig",
    "DescriptorHeadConfig",
    "DinoConfig",
    "EncoderConfig",
    "FarthestPointKeyframes",
    "InferenceOptions",
    "InferenceOutput",
    "InputMixerConfig",
    "KeyframePolicy",
    "LinspaceKeyframes",
    "LoftUpConfig",
    "MaskTransformerConfig",
    "PanSt3R",
    "PanSt3RConfig",
    "PanopticOutput",
    "PixelShuffleConfig",
    "PortraitHandling",
    "TrainingOutput",
    "activate_descriptors",
    "activate_pointmaps",
    "config_from_dict",
    "config_to_dict",
    "default_keyframe_policy",
    "official_v1_config",
    "official_v2_config",
    "small_config",
    "small_v2_config",
]
