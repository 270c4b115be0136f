"""Safe loading of PanSt3R checkpoints: the official ``.pth`` format and our own safetensors format.

Official format (panst3r/engine/io.py): a ``torch.save`` dict ``{'args': argparse.Namespace, 'weights': state_dict,
...}`` whose ``args`` carries the architecture as Python constructor strings that the official loader ``eval``s, and
which it loads with ``weights_only=False`` and ``strict=False``. Here instead:

- the file is read with ``torch.load(weights_only=True)`` allowing only ``argparse.Namespace`` (plus the numpy array
  reconstruction an optional retrieval entry may need); any other object in the pickle is refused before it is built;
- each constructor string is parsed with :mod:`ast` against an allow-list of the official class names, their
  keyword arguments and literal values, and mapped onto :class:`PanSt3RConfig`; nothing is evaluated;
- the DINOv2 model named in ``DinoV2Encoder(dino_model=...)`` resolves to a built-in config for the known
  ``facebook/dinov2-*`` ids, else to a folder (next to the checkpoint, then the working directory) whose
  ``config.json`` is read as JSON; the weights always come from the checkpoint;
- transformers 4.x DINOv2 key names are mapped to the 5.x names, then keys and shapes must match exactly; a mismatch
  is reported (counts and the first names) and the load stops.

Our own format: safetensors with the state_dict, the architecture (:func:`config_to_dict`) and the class set as JSON
metadata, and the class text embeddings as a tensor, so a checkpoint is self-describing and holds no code.

Every refusal raises :class:`CheckpointError` (a ValueError) with a one-line message saying what to do.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from panst3r_splat.core.model.config import (
    DINOV2_PRESETS,
    TEXT_ENCODER_DIMS,
    DecoderConfig,
    DinoConfig,
    EncoderConfig,
    InputMixerConfig,
    LoftUpConfig,
    MaskTransformerConfig,
    PanSt3RConfig,
    PixelShuffleConfig,
    config_from_dict,
    config_to_dict,
)
from panst3r_splat.core.model.dino import map_transformers4_keys
from panst3r_splat.core.model.panst3r import PanSt3R

logger = logging.getLogger(__name__)

#: ``format`` metadata value of our safetensors checkpoints.
FORMAT_NAME = "panst3r_splat"
FORMAT_VERSION = "1"
#: Tensor name of the class text embeddings in our format (outside the model's state_dict namespace).
CLASS_EMBEDDINGS_KEY = "_class_set.embeddings"
_MAX_REPORTED_KEYS = 5


class CheckpointError(ValueError):
    """A checkpoint was refused (unsafe content, unknown architecture, or weights that do not fit)."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint, with what the file says about its use."""

    model: PanSt3R
    """The model, weights loaded, in eval mode, on the CPU."""
    config: PanSt3RConfig
    """Its architecture."""
    format: str
    """``"official"`` or ``"panst3r_splat"``."""
    class_names: tuple[str, ...] | None
    """Class set shipped with the checkpoint (our format), else None."""
    class_embeddings: Tensor | None
    """``(K, lang_dim)`` text embeddings of ``class_names``, else None."""
    metadata: dict[str, str]
    """Other metadata (our format) or selected official ``args`` fields."""


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load an official ``.pth`` or one of our safetensors checkpoints (detected from the file's content)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file; pass the path of a .pth or .safetensors file")
    if _is_safetensors(path):
        return load_own_checkpoint(path)
    return load_official_checkpoint(path)


def load_official_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load an official PanSt3R checkpoint safely (see module docstring)."""
    path = Path(path)
    ckpt = _torch_load_restricted(path)
    if not isinstance(ckpt, dict) or "weights" not in ckpt or "args" not in ckpt:
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not an official PanSt3R checkpoint (expected a dict with 'args' and 'weights', found {found})"
        )
    args = ckpt["args"]
    if not isinstance(args, argparse.Namespace):
        raise CheckpointError(f"{path}: 'args' is a {type(args).__name__}, expected argparse.Namespace")
    config = config_from_official_args(args, checkpoint_dir=path.parent)
    if "retrieval" in ckpt:
        logger.info("%s carries a retrieval model; it is not used (keyframes come from our own policies)", path.name)
    weights = ckpt["weights"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in weights.items()):
        raise CheckpointError(f"{path}: 'weights' must map names to tensors")
    model = build_and_load(config, map_transformers4_keys(weights), source=str(path))
    meta = {k: str(getattr(args, k)) for k in ("postprocess_default", "qubo_enabled") if hasattr(args, k)}
    return LoadedCheckpoint(model, config, "official", None, None, meta)


def save_checkpoint(
    path: str | Path,
    model: PanSt3R,
    *,
    class_names: list[str] | tuple[str, ...] | None = None,
    class_embeddings: Tensor | None = None,
    dtype: torch.dtype | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``model`` in our safetensors format (architecture and class set as JSON metadata).

    Args:
        path: output file (conventionally ``.safetensors``).
        model: the model to save.
        class_names: class set shipped with the model (``K`` names), optional.
        class_embeddings: ``(K, lang_dim)`` text embeddings of ``class_names`` (required with them).
        dtype: store floating-point weights in this dtype (e.g. torch.float16 to halve the file); loads as float32.
        metadata: extra string metadata (e.g. training run information).
    """
    if (class_names is None) != (class_embeddings is None):
        raise ValueError("pass class_names and class_embeddings together (or neither)")
    if class_names is not None and class_embeddings is not None:
        lang_dim = model.config.mask_transformer.lang_dim
        if tuple(class_embeddings.shape) != (len(class_names), lang_dim):
            raise ValueError(
                f"class_embeddings shape {tuple(class_embeddings.shape)} != ({len(class_names)}, {lang_dim})"
            )
    tensors: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous().clone()
    meta = dict(metadata or {})
    reserved = {"format", "format_version", "architecture", "class_names"}
    if reserved & set(meta):
        raise ValueError(f"metadata keys {sorted(reserved & set(meta))} are reserved")
    meta.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, architecture=json.dumps(config_to_dict(model.config)))
    if class_names is not None and class_embeddings is not None:
        meta["class_names"] = json.dumps(list(class_names))
        tensors[CLASS_EMBEDDINGS_KEY] = class_embeddings.detach().float().cpu().contiguous()
    save_file(tensors, str(path), metadata=meta)


def load_own_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load one of our safetensors checkpoints."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"{path}: not a readable safetensors file ({_one_line(err)})") from err
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: safetensors file without format={FORMAT_NAME!r} metadata; not a panst3r-splat model")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta.get('format_version')!r} unsupported (expected {FORMAT_VERSION})")
    try:
        config = config_from_dict(json.loads(meta["architecture"]))
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid architecture metadata ({_one_line(err)})") from err
    class_embeddings = tensors.pop(CLASS_EMBEDDINGS_KEY, None)
    class_names = tuple(json.loads(meta["class_names"])) if "class_names" in meta else None
    if (class_names is None) != (class_embeddings is None) or (
        class_names is not None and class_embeddings is not None and len(class_names) != class_embeddings.shape[0]
    ):
        raise CheckpointError(f"{path}: class names and class embeddings do not match")
    model = build_and_load(config, tensors, source=str(path))
    extra = {k: v for k, v in meta.items() if k not in {"architecture", "class_names"}}
    return LoadedCheckpoint(model, config, FORMAT_NAME, class_names, class_embeddings, extra)


def build_and_load(config: PanSt3RConfig, state_dict: dict[str, Tensor], source: str) -> PanSt3R:
    """Build the model and load ``state_dict`` strictly; mismatches raise one :class:`CheckpointError` line.

    The model is built on the meta device (no random initialisation of hundreds of millions of weights that the
    checkpoint overwrites anyway) and takes the checkpoint's tensors as its parameters; it has no buffers outside its
    state_dict, so nothing stays on the meta device.
    """
    with torch.device("meta"):
        model = PanSt3R(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes ({_first(wrong)})")
    if problems:
        raise CheckpointError(
            f"{source}: weights do not fit the architecture its config describes: " + "; ".join(problems)
        )
    # assign=True adopts the loaded tensors as the parameters: no second copy of a 0.9 B-parameter model.
    weights = {k: v.to(device="cpu", dtype=torch.float32).contiguous() for k, v in state_dict.items()}
    model.load_state_dict(weights, strict=True, assign=True)
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------
# Restricted torch.load
# ----------------------------------------------------------------------------------------------------------------


def _numpy_array_globals() -> list[Any]:
    """numpy array reconstruction, under the names numpy 1.x and 2.x pickles use (an optional official retrieval
    entry stores arrays); the restricted unpickler still refuses everything else."""
    core = getattr(np, "_core", None) or np.core
    out: list[Any] = [np.ndarray, np.dtype]
    for name in ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"):
        out.append((core.multiarray._reconstruct, name))
    out.extend(type(np.dtype(t)) for t in ("float32", "float64", "float16", "int64", "int32", "uint8", "bool"))
    return out


def _torch_load_restricted(path: Path) -> Any:
    allowed = [argparse.Namespace, *_numpy_array_globals()]
    try:
        with torch.serialization.safe_globals(allowed):
            # Zip-format files are memory-mapped: tensors are paged in as the model takes them.
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {path}: it holds content other than tensors and argparse.Namespace "
            f"({_unpickling_reason(err)}); nothing from it was run, use a genuine official or panst3r-splat checkpoint"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, TypeError) as err:
        raise CheckpointError(f"cannot read {path} as a torch checkpoint ({_one_line(err)})") from err


def _unpickling_reason(err: BaseException) -> str:
    """The line of torch's restricted-unpickler message that names the refused content."""
    lines = [ln.strip() for ln in str(err).splitlines() if "nsupported" in ln and "weights_only" not in ln]
    return _one_line(ValueError(lines[0])) if lines else "unsupported pickle content"


def _is_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte little-endian header length followed by a JSON object."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size < path.stat().st_size


# ----------------------------------------------------------------------------------------------------------------
# Official constructor strings -> config
# ----------------------------------------------------------------------------------------------------------------

#: Keyword arguments each allowed constructor accepts, with the official defaults (None = no default needed).
_ALLOWED: dict[str, dict[str, Any]] = {
    "Dust3rEncoder": dict(
        img_size=(224, 224), patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4,
        patch_embed="PatchEmbedDust3R", pos_embed="RoPE100",
    ),
    "MUSt3R": dict(
        img_size=(224, 224), enc_embed_dim=1024, patch_size=16, embed_dim=768, output_dim=1792, depth=12,
        num_heads=12, mlp_ratio=4, pos_embed="RoPE100", landscape_only=True, head="Linear", feedback_type=None,
        memory_mode="norm_y", pointmaps_activation="norm_exp",
    ),
    "DinoV2Encoder": dict(dino_model="facebook/dinov2-large", output_stride=16, landscape_only=True),
    "PanopticDecoder": dict(
        input_mixer=None, upscaler=None, fpn_dim=[768], hidden_dim=768, mask_dim=256, ff_dim=2048, num_queries=200,
        num_heads=8, dec_layers=6, text_encoder="siglip", fixed_vocab=True, label_mode="sigmoid", two_stage=False,
        landscape_only=True, deep_supervision=True,
    ),
    "PixelShuffleUpscaler": dict(input_dim=None, patch_size=16, hidden_dim_factor=4, fp_dim=[768, 512, 384, 256]),
    "LoftUpUpscaler": dict(
        input_dim=None, dim=None, output_stride=2, patch_size=16, color_feats=True, n_freqs=20, num_heads=4,
        num_layers=2, lr_pe_type="sine",
    ),
    "InputMixer": dict(
        img_size=(512, 512), patch_size=16, in_dim=None, hidden_dim=None, num_heads=12, num_layers=3, ff_dim_mult=4
    ),
}
#: Which constructor each ``args`` field may hold, and which arguments may hold a nested constructor.
_FIELD_CLASSES = {
    "must3r_encoder": {"Dust3rEncoder"},
    "must3r_decoder": {"MUSt3R"},
    "dino_encoder": {"DinoV2Encoder"},
    "panoptic_decoder": {"PanopticDecoder"},
}
_NESTED = {("PanopticDecoder", "upscaler"): {"PixelShuffleUpscaler", "LoftUpUpscaler"},
           ("PanopticDecoder", "input_mixer"): {"InputMixer"}}


@dataclass(frozen=True)
class ParsedCall:
    """A parsed constructor string: class name and keyword arguments (defaults filled in)."""

    name: str
    kwargs: dict[str, Any]


def parse_constructor(source: str, allowed_classes: set[str], field: str) -> ParsedCall:
    """Parse ``Name(kw=literal, ...)`` with :mod:`ast`; only allow-listed names, keywords and literal values."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as err:
        raise CheckpointError(f"args.{field} is not a constructor call ({_one_line(err)})") from err
    return _parse_call(tree.body, allowed_classes, field)


def _parse_call(node: ast.AST, allowed_classes: set[str], field: str) -> ParsedCall:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.func.id not in allowed_classes:
        raise CheckpointError(
            f"args.{field}: refused {_snippet(node)!r}; only calls of {sorted(allowed_classes)} with literal arguments "
            "are accepted"
        )
    name = node.func.id
    if node.args:
        raise CheckpointError(f"args.{field}: {name}(...) has positional arguments; only keyword arguments are accepted")
    spec = _ALLOWED[name]
    kwargs = dict(spec)
    for kw in node.keywords:
        if kw.arg is None or kw.arg not in spec:
            raise CheckpointError(
                f"args.{field}: {name} has no accepted argument {kw.arg!r} (accepted: {sorted(spec)})"
            )
        nested = _NESTED.get((name, kw.arg))
        if nested is not None and isinstance(kw.value, ast.Call):
            kwargs[kw.arg] = _parse_call(kw.value, nested, f"{field}.{kw.arg}")
            continue
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError) as err:
            raise CheckpointError(
                f"args.{field}: {name}({kw.arg}=...) is not a literal ({_snippet(kw.value)!r})"
            ) from err
    missing = [k for k, v in kwargs.items() if v is None and k in ("input_dim", "dim", "in_dim", "hidden_dim", "upscaler")]
    if missing:
        raise CheckpointError(f"args.{field}: {name} lacks required arguments {missing}")
    return ParsedCall(name, kwargs)


def config_from_official_args(args: argparse.Namespace, checkpoint_dir: Path | None = None) -> PanSt3RConfig:
    """Architecture of an official checkpoint from its ``args`` constructor strings (never evaluated)."""
    calls: dict[str, ParsedCall] = {}
    for field, classes in _FIELD_CLASSES.items():
        source = getattr(args, field, None)
        if not isinstance(source, str):
            raise CheckpointError(f"args.{field} is missing or not a string; not an official PanSt3R checkpoint")
        calls[field] = parse_constructor(source, classes, field)
    enc = _encoder_config(calls["must3r_encoder"].kwargs)
    dec = _decoder_config(calls["must3r_decoder"].kwargs)
    dino = _dino_config(calls["dino_encoder"].kwargs, checkpoint_dir)
    upscaler, mixer, mask_tf = _panoptic_configs(calls["panoptic_decoder"].kwargs)
    img_size = calls["must3r_encoder"].kwargs["img_size"]
    postprocess = getattr(args, "postprocess_default", "standard_v2")
    try:
        return PanSt3RConfig(
            encoder=enc, decoder=dec, dino=dino, upscaler=upscaler, mask_transformer=mask_tf, input_mixer=mixer,
            image_size=int(max(img_size) if isinstance(img_size, (list, tuple)) else img_size),
            postprocess_default=str(postprocess),
        )
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"official args describe an inconsistent architecture: {_one_line(err)}") from err


def _parse_rope(name: Any, field: str) -> tuple[float, float]:
    """``RoPE100`` -> (100, 1); ``RoPE100_512:768`` -> (100, 512/768) (must3r pos_embed.py)."""
    if not isinstance(name, str) or not name.startswith("RoPE"):
        raise CheckpointError(f"args.{field}: pos_embed {name!r} unsupported (expected 'RoPE<freq>[_<old>:<new>]')")
    body, _, res = name[4:].partition("_")
    try:
        freq = float(body)
        f0 = 1.0
        if res:
            old, new = res.split(":")
            f0 = float(old) / float(new)
    except ValueError as err:
        raise CheckpointError(f"args.{field}: pos_embed {name!r} is malformed") from err
    return freq, f0


def _encoder_config(kw: dict[str, Any]) -> EncoderConfig:
    if kw["patch_embed"] != "PatchEmbedDust3R":
        raise CheckpointError(f"args.must3r_encoder: patch_embed={kw['patch_embed']!r} unsupported (PatchEmbedDust3R only)")
    freq, f0 = _parse_rope(kw["pos_embed"], "must3r_encoder")
    return _safe(EncoderConfig, "must3r_encoder", embed_dim=kw["embed_dim"], depth=kw["depth"],
                 num_heads=kw["num_heads"], patch_size=kw["patch_size"], mlp_ratio=float(kw["mlp_ratio"]),
                 rope_freq=freq, rope_f0=f0)


def _decoder_config(kw: dict[str, Any]) -> DecoderConfig:
    if kw["head"] != "Linear":
        raise CheckpointError(f"args.must3r_decoder: head={kw['head']!r} unsupported (Linear only)")
    if str(kw["pointmaps_activation"]).lower() != "norm_exp":
        raise CheckpointError("args.must3r_decoder: only the NORM_EXP pointmap activation is supported")
    feedback = kw["feedback_type"] or "none"
    if feedback not in ("single_mlp", "single_linear", "none"):
        raise CheckpointError(f"args.must3r_decoder: feedback_type={kw['feedback_type']!r} unsupported")
    if kw["memory_mode"] not in ("norm_y", "kv", "raw"):
        raise CheckpointError(f"args.must3r_decoder: memory_mode={kw['memory_mode']!r} unsupported")
    freq, f0 = _parse_rope(kw["pos_embed"], "must3r_decoder")
    return _safe(DecoderConfig, "must3r_decoder", enc_embed_dim=kw["enc_embed_dim"], embed_dim=kw["embed_dim"],
                 depth=kw["depth"], num_heads=kw["num_heads"], patch_size=kw["patch_size"],
                 mlp_ratio=float(kw["mlp_ratio"]), output_dim=kw["output_dim"], rope_freq=freq, rope_f0=f0,
                 feedback=feedback, memory_mode=kw["memory_mode"], landscape_only=bool(kw["landscape_only"]))


def _panoptic_configs(kw: dict[str, Any]) -> tuple[Any, InputMixerConfig | None, MaskTransformerConfig]:
    if kw["label_mode"] != "sigmoid":
        raise CheckpointError(f"args.panoptic_decoder: label_mode={kw['label_mode']!r} unsupported (sigmoid only)")
    if kw["two_stage"]:
        raise CheckpointError("args.panoptic_decoder: two_stage=True is unsupported")
    if kw["text_encoder"] not in TEXT_ENCODER_DIMS:
        raise CheckpointError(f"args.panoptic_decoder: text_encoder={kw['text_encoder']!r} unknown")
    fpn_dim = kw["fpn_dim"]
    if not isinstance(fpn_dim, (list, tuple)) or len(fpn_dim) != 1:
        raise CheckpointError(f"args.panoptic_decoder: fpn_dim={fpn_dim!r} unsupported (one feature level)")
    up: ParsedCall = kw["upscaler"]
    if up.name == "PixelShuffleUpscaler":
        u = up.kwargs
        upscaler: Any = _safe(PixelShuffleConfig, "upscaler", input_dim=u["input_dim"], patch_size=u["patch_size"],
                              hidden_dim_factor=float(u["hidden_dim_factor"]), fp_dim=tuple(u["fp_dim"]))
    else:
        u = up.kwargs
        if not u["color_feats"] or u["lr_pe_type"] != "sine":
            raise CheckpointError("args.panoptic_decoder: LoftUp needs color_feats=True and lr_pe_type='sine'")
        upscaler = _safe(LoftUpConfig, "upscaler", input_dim=u["input_dim"], dim=u["dim"],
                         output_stride=u["output_stride"], patch_size=u["patch_size"], n_freqs=u["n_freqs"],
                         num_heads=u["num_heads"], num_layers=u["num_layers"])
    mixer = None
    if isinstance(kw["input_mixer"], ParsedCall):
        m = kw["input_mixer"].kwargs
        mixer = _safe(InputMixerConfig, "input_mixer", in_dim=m["in_dim"], hidden_dim=m["hidden_dim"],
                      num_heads=m["num_heads"], num_layers=m["num_layers"], ff_dim_mult=float(m["ff_dim_mult"]),
                      patch_size=m["patch_size"])
    elif kw["input_mixer"] is not None:
        raise CheckpointError("args.panoptic_decoder: input_mixer must be None or InputMixer(...)")
    mask_tf = _safe(MaskTransformerConfig, "panoptic_decoder", fpn_dim=int(fpn_dim[0]), hidden_dim=kw["hidden_dim"],
                    mask_dim=kw["mask_dim"], ff_dim=kw["ff_dim"], num_queries=kw["num_queries"],
                    num_heads=kw["num_heads"], dec_layers=kw["dec_layers"], text_encoder=kw["text_encoder"],
                    landscape_only=bool(kw["landscape_only"]))
    return upscaler, mixer, mask_tf


def _dino_config(kw: dict[str, Any], checkpoint_dir: Path | None) -> DinoConfig:
    name = kw["dino_model"]
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"args.dino_encoder: dino_model={name!r} must be a model id or folder name")
    extra = dict(output_stride=int(kw["output_stride"]), landscape_only=bool(kw["landscape_only"]))
    if name in DINOV2_PRESETS:
        return dataclasses.replace(DINOV2_PRESETS[name], **extra)
    return dino_config_from_folder(resolve_dino_folder(name, checkpoint_dir), **extra)


def resolve_dino_folder(name: str, checkpoint_dir: Path | None) -> Path:
    """Folder named by ``dino_model``: next to the checkpoint first, then in the working directory."""
    candidates = ([checkpoint_dir / name] if checkpoint_dir is not None else []) + [Path.cwd() / name]
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    raise CheckpointError(
        f"DINOv2 model {name!r} is neither a known id ({', '.join(DINOV2_PRESETS)}) nor a folder with config.json "
        f"(looked in {', '.join(str(c) for c in candidates)}); put its config.json folder next to the checkpoint"
    )


def dino_config_from_folder(folder: Path, output_stride: int = 16, landscape_only: bool = True) -> DinoConfig:
    """DinoConfig from a HF ``config.json`` (read as JSON only; weights come from the PanSt3R checkpoint)."""
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{folder / 'config.json'} is not readable JSON ({_one_line(err)})") from err
    if not isinstance(cfg, dict) or cfg.get("model_type", "dinov2") != "dinov2":
        raise CheckpointError(f"{folder / 'config.json'}: model_type must be 'dinov2'")
    if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("num_channels", 3) != 3:
        raise CheckpointError(f"{folder / 'config.json'}: only gelu activation and 3 input channels are supported")
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size", "image_size",
            "layer_norm_eps", "qkv_bias", "use_swiglu_ffn", "layerscale_value", "use_mask_token")
    values = {k: cfg[k] for k in keys if k in cfg}
    return _safe(DinoConfig, "dino_encoder", **values, output_stride=output_stride, landscape_only=landscape_only)


def _safe(cls: type, field: str, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"args.{field}: {_one_line(err)}") from err


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_REPORTED_KEYS])
    return shown + (", ..." if len(items) > _MAX_REPORTED_KEYS else "")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _snippet(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # unparse of a partial tree; only for the message
        text = type(node).__name__
    return text[:80]
