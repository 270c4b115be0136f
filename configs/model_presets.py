"""Named architectures of our own models (the official ones come from their checkpoints)."""

from __future__ import annotations

from panst3r_splat.core.model.config import small_config, small_v2_config

MODEL_PRESETS = {"builtin_small": small_config, "builtin_v2": small_v2_config}
"""`train-model` presets refer to these names: `builtin_small` (v1 head, the first built-in model) and `builtin_v2`
(v2 mask head and dense descriptors, the second)."""
