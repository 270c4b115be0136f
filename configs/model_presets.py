"""Architectures of our own models (the official ones come from their checkpoints)."""

from __future__ import annotations

from panst3r_splat.core.model.config import (
    DecoderConfig,
    DinoConfig,
    EncoderConfig,
    MaskTransformerConfig,
    PanSt3RConfig,
    PixelShuffleConfig,
)


def builtin_small() -> PanSt3RConfig:
    """The built-in model: the real PanSt3R architecture (v1 head) at about 9 M parameters.

    Why these sizes: 192x144 input (12x9 tokens of 16 px, the synthetic scenes' native 4:3 size, no crop), widths of
    192 with head dim 64 (RoPE needs a multiple of 4), 5 encoder and 4 decoder blocks and a 3-block DINOv2-style
    branch, so that 8 views infer in well under a second on 2 CPU cores and the fp16 checkpoint stays under 20 MB.
    48 queries cover the 10-30 segments of a synthetic room. Orientation is handled consistently (no
    ``landscape_only`` transposes), as the architecture is trained here from scratch.
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
            landscape_only=False,
        ),
        image_size=192,
        postprocess_default="standard_v2",
    )


MODEL_PRESETS = {"builtin_small": builtin_small}
