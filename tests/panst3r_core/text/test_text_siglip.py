"""SigLIP class embeddings from a local folder against Hugging Face transformers, on the tiny committed fixture.

``tests/data/siglip_tiny`` is a random 2-layer SigLIP (full ``SiglipModel``: text and vision towers) with a tiny
sentencepiece model; ``expected.json`` holds what transformers' ``SiglipTokenizer`` and ``SiglipTextModel`` give for
its texts (see that folder's README). Tolerances: ids exact; pooler outputs 1e-5 (float32, same operations).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from panst3r_splat.core.text import (
    SIGLIP_PROMPT,
    SiglipFolderError,
    SiglipTextConfig,
    embed_texts,
    format_prompts,
    load_siglip_text,
    siglip_class_embeddings,
)
from panst3r_splat.core.text.siglip_tokenizer import canonicalize_text

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "siglip_tiny"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
ATOL = 1e-5


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "siglip"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py", "*.md", "expected.json"))
    return folder


def _names() -> list[str]:
    """The fixture's class names the embedding function accepts (not the empty one)."""
    return [n for n in EXPECTED["names"] if n.strip()]


def _normalised(rows: list[list[float]]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------------- parity


def test_tokenizer_ids_equal_transformers() -> None:
    text = load_siglip_text(FIXTURE)
    input_ids, attention_mask = text.tokenizer(EXPECTED["texts"])
    assert input_ids.shape == (len(EXPECTED["texts"]), 64)
    for row, (ours, theirs) in enumerate(zip(input_ids.tolist(), EXPECTED["input_ids"])):
        assert ours == theirs, EXPECTED["texts"][row]
    assert attention_mask.tolist() == EXPECTED["attention_mask"]


def test_tokenizer_truncates_pads_and_ends_with_eos() -> None:
    tok = load_siglip_text(FIXTURE).tokenizer
    long_row = EXPECTED["texts"].index(SIGLIP_PROMPT.format(EXPECTED["names"][-1]))
    ids = tok.encode(EXPECTED["texts"][long_row])
    assert len(ids) == 64 and ids[-1] == tok.eos_id  # truncated to 63 pieces + </s>
    short = tok.encode("This is a photo of chair.")
    padded, mask = tok(["This is a photo of chair."])
    assert padded[0, : len(short)].tolist() == short and (padded[0, len(short):] == tok.pad_id).all()
    assert mask[0].sum() == len(short)


def test_canonicalisation() -> None:
    assert canonicalize_text("  Kitchen-Cabinet (open)!\t x ", do_lower_case=True) == "kitchencabinet open x"
    assert canonicalize_text("A, B.", do_lower_case=False) == "A B"


def test_pooler_outputs_equal_transformers() -> None:
    text = load_siglip_text(FIXTURE)
    input_ids, attention_mask = text.tokenizer(EXPECTED["texts"])
    with torch.no_grad():
        pooled = text.model(torch.from_numpy(input_ids))
        pooled_masked = text.model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
    np.testing.assert_allclose(pooled.numpy(), EXPECTED["pooler_output"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(pooled_masked.numpy(), EXPECTED["pooler_output_masked"], atol=ATOL, rtol=0)
    assert np.abs(pooled.numpy() - pooled_masked.numpy()).max() > 1e-2  # the mask matters: the test can tell


def test_class_embeddings_are_the_normalised_pooler_outputs() -> None:
    names = _names()
    rows = [EXPECTED["names"].index(n) for n in names]  # transformers saw the names unstripped: same ids
    emb = siglip_class_embeddings(FIXTURE, names, batch_size=4)
    assert emb.dtype == np.float32 and emb.shape == (len(names), 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    expected = _normalised([EXPECTED["pooler_output"][r] for r in rows])
    np.testing.assert_allclose(emb, expected, atol=ATOL, rtol=0)
    # Batching does not change the result.
    np.testing.assert_allclose(siglip_class_embeddings(FIXTURE, names, batch_size=64), emb, atol=1e-6, rtol=0)


def test_attention_mask_follows_the_tokenizer_config(tmp_path: Path) -> None:
    """A tokenizer that returns an attention mask (transformers' default) makes the model use it."""
    folder = _copy(tmp_path)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["model_input_names"] = ["input_ids", "attention_mask"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    text = load_siglip_text(folder)
    assert text.tokenizer.config.return_attention_mask
    got = embed_texts(text, EXPECTED["texts"][:5]).numpy()
    np.testing.assert_allclose(got, _normalised(EXPECTED["pooler_output_masked"][:5]), atol=ATOL, rtol=0)


def test_bare_text_model_folder(tmp_path: Path) -> None:
    """A ``SiglipTextModel`` folder: bare text config, keys with or without the ``text_model.`` prefix."""
    full = json.loads((FIXTURE / "config.json").read_text())
    weights = {k: v for k, v in load_file(FIXTURE / "model.safetensors").items() if k.startswith("text_model.")}
    for prefix in ("text_model.", ""):
        folder = _copy(tmp_path / f"p{len(prefix)}")
        (folder / "config.json").write_text(json.dumps(full["text_config"]))
        save_file({prefix + k[len("text_model."):]: v for k, v in weights.items()}, folder / "model.safetensors")
        emb = siglip_class_embeddings(folder, ["chair"])
        np.testing.assert_allclose(emb[0], _normalised([EXPECTED["pooler_output"][4]])[0], atol=ATOL, rtol=0)


def test_config_defaults_are_siglip_base() -> None:
    config = SiglipTextConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.max_position_embeddings, config.output_size) == (
        768, 12, 64, 768)


# ------------------------------------------------------------------------------------------------------- errors


def _error(folder: Path) -> str:
    with pytest.raises(SiglipFolderError) as info:
        siglip_class_embeddings(folder, ["chair"])
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_missing_folder(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "absent")


def test_error_missing_spiece(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "spiece.model").unlink()
    assert "spiece.model" in _error(folder)


def test_error_pickle_only_weights(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    message = _error(folder)
    assert "pytorch_model.bin" in message and "model.safetensors" in message


def test_error_missing_and_unexpected_keys(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    weights = load_file(folder / "model.safetensors")
    del weights["text_model.encoder.layers.1.mlp.fc2.bias"]
    weights["text_model.encoder.layers.1.extra.weight"] = torch.zeros(2)
    save_file(weights, folder / "model.safetensors")
    message = _error(folder)
    assert "missing encoder.layers.1.mlp.fc2.bias" in message and "unexpected encoder.layers.1.extra.weight" in message


def test_error_shapes_disagree_with_config(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    message = _error(folder)
    assert "encoder.layers.0.mlp.fc1.weight (64, 32) vs (48, 32)" in message


def test_error_not_a_siglip_config(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "config.json").write_text(json.dumps({"model_type": "clip", "text_config": {}}))
    assert "'clip'" in _error(folder)
    (folder / "config.json").write_text("{not json")
    assert "config.json" in _error(folder)


def test_error_corrupt_weights(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "model.safetensors").write_bytes(b"garbage")
    assert "model.safetensors" in _error(folder)


def test_bad_names_and_prompts() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        format_prompts(["chair"], "a photo")
    with pytest.raises(ValueError, match="non-empty"):
        format_prompts(["chair", "  "])
    with pytest.raises(ValueError, match="special token"):
        siglip_class_embeddings(FIXTURE, ["chair </s>"])
