"""Named presets: every one is well-typed (built under the suite's checker), names a known model and a training data
setting the generator accepts; unknown names fail with the known ones listed; the held-out seed range is guarded."""

from __future__ import annotations

import dataclasses

import pytest

from panst3r_splat.configs.data import DataConfig
from panst3r_splat.configs.model_presets import MODEL_PRESETS
from panst3r_splat.configs.synth import HELD_OUT_SEED_START, TRAINING_PRESET, training_seed, with_views
from panst3r_splat.configs.training import PRESETS, TrainPreset, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_names_a_model_and_rebuilds_from_its_fields(name: str) -> None:
    preset = get_preset(name)
    assert isinstance(preset, TrainPreset) and preset.model in MODEL_PRESETS
    assert isinstance(preset.data, DataConfig) and preset.data.scene_config().width == preset.data.width
    assert dataclasses.replace(preset) == preset  # the constructor (checked) accepts its own fields


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known presets: .*smoke"):
        get_preset("nope")


def test_held_out_seeds_are_refused_for_training() -> None:
    assert training_seed(0) == 0 and training_seed(HELD_OUT_SEED_START - 1) == HELD_OUT_SEED_START - 1
    for seed in (-1, HELD_OUT_SEED_START):
        with pytest.raises(ValueError, match="held out"):
            training_seed(seed)


def test_with_views_changes_only_the_view_counts() -> None:
    config = with_views(TRAINING_PRESET, train_views=3, test_views=2)
    assert (config.train_views, config.test_views) == (3, 2)
    assert dataclasses.replace(config, train_views=TRAINING_PRESET.train_views, test_views=0) == TRAINING_PRESET
