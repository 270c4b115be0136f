"""The descriptor head of the built-in v2 model: shapes, activation, inference output, config and checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from panst3r_splat.core.checkpoint import load_own_checkpoint, save_checkpoint
from panst3r_splat.core.model import (
    InferenceOptions,
    PanSt3R,
    PortraitHandling,
    activate_descriptors,
    config_from_dict,
    config_to_dict,
    official_v1_config,
    official_v2_config,
    small_v2_config,
)
from panst3r_splat.core.class_sets import builtin_class_set


@pytest.fixture(scope="module")
def model() -> PanSt3R:
    torch.manual_seed(0)
    return PanSt3R(small_v2_config()).eval()


@pytest.fixture(scope="module")
def class_embeddings() -> torch.Tensor:
    return torch.from_numpy(builtin_class_set(768).class_embeddings)


def test_training_forward_gives_a_descriptor_per_pixel(model: PanSt3R, class_embeddings: torch.Tensor) -> None:
    imgs = torch.rand(2, 3, 3, 48, 64) * 2 - 1
    out = model(imgs, class_embeddings)
    D = model.config.descriptor_head.dim
    assert out.descriptors_raw.shape == (2, 3, 48, 64, D + 1)
    desc, conf = activate_descriptors(out.descriptors_raw)
    torch.testing.assert_close(desc.norm(dim=-1), torch.ones(2, 3, 48, 64))
    assert bool((conf >= 1).all())
    out.descriptors_raw.sum().backward()  # gradients reach the trunk through the head
    assert model.must3r_decoder.feat_embed_enc_to_dec.weight.grad is not None


def test_inference_returns_descriptors_in_view_orientation(model: PanSt3R, class_embeddings: torch.Tensor) -> None:
    torch.manual_seed(1)
    land = torch.rand(3, 48, 64) * 2 - 1
    portrait = land.transpose(1, 2).contiguous()
    out = model.forward_inference([land, portrait], class_embeddings, InferenceOptions(progress=False))
    assert [tuple(d.shape) for d in out.descriptors] == [(48, 64, 24), (64, 48, 24)]
    assert [tuple(c.shape) for c in out.descriptor_conf] == [(48, 64), (64, 48)]
    rotated = model.forward_inference([land, portrait], class_embeddings,
                                      InferenceOptions(progress=False, portrait=PortraitHandling.ROTATE))
    assert [tuple(d.shape) for d in rotated.descriptors] == [(48, 64, 24), (64, 48, 24)]
    # The landscape view is fed as is both times, but with another memory: its descriptors still differ from the
    # portrait's and stay normalised.
    torch.testing.assert_close(rotated.descriptors[1].norm(dim=-1), torch.ones(64, 48))


def test_official_architectures_have_no_descriptor_head(class_embeddings: torch.Tensor) -> None:
    for make in (official_v1_config, official_v2_config):
        assert make().descriptor_head is None
        with torch.device("meta"):
            keys = PanSt3R(make()).state_dict()
        assert not any(k.startswith("descriptor_head.") for k in keys)


def test_config_round_trip_and_width_check() -> None:
    cfg = small_v2_config()
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    bad = config_to_dict(cfg)
    bad["descriptor_head"]["input_dim"] += 1
    with pytest.raises(ValueError, match="descriptor_head.input_dim"):
        config_from_dict(bad)


def test_checkpoint_round_trip_keeps_the_head(tmp_path: Path, model: PanSt3R, class_embeddings) -> None:
    path = tmp_path / "m.safetensors"
    names = builtin_class_set(768).class_names
    save_checkpoint(path, model, class_names=names, class_embeddings=class_embeddings, dtype=torch.float32,
                    metadata={"camera_source": "matches"})
    loaded = load_own_checkpoint(path)
    assert loaded.metadata["camera_source"] == "matches"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_v2_parameter_budget() -> None:
    """Under 9 M parameters: the fp16 checkpoint and the run's compact resume file stay under 20 MB."""
    with torch.device("meta"):
        n = sum(p.numel() for p in PanSt3R(small_v2_config()).parameters())
    assert 8e6 < n < 9e6 and 2 * n < 20e6
