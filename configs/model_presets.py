"""Named architectures of our own models (the official ones come from their checkpoints)."""

from __future__ import annotations

from panst3r_splat.core.model.config import small_config

MODEL_PRESETS = {"builtin_small": small_config}
"""`train-model` presets refer to these names; the built-in model is `builtin_small`."""
