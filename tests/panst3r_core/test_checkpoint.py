"""Checkpoint loading is safe (nothing from a file is executed) and strict (weights must fit exactly).

Malicious and malformed files are built in a temporary folder from the official_tiny_v1 fixture; every refusal must
be a single-line :class:`CheckpointError`, and a marker file that the payload would create must not appear.
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from _fixtures import PARITY_FIXTURE

from panst3r_splat.core.checkpoint import (
    CheckpointError,
    config_from_official_args,
    load_checkpoint,
    parse_constructor,
    save_checkpoint,
)
from panst3r_splat.core.model import PanSt3R
from panst3r_splat.core.model.config import (
    DINOV2_PRESETS,
    DecoderConfig,
    DinoConfig,
    EncoderConfig,
    LoftUpConfig,
    MaskTransformerConfig,
    PanSt3RConfig,
    PixelShuffleConfig,
)

#: The parity fixture (a copy of the official code's outputs kept with the tests).
FIXTURE = PARITY_FIXTURE


class _Payload:
    """Pickles as a call to os.system that would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def official() -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(FIXTURE / "checkpoint.pth", map_location="cpu", weights_only=True)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A folder holding the fixture's DINOv2 config next to where the test checkpoints are written."""
    shutil.copytree(FIXTURE / "dinov2_tiny", tmp_path / "dinov2_tiny")
    return tmp_path


def _refused(path: Path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message, "refusals must be one line"
    return message


# -- the official format ---------------------------------------------------------------------------------------------


def test_official_fixture_loads_with_its_architecture() -> None:
    loaded = load_checkpoint(FIXTURE / "checkpoint.pth")
    cfg = loaded.config
    assert loaded.format == "official"
    assert (cfg.encoder.embed_dim, cfg.encoder.depth, cfg.encoder.num_heads) == (64, 2, 4)
    assert (cfg.decoder.embed_dim, cfg.decoder.depth, cfg.decoder.feedback) == (48, 2, "single_mlp")
    assert (cfg.dino.hidden_size, cfg.dino.image_size, cfg.dino.patch_size) == (64, 70, 14)
    assert cfg.mask_transformer.num_queries == 8 and cfg.mask_transformer.lang_dim == 768
    assert cfg.upscaler.fp_dim == (48, 32, 24, 16)
    assert cfg.postprocess_default == "qubo" and loaded.metadata["postprocess_default"] == "qubo"
    assert sum(p.numel() for p in loaded.model.parameters()) == 974209
    params = list(loaded.model.parameters())
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 and p.requires_grad for p in params)
    with torch.no_grad():  # weights are private copies (the read-only fixture file is memory-mapped copy-on-write)
        params[0].add_(1.0)
    assert not torch.equal(params[0], load_checkpoint(FIXTURE / "checkpoint.pth").model.state_dict()[
        "must3r_encoder.patch_embed.proj.weight"])


def test_pickle_that_runs_code_is_refused(official: dict, workdir: Path) -> None:
    marker = workdir / "PWNED"
    bad = dict(official, extra=_Payload(marker))
    torch.save(bad, workdir / "evil.pth")
    message = _refused(workdir / "evil.pth", "refused to load")
    assert "system" in message
    assert not marker.exists()


def test_raw_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    with (tmp_path / "evil.pkl").open("wb") as f:
        pickle.dump({"weights": _Payload(marker)}, f)
    _refused(tmp_path / "evil.pkl", "refused to load|cannot read")
    assert not marker.exists()


@pytest.mark.parametrize(
    "field,source",
    [
        ("must3r_encoder", "__import__('os').system('touch {marker}')"),
        ("must3r_encoder", "Dust3rEncoder(embed_dim=__import__('os').system('touch {marker}'))"),
        ("panoptic_decoder", "PanopticDecoder(upscaler=os.system('touch {marker}'))"),
        ("dino_encoder", "DinoV2Encoder(dino_model=(lambda: __import__('os').system('touch {marker}'))())"),
        ("must3r_decoder", "eval(\"__import__('os').system('touch {marker}')\")"),
    ],
)
def test_args_strings_that_call_code_are_refused(official: dict, workdir: Path, field: str, source: str) -> None:
    marker = workdir / "PWNED"
    bad = copy.copy(official)
    bad["args"] = copy.copy(official["args"])
    setattr(bad["args"], field, source.format(marker=marker))
    torch.save(bad, workdir / "evil_args.pth")
    message = _refused(workdir / "evil_args.pth", f"args.{field}")
    assert "refused" in message or "not a literal" in message
    assert not marker.exists()


def test_wrong_shape_is_refused(official: dict, workdir: Path) -> None:
    bad = dict(official, weights=dict(official["weights"]))
    key = "must3r_decoder.head_dec.proj.weight"
    bad["weights"][key] = torch.zeros(1792, 47)
    torch.save(bad, workdir / "shape.pth")
    message = _refused(workdir / "shape.pth", "wrong shapes")
    assert key in message and "(1792, 47)" in message


def test_missing_and_unexpected_keys_are_refused(official: dict, workdir: Path) -> None:
    missing = dict(official, weights=dict(official["weights"]))
    del missing["weights"]["panoptic_decoder.mask_transformer.cls_logit_scale"]
    torch.save(missing, workdir / "missing.pth")
    message = _refused(workdir / "missing.pth", "1 missing keys")
    assert "cls_logit_scale" in message
    extra = dict(official, weights=dict(official["weights"]))
    extra["weights"]["panoptic_decoder.nocls_token"] = torch.zeros(768)
    torch.save(extra, workdir / "extra.pth")
    _refused(workdir / "extra.pth", "1 unexpected keys.*nocls_token")


def test_transformers4_dino_names_load_to_the_same_model(official: dict, workdir: Path) -> None:
    renames = {"q_proj": "attention.query", "k_proj": "attention.key", "v_proj": "attention.value",
               "o_proj": "output.dense"}
    weights = {}
    for key, value in official["weights"].items():
        for new, old in renames.items():
            key = key.replace(f".attention.{new}.", f".attention.{old}.")
        weights[key] = value
    assert any(".attention.attention.query." in k for k in weights)
    torch.save(dict(official, weights=weights), workdir / "v4.pth")
    loaded = load_checkpoint(workdir / "v4.pth")
    reference = load_checkpoint(FIXTURE / "checkpoint.pth")
    for key, value in reference.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_unknown_dino_folder_is_refused(official: dict, tmp_path: Path) -> None:
    torch.save(official, tmp_path / "no_dino.pth")  # no dinov2_tiny/ next to it, nor in the working directory
    message = _refused(tmp_path / "no_dino.pth", "dinov2_tiny")
    assert "config.json" in message


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    _refused(tmp_path / "junk.pth", "cannot read|refused to load")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    _refused(tmp_path / "other.pth", "not an official PanSt3R checkpoint")
    _refused(tmp_path / "absent.pth", "does not exist")


# -- constructor-string parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source,match",
    [
        ("Dust3rEncoder(16)", "positional"),
        ("Dust3rEncoder(norm_layer=nn.LayerNorm)", "no accepted argument"),
        ("Dust3rEncoder(embed_dim=2**10)", "not a literal"),
        ("MUSt3R(depth=2)", "refused"),
        ("os.path.join('a')", "refused"),
        ("Dust3rEncoder(", "not a constructor call"),
    ],
)
def test_parse_constructor_refuses_non_literals(source: str, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        parse_constructor(source, {"Dust3rEncoder"}, "must3r_encoder")


def test_official_v2_strings_map_to_the_v2_architecture() -> None:
    """The constructor strings the official configs produce (method.md 2.2) build the released architectures."""
    args = argparse.Namespace(
        must3r_encoder="Dust3rEncoder(img_size=[512, 512], patch_embed='PatchEmbedDust3R')",
        must3r_decoder="MUSt3R(img_size=[512, 512], feedback_type='single_mlp', memory_mode='norm_y')",
        dino_encoder="DinoV2Encoder()",
        panoptic_decoder=(
            "PanopticDecoder(input_mixer=InputMixer(img_size=[512, 512], patch_size=16, in_dim=2816, hidden_dim=768, "
            "num_heads=12, num_layers=3, ff_dim_mult=4), upscaler=LoftUpUpscaler(input_dim=768, dim=384, "
            "output_stride=2, patch_size=16), mask_dim=384, label_mode='sigmoid', text_encoder='siglip')"
        ),
    )
    cfg = config_from_official_args(args)
    assert isinstance(cfg.upscaler, LoftUpConfig) and cfg.input_mixer is not None
    assert cfg.dino.hidden_size == DINOV2_PRESETS["facebook/dinov2-large"].hidden_size
    assert cfg.image_size == 512 and cfg.postprocess_default == "standard_v2"
    assert cfg.mask_transformer.mask_dim == 384
    with torch.device("meta"):
        model = PanSt3R(cfg)
    assert len(model.state_dict()) == 1244  # method.md 1.11: 1244 tensors, 805.6 M parameters
    assert round(sum(p.numel() for p in model.parameters()) / 1e5) == 8056


# -- our own format ---------------------------------------------------------------------------------------------------


def tiny_config() -> PanSt3RConfig:
    """The fixture's sizes, orientation-consistent: about one million parameters."""
    return PanSt3RConfig(
        encoder=EncoderConfig(embed_dim=64, depth=2, num_heads=4),
        decoder=DecoderConfig(enc_embed_dim=64, embed_dim=48, depth=2, num_heads=4, landscape_only=False),
        dino=DinoConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=70,
                        landscape_only=False),
        upscaler=PixelShuffleConfig(input_dim=176, fp_dim=(48, 32, 24, 16)),
        mask_transformer=MaskTransformerConfig(fpn_dim=48, hidden_dim=48, mask_dim=16, ff_dim=96, num_queries=8,
                                               num_heads=4, dec_layers=2, landscape_only=False),
    )


def _tiny_own_model() -> PanSt3R:
    cfg = tiny_config()
    torch.manual_seed(0)
    model = PanSt3R(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def test_own_format_round_trip(tmp_path: Path) -> None:
    model = _tiny_own_model()
    names = ["wall", "floor", "chair"]
    emb = torch.nn.functional.normalize(torch.randn(3, model.config.mask_transformer.lang_dim), dim=-1)
    save_checkpoint(tmp_path / "m.safetensors", model, class_names=names, class_embeddings=emb,
                    metadata={"note": "test"})
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.format == "panst3r_splat"
    assert loaded.config == model.config
    assert loaded.class_names == tuple(names)
    assert torch.equal(loaded.class_embeddings, emb)
    assert loaded.metadata["note"] == "test"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_own_format_half_precision_loads_as_float32(tmp_path: Path) -> None:
    model = _tiny_own_model()
    save_checkpoint(tmp_path / "h.safetensors", model, dtype=torch.float16)
    loaded = load_checkpoint(tmp_path / "h.safetensors")
    assert loaded.class_names is None
    for key, value in model.state_dict().items():
        got = loaded.model.state_dict()[key]
        assert got.dtype == value.dtype
        torch.testing.assert_close(got, value.to(torch.float16).to(value.dtype), atol=0, rtol=0)


def test_own_format_with_foreign_weights_is_refused(tmp_path: Path) -> None:
    model = _tiny_own_model()
    save_checkpoint(tmp_path / "m.safetensors", model)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(tmp_path / "m.safetensors"))
    tensors["must3r_encoder.norm_enc.weight"] = torch.zeros(7)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    _refused(tmp_path / "bad.safetensors", "wrong shapes.*norm_enc")
    save_file(tensors, str(tmp_path / "nometa.safetensors"))
    _refused(tmp_path / "nometa.safetensors", "format")
