"""Typed architecture configuration of PanSt3R: every size the modules need, as plain data.

The same classes build the official models (ViT-L encoder, ViT-B decoder, DINOv2-L, v1 or v2 head), the tiny parity
fixture and our own small model; only these dataclasses differ. A config round-trips through JSON
(:func:`config_to_dict` / :func:`config_from_dict`), which is how our own checkpoints carry their architecture.

Defaults are those of the official constructors (must3r/model/encoder.py, must3r/model/decoder.py,
panst3r/model/dino.py, panst3r/model/panoptic_decoder.py, upscalers/*.py, input_mixer.py), so a constructor string
from an official checkpoint maps onto these fields one to one (see ``panst3r_core/checkpoint.py``).

Orientation (method.md 1.10): the ``landscape_only`` flags reproduce what the official code does with portrait
images when the flag is set (the official defaults): MUSt3R tokens stay in portrait order while DINOv2 sees the
transposed image, the v1 upscaler output is stored transposed and the mask transformer's sine encoding is taken on
the portrait grid. Our own models set every flag to ``False``: all three branches then see the image as it is,
which is consistent for any orientation. User-facing outputs are always returned in the image's own orientation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Union

FeedbackType = Literal["single_mlp", "single_linear", "none"]
MemoryMode = Literal["norm_y", "kv", "raw"]
TextEncoderName = Literal["siglip", "siglip2", "clip"]

#: Text-embedding width of each text encoder the official code knows (panst3r/model/text_encoder.py).
TEXT_ENCODER_DIMS: dict[str, int] = {"siglip": 768, "siglip2": 768, "clip": 512}


def _check_heads(dim: int, heads: int, what: str) -> None:
    if heads <= 0 or dim % heads != 0:
        raise ValueError(f"{what}: width {dim} is not divisible by {heads} heads")


@dataclass(frozen=True)
class EncoderConfig:
    """MUSt3R ViT encoder (``Dust3rEncoder``: patch embedding, pre-norm blocks with 2D RoPE, final LayerNorm)."""

    embed_dim: int = 1024
    """Token width."""
    depth: int = 24
    """Number of transformer blocks."""
    num_heads: int = 16
    """Attention heads per block."""
    patch_size: int = 16
    """Square patch side in pixels; image sides must be multiples of it."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of ``embed_dim``."""
    rope_freq: float = 100.0
    """RoPE base frequency (``RoPE100``)."""
    rope_f0: float = 1.0
    """RoPE frequency scale (``RoPE100_512:768`` gives 512/768 to reuse weights at a higher resolution)."""

    def __post_init__(self) -> None:
        _check_heads(self.embed_dim, self.num_heads, "encoder")
        if (self.embed_dim // self.num_heads) % 4 != 0:
            raise ValueError(f"encoder head width {self.embed_dim // self.num_heads} must be a multiple of 4 for 2D RoPE")


@dataclass(frozen=True)
class DecoderConfig:
    """MUSt3R decoder with per-layer memory banks, feedback MLP and linear pointmap head (``MUSt3R``)."""

    enc_embed_dim: int = 1024
    """Width of the encoder tokens it consumes."""
    embed_dim: int = 768
    """Decoder token width."""
    depth: int = 12
    """Number of cached decoder blocks (= number of memory banks)."""
    num_heads: int = 12
    """Attention heads per block."""
    patch_size: int = 16
    """Patch side of the pointmap head's pixel shuffle (same as the encoder's)."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of ``embed_dim``."""
    output_dim: int = 1792
    """Head output per token: patch_size**2 * 7 (global xyz, local xyz, confidence)."""
    rope_freq: float = 100.0
    """RoPE base frequency of the self-attention."""
    rope_f0: float = 1.0
    """RoPE frequency scale."""
    feedback: FeedbackType = "single_mlp"
    """Memory feedback from the last layer's input to the earlier banks (``feedback_type``)."""
    memory_mode: MemoryMode = "norm_y"
    """What the official code caches; the three modes are numerically equivalent, we always cache ``norm_y``."""
    landscape_only: bool = True
    """Official head wrapper: portrait pointmaps are produced transposed (we transpose them back)."""

    def __post_init__(self) -> None:
        _check_heads(self.embed_dim, self.num_heads, "decoder")
        if self.output_dim != self.patch_size**2 * 7:
            raise ValueError(
                f"decoder output_dim={self.output_dim} must be patch_size**2 * 7 = {self.patch_size**2 * 7} "
                "(3 global + 3 local + 1 confidence channels per pixel)"
            )


@dataclass(frozen=True)
class DinoConfig:
    """DINOv2 backbone (HF ``Dinov2Model`` layout) plus the PanSt3R wrapper's resize and orientation options."""

    hidden_size: int = 1024
    """Token width."""
    num_hidden_layers: int = 24
    """Number of transformer layers."""
    num_attention_heads: int = 16
    """Attention heads per layer."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of ``hidden_size``."""
    patch_size: int = 14
    """DINOv2 patch side in pixels."""
    image_size: int = 518
    """Pre-training image side; sets the size of the learned position-embedding grid."""
    layer_norm_eps: float = 1e-6
    """LayerNorm epsilon of every norm in the backbone."""
    qkv_bias: bool = True
    """Bias on the query/key/value projections."""
    use_swiglu_ffn: bool = False
    """SwiGLU MLP (DINOv2-giant) instead of fc1-GELU-fc2."""
    layerscale_value: float = 1.0
    """Initial LayerScale value (weights come from the checkpoint)."""
    use_mask_token: bool = True
    """Whether the checkpoint carries ``embeddings.mask_token`` (unused at inference)."""
    output_stride: int = 16
    """The image is resized so that the DINOv2 token grid equals the MUSt3R grid at this stride."""
    landscape_only: bool = True
    """Official wrapper: portrait images are transposed before DINOv2 (their tokens come out in transposed order)."""

    def __post_init__(self) -> None:
        _check_heads(self.hidden_size, self.num_attention_heads, "dino")


@dataclass(frozen=True)
class PixelShuffleConfig:
    """v1 head: MLP + 2x pixel-shuffle steps from stride 16 to stride 2 (``PixelShuffleUpscaler``)."""

    input_dim: int = 2816
    """Width of the concatenated [encoder | decoder | DINOv2] tokens."""
    patch_size: int = 16
    """Token stride in pixels."""
    hidden_dim_factor: float = 4.0
    """MLP hidden width as a multiple of each MLP's input width."""
    fp_dim: tuple[int, int, int, int] = (768, 512, 384, 256)
    """Channels at strides 16 (frame tokens), 8, 4 and 2 (mask features)."""


@dataclass(frozen=True)
class InputMixerConfig:
    """v2 input mixer: Linear projection + RoPE ViT blocks + LayerNorm over the concatenated tokens."""

    in_dim: int = 2816
    """Width of the concatenated tokens."""
    hidden_dim: int = 768
    """Mixed token width."""
    num_heads: int = 12
    """Attention heads per block."""
    num_layers: int = 3
    """Number of ViT blocks."""
    ff_dim_mult: float = 4.0
    """MLP hidden width as a multiple of ``hidden_dim``."""
    patch_size: int = 16
    """Token stride in pixels (informational)."""


@dataclass(frozen=True)
class LoftUpConfig:
    """v2 head: LoftUp upscaler (high-resolution RGB queries cross-attending to the low-resolution tokens)."""

    input_dim: int = 768
    """Width of the mixed tokens."""
    dim: int = 384
    """Width of the high-resolution features (= mask feature width)."""
    output_stride: int = 2
    """Stride of the mask features."""
    patch_size: int = 16
    """Token stride in pixels."""
    n_freqs: int = 20
    """Fourier frequencies of the guidance-image featurizer."""
    num_heads: int = 4
    """Heads of the cross-attention blocks."""
    num_layers: int = 2
    """Number of cross-attention-only blocks."""

    def __post_init__(self) -> None:
        _check_heads(self.dim, self.num_heads, "loftup")
        if self.dim % 8 != 0:
            raise ValueError(f"loftup dim={self.dim} must be a multiple of 8 (GroupNorm with 8 groups)")


UpscalerConfig = Union[PixelShuffleConfig, LoftUpConfig]


@dataclass(frozen=True)
class DescriptorHeadConfig:
    """Dense matching descriptors (our built-in models only; the official checkpoints have none).

    MASt3R's matching head regresses ``patch**2 * (D + 1)`` values per token; at our widths that linear layer alone
    would hold 2.5 M parameters, so this head predicts a coarse field at stride 4 from the [encoder | decoder] tokens
    and refines it at full resolution with a small convolution over the image (pixel-accurate edges)."""

    input_dim: int = 384
    """Width of the [MUSt3R encoder | decoder] token concatenation."""
    dim: int = 24
    """Descriptor width D (MASt3R: 24)."""
    coarse_dim: int = 32
    """Channels of the stride-4 field predicted from the tokens."""
    image_dim: int = 16
    """Channels of the full-resolution image branch."""
    hidden_dim: int = 48
    """Channels of the fusion layer."""
    patch_size: int = 16
    """Token stride in pixels (a multiple of 4)."""

    def __post_init__(self) -> None:
        if self.patch_size % 4 != 0:
            raise ValueError(f"descriptor head patch_size={self.patch_size} must be a multiple of 4")
        if self.dim < 2:
            raise ValueError(f"descriptor dim={self.dim} must be at least 2")


@dataclass(frozen=True)
class MaskTransformerConfig:
    """Mask2Former-style decoder with queries shared across views (``MaskTransformer`` via ``PanopticDecoder``)."""

    fpn_dim: int = 768
    """Width of the frame tokens the queries attend to (a 1x1 projection is added when it differs from hidden)."""
    hidden_dim: int = 768
    """Query width."""
    mask_dim: int = 256
    """Width of the mask features (v1 256, v2 384)."""
    ff_dim: int = 2048
    """FFN hidden width."""
    num_queries: int = 200
    """Number of learned queries."""
    num_heads: int = 8
    """Attention heads."""
    dec_layers: int = 6
    """Number of (cross-attention, self-attention, FFN) layers."""
    text_encoder: TextEncoderName = "siglip"
    """Text model whose embeddings the class logits compare against; sets ``lang_dim`` and the prompt."""
    label_mode: Literal["sigmoid"] = "sigmoid"
    """Per-class sigmoid scores, no 'no object' class (both released checkpoints)."""
    landscape_only: bool = True
    """Official: frame tokens of portrait views are stored transposed and the sine encoding is taken on the
    portrait grid (``get_pe_with_transpose``)."""

    def __post_init__(self) -> None:
        _check_heads(self.hidden_dim, self.num_heads, "mask transformer")
        if self.hidden_dim % 2 != 0:
            raise ValueError(f"mask transformer hidden_dim={self.hidden_dim} must be even (sine encoding)")

    @property
    def lang_dim(self) -> int:
        """Width of the class text embeddings."""
        return TEXT_ENCODER_DIMS[self.text_encoder]


@dataclass(frozen=True)
class PanSt3RConfig:
    """The whole architecture. Two levels of nesting: this and one dataclass per component."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """MUSt3R encoder."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """MUSt3R decoder and pointmap head."""
    dino: DinoConfig = field(default_factory=DinoConfig)
    """DINOv2 branch."""
    upscaler: UpscalerConfig = field(default_factory=PixelShuffleConfig)
    """v1 PixelShuffle or v2 LoftUp head."""
    mask_transformer: MaskTransformerConfig = field(default_factory=MaskTransformerConfig)
    """Query decoder and prediction heads."""
    input_mixer: InputMixerConfig | None = None
    """v2 input mixer (None for v1)."""
    descriptor_head: DescriptorHeadConfig | None = None
    """Dense matching descriptors for the cameras from matches (None: no such head, as the official checkpoints)."""
    image_size: int = 512
    """Long side the model was trained at (default ``--size`` of ``predict``)."""
    postprocess_default: str = "qubo"
    """Merging method the checkpoint recommends (official ``args.postprocess_default``)."""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def concat_dim(self) -> int:
        """Width of the [encoder | decoder | DINOv2] token concatenation."""
        return self.encoder.embed_dim + self.decoder.embed_dim + self.dino.hidden_size

    @property
    def patch_size(self) -> int:
        """Token stride in pixels (image sides must be multiples of it)."""
        return self.encoder.patch_size

    def validate(self) -> None:
        """Check that the component widths fit together; raise ValueError naming the mismatch."""
        if self.decoder.enc_embed_dim != self.encoder.embed_dim:
            raise ValueError(
                f"decoder.enc_embed_dim={self.decoder.enc_embed_dim} != encoder.embed_dim={self.encoder.embed_dim}"
            )
        if self.decoder.patch_size != self.encoder.patch_size:
            raise ValueError(f"decoder.patch_size={self.decoder.patch_size} != encoder.patch_size={self.encoder.patch_size}")
        head_in = self.concat_dim if self.input_mixer is None else self.input_mixer.hidden_dim
        if self.input_mixer is not None and self.input_mixer.in_dim != self.concat_dim:
            raise ValueError(f"input_mixer.in_dim={self.input_mixer.in_dim} != concatenated width {self.concat_dim}")
        if self.upscaler.input_dim != head_in:
            raise ValueError(f"upscaler.input_dim={self.upscaler.input_dim} != its input width {head_in}")
        fpn = self.upscaler.fp_dim[0] if isinstance(self.upscaler, PixelShuffleConfig) else self.upscaler.input_dim
        mask = self.upscaler.fp_dim[3] if isinstance(self.upscaler, PixelShuffleConfig) else self.upscaler.dim
        if self.mask_transformer.fpn_dim != fpn:
            raise ValueError(f"mask_transformer.fpn_dim={self.mask_transformer.fpn_dim} != frame-token width {fpn}")
        if self.mask_transformer.mask_dim != mask:
            raise ValueError(f"mask_transformer.mask_dim={self.mask_transformer.mask_dim} != mask-feature width {mask}")
        desc = self.descriptor_head
        if desc is not None and desc.input_dim != self.encoder.embed_dim + self.decoder.embed_dim:
            raise ValueError(f"descriptor_head.input_dim={desc.input_dim} != encoder + decoder width "
                             f"{self.encoder.embed_dim + self.decoder.embed_dim}")
        if desc is not None and desc.patch_size != self.patch_size:
            raise ValueError(f"descriptor_head.patch_size={desc.patch_size} != patch size {self.patch_size}")
        if isinstance(self.upscaler, LoftUpConfig) and self.upscaler.output_stride != 2:
            raise ValueError("only output_stride=2 is supported for the LoftUp head (masks at H/2 x W/2)")


# ----------------------------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------------------------

DINOV2_PRESETS: dict[str, DinoConfig] = {
    # facebook/dinov2-* config.json values (hidden, layers, heads; patch 14, image 518, eps 1e-6, no registers).
    "facebook/dinov2-small": DinoConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "facebook/dinov2-base": DinoConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "facebook/dinov2-large": DinoConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
    "facebook/dinov2-giant": DinoConfig(
        hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, use_swiglu_ffn=True
    ),
}


def official_v1_config() -> PanSt3RConfig:
    """``panst3r_v1_512_5ds.pth``: ViT-L/16 encoder, ViT-B decoder, DINOv2-L, PixelShuffle head (configs/base.yaml)."""
    return PanSt3RConfig(dino=DINOV2_PRESETS["facebook/dinov2-large"], upscaler=PixelShuffleConfig(input_dim=2816))


def official_v2_config() -> PanSt3RConfig:
    """``panst3r_v2_512_5ds.pth``: as v1 but with the InputMixer + LoftUp head and 384-d masks (base_v2.yaml)."""
    return PanSt3RConfig(
        dino=DINOV2_PRESETS["facebook/dinov2-large"],
        input_mixer=InputMixerConfig(),
        upscaler=LoftUpConfig(),
        mask_transformer=MaskTransformerConfig(mask_dim=384),
        postprocess_default="standard_v2",
    )


def small_config(*, lang_dim_encoder: TextEncoderName = "siglip") -> PanSt3RConfig:
    """The built-in model: the real PanSt3R architecture (v1 head) at about 9.3 M parameters.

    Why these sizes: 192x144 input (12x9 tokens of 16 px, the synthetic scenes' native 4:3 size, no crop), widths of
    192 with head dim 64 (RoPE needs a multiple of 4), 5 encoder and 4 decoder blocks and a 3-block DINOv2-style
    branch, so that 8 views infer in seconds on 2 CPU cores and the fp16 checkpoint stays under 20 MB. 48 queries
    cover the 10-30 segments of a synthetic room. Orientation is handled consistently (no ``landscape_only``
    transposes), as the architecture is trained from scratch.
    """
    enc = EncoderConfig(embed_dim=192, depth=5, num_heads=3)
    dec = DecoderConfig(enc_embed_dim=192, embed_dim=192, depth=4, num_heads=3, landscape_only=False)
    dino = DinoConfig(hidden_size=128, num_hidden_layers=3, num_attention_heads=2, landscape_only=False)
    concat = enc.embed_dim + dec.embed_dim + dino.hidden_size
    return PanSt3RConfig(
        encoder=enc,
        decoder=dec,
        dino=dino,
        upscaler=PixelShuffleConfig(input_dim=concat, hidden_dim_factor=1.5, fp_dim=(192, 128, 96, 64)),
        mask_transformer=MaskTransformerConfig(
            fpn_dim=192, hidden_dim=192, mask_dim=64, ff_dim=384, num_queries=48, num_heads=4, dec_layers=3,
            text_encoder=lang_dim_encoder, landscape_only=False,
        ),
        image_size=192,
        postprocess_default="standard_v2",
    )


def small_v2_config(*, lang_dim_encoder: TextEncoderName = "siglip") -> PanSt3RConfig:
    """The built-in model, second version: the encoder, decoder and DINOv2 branch of :func:`small_config`, PanSt3R's
    v2 mask path (InputMixer + LoftUp, which sees the image, so objects of one or two patches get masks of their
    own) and a dense descriptor head for the cameras from matches.

    Why these sizes (docs/training/README.md, "Second version"): the LoftUp head runs at H/2, so its width (48) and
    Fourier frequencies (10) are cut to keep the step cost down; one mixer block mixes the three token sources; 8.6 M
    parameters, so that the fp16 checkpoint and the training run's resume file (fp16 weights, no optimiser moments)
    stay under 20 MB each.
    """
    enc = EncoderConfig(embed_dim=192, depth=5, num_heads=3)
    dec = DecoderConfig(enc_embed_dim=192, embed_dim=192, depth=4, num_heads=3, landscape_only=False)
    dino = DinoConfig(hidden_size=128, num_hidden_layers=3, num_attention_heads=2, landscape_only=False)
    concat = enc.embed_dim + dec.embed_dim + dino.hidden_size
    return PanSt3RConfig(
        encoder=enc,
        decoder=dec,
        dino=dino,
        input_mixer=InputMixerConfig(in_dim=concat, hidden_dim=192, num_heads=3, num_layers=1, ff_dim_mult=2.0),
        upscaler=LoftUpConfig(input_dim=192, dim=48, n_freqs=10, num_heads=4, num_layers=2),
        mask_transformer=MaskTransformerConfig(
            fpn_dim=192, hidden_dim=192, mask_dim=48, ff_dim=384, num_queries=48, num_heads=4, dec_layers=3,
            text_encoder=lang_dim_encoder, landscape_only=False,
        ),
        descriptor_head=DescriptorHeadConfig(input_dim=enc.embed_dim + dec.embed_dim),
        image_size=192,
        postprocess_default="standard_v2",
    )


# ----------------------------------------------------------------------------------------------------------------
# JSON round trip
# ----------------------------------------------------------------------------------------------------------------

_UPSCALER_KINDS: dict[str, type] = {"pixel_shuffle": PixelShuffleConfig, "loftup": LoftUpConfig}
_COMPONENTS: dict[str, type] = {
    "encoder": EncoderConfig,
    "decoder": DecoderConfig,
    "dino": DinoConfig,
    "mask_transformer": MaskTransformerConfig,
    "input_mixer": InputMixerConfig,
    "descriptor_head": DescriptorHeadConfig,
}


def config_to_dict(config: PanSt3RConfig) -> dict[str, Any]:
    """Plain JSON-able dict of ``config``; the upscaler carries a ``kind`` tag."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None or isinstance(value, (int, float, str)):
            out[f.name] = value
        elif f.name == "upscaler":
            kind = next(k for k, cls in _UPSCALER_KINDS.items() if isinstance(value, cls))
            out[f.name] = {"kind": kind, **_to_jsonable(dataclasses.asdict(value))}
        else:
            out[f.name] = _to_jsonable(dataclasses.asdict(value))
    return out


def config_from_dict(data: dict[str, Any]) -> PanSt3RConfig:
    """Inverse of :func:`config_to_dict`; unknown fields raise ValueError naming them."""
    if not isinstance(data, dict):
        raise ValueError(f"architecture config must be a JSON object, got {type(data).__name__}")
    kwargs: dict[str, Any] = {}
    top = {f.name for f in dataclasses.fields(PanSt3RConfig)}
    unknown = set(data) - top
    if unknown:
        raise ValueError(f"unknown architecture config fields {sorted(unknown)}; known: {sorted(top)}")
    for name, value in data.items():
        if name == "upscaler":
            value = dict(value)
            kind = value.pop("kind", None)
            if kind not in _UPSCALER_KINDS:
                raise ValueError(f"upscaler kind {kind!r} unknown; expected one of {sorted(_UPSCALER_KINDS)}")
            kwargs[name] = _build(_UPSCALER_KINDS[kind], value)
        elif name in _COMPONENTS:
            kwargs[name] = None if value is None else _build(_COMPONENTS[name], value)
        else:
            kwargs[name] = value
    return PanSt3RConfig(**kwargs)


def _build(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(names)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**fixed)


def _to_jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
