"""Load the SigLIP text tower and tokenizer from a local Hugging Face model folder (no hub, no transformers).

The folder is what ``save_pretrained`` writes (e.g. a download of ``google/siglip-base-patch16-224``):

- ``config.json``, read as JSON only: a full ``SiglipConfig`` (its ``text_config`` section; missing fields take the
  ``SiglipTextConfig`` defaults, as the official config lists none) or a bare ``siglip_text_model`` config;
- ``model.safetensors``: only ``text_model.*`` is read (the vision tower of a full checkpoint is skipped); a bare
  text model's keys may also come without the prefix (transformers 5). Loading is strict: missing, unexpected or
  mis-shaped keys are an error that lists them. Pickled weights (``pytorch_model.bin``, ...) are refused;
- ``spiece.model`` and, optionally, ``tokenizer_config.json`` / ``special_tokens_map.json``.

Every problem raises `SiglipFolderError` with a message that names the file and what to do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from panst3r_splat.core.text.siglip_model import SiglipTextConfig, SiglipTextTransformer
from panst3r_splat.core.text.siglip_tokenizer import SiglipTokenizer, SiglipTokenizerConfig

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
SPIECE_FILE = "spiece.model"
TEXT_PREFIX = "text_model."
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_IGNORED_KEYS = frozenset({"embeddings.position_ids"})  # a non-persistent buffer some old exports still carry
_LISTED = 8  # keys named in an error message


class SiglipFolderError(ValueError):
    """A SigLIP model folder cannot be used (missing or unreadable file, unsupported model, weights that do not fit)."""


@dataclass(frozen=True)
class SiglipText:
    """The SigLIP text tower of a folder, ready to embed texts."""

    tokenizer: SiglipTokenizer
    model: SiglipTextTransformer
    """In eval mode, float32, on the device it was loaded to."""
    folder: Path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SiglipFolderError(f"cannot read {path}: {err}; it must be the JSON file save_pretrained writes") from None
    if not isinstance(data, dict):
        raise SiglipFolderError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_text_config(folder: Path) -> tuple[SiglipTextConfig, bool]:
    """The text tower's sizes from ``config.json``, and whether it is a bare text-model config."""
    path = folder / "config.json"
    if not path.is_file():
        raise SiglipFolderError(f"{folder} has no config.json: give a SigLIP model folder as save_pretrained writes it "
                                "(config.json, model.safetensors, spiece.model)")
    data = _read_json(path)
    model_type = data.get("model_type")
    bare = "text_config" not in data and model_type in (None, "siglip_text_model")
    if not bare and model_type not in (None, "siglip"):
        raise SiglipFolderError(f"{path} describes a {model_type!r} model; a SigLIP folder is needed (model_type "
                                "'siglip' or 'siglip_text_model', e.g. google/siglip-base-patch16-224)")
    text = data if bare else (data.get("text_config") or {})
    if not isinstance(text, dict) or text.get("model_type", "siglip_text_model") != "siglip_text_model":
        raise SiglipFolderError(f"{path}: text_config is not a SigLIP text config ({text!r:.80})")
    known = {f.name for f in fields(SiglipTextConfig)}
    try:
        return SiglipTextConfig(**{k: v for k, v in text.items() if k in known}), bare
    except (TypeError, ValueError) as err:
        raise SiglipFolderError(f"{path}: {err}") from None


def _token(value: Any) -> str | None:
    """A special token as tokenizer files store it: a string or an AddedToken dict with ``content``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def read_tokenizer_config(folder: Path) -> SiglipTokenizerConfig:
    """``tokenizer_config.json`` (special tokens also from ``special_tokens_map.json``), else the defaults."""
    settings: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the latter wins, as in transformers
        if (folder / name).is_file():
            settings.update(_read_json(folder / name))
    defaults = SiglipTokenizerConfig()
    tokens = {name: _token(settings.get(name)) or getattr(defaults, name)
              for name in ("eos_token", "pad_token", "unk_token")}
    input_names = settings.get("model_input_names", ["input_ids", "attention_mask"])
    max_length = settings.get("model_max_length", defaults.model_max_length)
    if not isinstance(max_length, int) or max_length < 2:
        raise SiglipFolderError(f"{folder}/tokenizer_config.json: model_max_length must be an integer >= 2, got "
                                f"{max_length!r} (SigLIP pads every text to 64 tokens)")
    return SiglipTokenizerConfig(do_lower_case=bool(settings.get("do_lower_case", True)), model_max_length=max_length,
                                 return_attention_mask="attention_mask" in input_names, **tokens)


def _weights_file(folder: Path) -> Path:
    path = folder / WEIGHTS_FILE
    if path.is_file():
        return path
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise SiglipFolderError(f"{folder} has only pickled weights ({', '.join(pickles)}), which are never loaded "
                                f"(unpickling runs code); convert them to {WEIGHTS_FILE} (transformers: "
                                "save_pretrained(..., safe_serialization=True))")
    if (folder / f"{WEIGHTS_FILE}.index.json").is_file():
        raise SiglipFolderError(f"{folder} holds sharded weights; merge them into one {WEIGHTS_FILE}")
    raise SiglipFolderError(f"{folder} has no {WEIGHTS_FILE}: give a SigLIP model folder with its weights")


def _named(keys: set[str]) -> str:
    listed = ", ".join(sorted(keys)[:_LISTED])
    return listed + (f" (+{len(keys) - _LISTED} more)" if len(keys) > _LISTED else "")


def read_text_weights(path: Path, bare: bool) -> dict[str, torch.Tensor]:
    """The text tower's tensors from a safetensors file, keys without ``text_model.``, float32."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            names = {k: k[len(TEXT_PREFIX):] for k in keys if k.startswith(TEXT_PREFIX)}
            if not names and bare:
                names = {k: k for k in keys}
            if not names:
                raise SiglipFolderError(f"{path} holds no {TEXT_PREFIX}* weights; is it a SigLIP checkpoint?")
            tensors = {name: f.get_tensor(key) for key, name in names.items() if name not in _IGNORED_KEYS}
    except (SafetensorError, OSError) as err:
        raise SiglipFolderError(f"cannot read {path}: {err}; re-download or re-save the model") from None
    not_float = sorted(k for k, t in tensors.items() if not t.is_floating_point())
    if not_float:
        raise SiglipFolderError(f"{path}: non-float tensors {_named(set(not_float))}")
    return {k: t.float() for k, t in tensors.items()}


def build_text_model(config: SiglipTextConfig, weights: dict[str, torch.Tensor], source: Path) -> SiglipTextTransformer:
    """The text tower with ``weights`` loaded strictly (every key present, none extra, every shape right)."""
    model = SiglipTextTransformer(config)
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(weights), set(weights) - set(expected)
    if missing or unexpected:
        parts = ([f"missing {_named(missing)}"] if missing else []) + (
            [f"unexpected {_named(unexpected)}"] if unexpected else [])
        raise SiglipFolderError(f"{source}: the text weights do not match a SigLIP text tower of config.json's sizes: "
                                f"{'; '.join(parts)}")
    wrong = {f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if weights[k].shape != v.shape}
    if wrong:
        raise SiglipFolderError(f"{source}: weight shapes (file vs config.json) disagree: {_named(wrong)}; the "
                                "config.json does not describe these weights")
    model.load_state_dict(weights, strict=True)
    return model.eval()


def load_siglip_text(folder: str | Path, device: torch.device | str = "cpu") -> SiglipText:
    """Tokenizer and text tower of a local SigLIP folder (see the module docstring); `SiglipFolderError` if unusable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SiglipFolderError(f"SigLIP folder {folder} not found: give a local copy of a SigLIP model "
                                "(e.g. google/siglip-base-patch16-224: config.json, model.safetensors, spiece.model)")
    config, bare = read_text_config(folder)
    if not (folder / SPIECE_FILE).is_file():
        raise SiglipFolderError(f"{folder} has no {SPIECE_FILE} (the SigLIP sentencepiece tokenizer); copy it from "
                                "the same model")
    tok_config = read_tokenizer_config(folder)
    if tok_config.model_max_length > config.max_position_embeddings:
        raise SiglipFolderError(f"{folder}: model_max_length {tok_config.model_max_length} exceeds the model's "
                                f"max_position_embeddings {config.max_position_embeddings}")
    try:
        tokenizer = SiglipTokenizer(folder / SPIECE_FILE, tok_config)
    except ValueError as err:
        raise SiglipFolderError(str(err)) from None
    if tokenizer.sp.GetPieceSize() > config.vocab_size:
        raise SiglipFolderError(f"{folder}: {SPIECE_FILE} has {tokenizer.sp.GetPieceSize()} pieces but the model only "
                                f"{config.vocab_size} token embeddings; tokenizer and weights come from different "
                                "models")
    path = _weights_file(folder)
    model = build_text_model(config, read_text_weights(path, bare), path).to(device)
    log.info("SigLIP text tower: %s (%d layers, %d-d output)", folder, config.num_hidden_layers, config.output_size)
    return SiglipText(tokenizer=tokenizer, model=model, folder=folder)
