"""The v2 head (InputMixer + LoftUp, method.md 1.6) without a fixture: key names and shapes as Appendix A, output
shapes, a state_dict round trip, and the properties the description pins down."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from panst3r_splat.core.checkpoint import load_checkpoint, save_checkpoint
from panst3r_splat.core.model import InferenceOptions, LinspaceKeyframes, PanSt3R, official_v2_config
from panst3r_splat.core.model.config import (
    DecoderConfig,
    DinoConfig,
    EncoderConfig,
    InputMixerConfig,
    LoftUpConfig,
    MaskTransformerConfig,
    PanSt3RConfig,
)
from panst3r_splat.core.model.heads import ImplicitFeaturizer, LoftUpUpscaler, min_max_scale


def tiny_v2_config(landscape_only: bool = False) -> PanSt3RConfig:
    concat = 64 + 48 + 64
    return PanSt3RConfig(
        encoder=EncoderConfig(embed_dim=64, depth=2, num_heads=4),
        decoder=DecoderConfig(enc_embed_dim=64, embed_dim=48, depth=2, num_heads=4, landscape_only=landscape_only),
        dino=DinoConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=70,
                        landscape_only=landscape_only),
        input_mixer=InputMixerConfig(in_dim=concat, hidden_dim=48, num_heads=4, num_layers=2),
        upscaler=LoftUpConfig(input_dim=48, dim=32, n_freqs=4, num_heads=4, num_layers=2),
        mask_transformer=MaskTransformerConfig(fpn_dim=48, hidden_dim=48, mask_dim=32, ff_dim=96, num_queries=6,
                                               num_heads=4, dec_layers=2, landscape_only=landscape_only),
    )


@pytest.fixture(scope="module")
def model() -> PanSt3R:
    torch.manual_seed(3)
    net = PanSt3R(tiny_v2_config())
    with torch.no_grad():  # make the zero/one-initialised tensors matter
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g) * 2 - 1


def _classes(k: int = 5, dim: int = 768) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(k, dim, generator=torch.Generator().manual_seed(1)), dim=-1)


APPENDIX_A_V2 = {
    "panoptic_decoder.input_mixer.in_proj.weight": (768, 2816),
    "panoptic_decoder.input_mixer.mixer_blk.0.attn.qkv.weight": (2304, 768),
    "panoptic_decoder.input_mixer.mixer_blk.2.attn.qkv.weight": (2304, 768),
    "panoptic_decoder.input_mixer.mixer_blk.1.mlp.fc1.weight": (3072, 768),
    "panoptic_decoder.input_mixer.mixer_norm.weight": (768,),
    "panoptic_decoder.input_mixer.mixer_norm.bias": (768,),
    "panoptic_decoder.upscaler.patch_embed.weight": (768, 768, 1, 1),
    "panoptic_decoder.upscaler.lr_pe.biases": (2, 2, 5),
    "panoptic_decoder.upscaler.lr_input_proj.0.weight": (384, 788),
    "panoptic_decoder.upscaler.fourier_feat.1.biases": (2, 5, 20),
    "panoptic_decoder.upscaler.first_conv.0.weight": (203,),
    "panoptic_decoder.upscaler.first_conv.1.weight": (384, 203, 3, 3),
    "panoptic_decoder.upscaler.first_conv.4.weight": (384, 384, 3, 3),
    "panoptic_decoder.upscaler.ca_transformer_blocks.0.cross_attn.projq.weight": (384, 384),
    "panoptic_decoder.upscaler.ca_transformer_blocks.1.cross_attn.projk.weight": (384, 384),
    "panoptic_decoder.upscaler.ca_transformer_blocks.1.cross_attn.projv.weight": (384, 384),
    "panoptic_decoder.upscaler.ca_transformer_blocks.0.mlp.fc1.weight": (384, 384),
    "panoptic_decoder.upscaler.ca_transformer_norm.weight": (384,),
    "panoptic_decoder.mask_transformer.mask_embed.layers.2.weight": (384, 768),
    "panoptic_decoder.mask_transformer.query_feat.weight": (200, 768),
    "panoptic_decoder.mask_transformer.cross_attn_layers.5.multihead_attn.in_proj_weight": (2304, 768),
    "panoptic_decoder.mask_transformer.cls_logit_scale": (),
    "dino_encoder.dinov2.embeddings.position_embeddings": (1, 1370, 1024),
    "dino_encoder.dinov2.encoder.layer.23.attention.q_proj.weight": (1024, 1024),
    "must3r_decoder.head_dec.proj.weight": (1792, 768),
    "must3r_encoder.blocks_enc.23.attn.qkv.weight": (3072, 1024),
}


def test_official_v2_key_names_and_shapes_match_appendix_a() -> None:
    with torch.device("meta"):
        model = PanSt3R(official_v2_config())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in APPENDIX_A_V2.items():
        assert shapes.get(key) == shape, f"{key}: {shapes.get(key)} != {shape}"
    # LoftUp's cross-attention projections have no bias; nothing carries a text encoder or a no-object token.
    assert "panoptic_decoder.upscaler.ca_transformer_blocks.0.cross_attn.projq.bias" not in shapes
    assert not any("text_encoder" in k or "nocls" in k for k in shapes)
    assert len(shapes) == 1244


def test_v2_training_forward_shapes(model: PanSt3R) -> None:
    imgs = _images(3, 48, 64)[None]
    with torch.no_grad():
        out = model(imgs, _classes())
    pan = out.panoptic
    assert out.pointmaps_raw.shape == (1, 3, 48, 64, 7)
    assert pan.class_logits.shape == (1, 6, 5)
    assert pan.mask_logits.shape == (1, 3, 6, 24, 32)
    assert pan.queries.shape == (6, 1, 48)
    assert len(pan.aux) == 2 and all(a.mask_logits.shape == (1, 3, 6, 24, 32) for a in pan.aux)
    assert torch.isfinite(pan.mask_logits).all() and pan.mask_logits.std() > 0


def test_memory_pass_pointmaps_leave_the_outputs_unchanged(model: PanSt3R) -> None:
    """Asking for the memory pass's pointmaps changes nothing else; the reference view's memory-pass pointmap is the
    head on tokens without image2_embed, so it differs from its render-pass pointmap, and every view has one."""
    imgs = _images(3, 48, 64, seed=4)[None].repeat(2, 1, 1, 1, 1)
    with torch.no_grad():
        plain = model(imgs, _classes())
        both = model(imgs, _classes(), memory_pass_pointmaps=True)
    assert plain.pointmaps_memory_raw is None
    torch.testing.assert_close(both.pointmaps_raw, plain.pointmaps_raw, rtol=0, atol=0)
    torch.testing.assert_close(both.panoptic.mask_logits, plain.panoptic.mask_logits, rtol=0, atol=0)
    memory_pass = both.pointmaps_memory_raw
    assert memory_pass is not None and memory_pass.shape == plain.pointmaps_raw.shape
    assert torch.isfinite(memory_pass).all()
    assert (memory_pass - plain.pointmaps_raw).abs().amax(dim=(0, 2, 3, 4)).min() > 0
    with torch.no_grad():
        geometry = model(imgs, _classes(), memory_pass_pointmaps=True, panoptic=False)
    assert geometry.panoptic is None
    torch.testing.assert_close(geometry.pointmaps_raw, plain.pointmaps_raw, rtol=0, atol=0)
    torch.testing.assert_close(geometry.pointmaps_memory_raw, memory_pass, rtol=0, atol=0)
    x_enc, pos = model.encode(imgs[0])
    with torch.no_grad():
        memory = model.build_memory([x_enc[None, i] for i in range(3)], [pos[None, i] for i in range(3)])
        memory2, _ = model.build_memory_with_pointmaps(x_enc[None], pos[None], (48, 64))
    for a, b in zip(memory.banks, memory2.banks):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_v2_state_dict_round_trip(model: PanSt3R, tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "v2.safetensors", model)
    loaded = load_checkpoint(tmp_path / "v2.safetensors").model
    assert loaded.config == model.config
    imgs = _images(2, 32, 48, seed=5)[None]
    with torch.no_grad():
        a, b = model(imgs, _classes()), loaded(imgs, _classes())
    assert torch.equal(a.pointmaps_raw, b.pointmaps_raw)
    assert torch.equal(a.panoptic.mask_logits, b.panoptic.mask_logits)


def test_loftup_view_features_do_not_depend_on_batch_mates(model: PanSt3R) -> None:
    """The guidance min/max scaling is per view (the official inference calls the upscaler one view at a time)."""
    up = model.panoptic_decoder.upscaler
    assert isinstance(up, LoftUpUpscaler)
    tokens = torch.randn(2, 12, 48)
    imgs = _images(2, 48, 64, seed=2)
    imgs[1] = imgs[1] * 0.1  # a very different colour range
    with torch.no_grad():
        _, together = up(tokens, imgs, (48, 64))
        _, alone = up(tokens[:1], imgs[:1], (48, 64))
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)


def test_min_max_scale_maps_each_channel_to_unit_range() -> None:
    x = torch.randn(3, 3, 5, 7) * torch.tensor([1.0, 10.0, 0.1]).view(1, 3, 1, 1)
    y = min_max_scale(x)
    flat = y.flatten(2)
    torch.testing.assert_close(flat.min(-1).values, torch.full((3, 3), -0.5))
    torch.testing.assert_close(flat.max(-1).values, torch.full((3, 3), 0.5))


def test_implicit_featurizer_channel_layout() -> None:
    """Hand-computed layout: channel f*dm + d is sin(coord_d * exp(freq_f)) (biases zero), then cos, then rgb."""
    feat = ImplicitFeaturizer(color_feats=True, n_freqs=2)
    img = torch.rand(1, 3, 4, 5)
    out = feat(img)
    assert out.shape == (1, 2 * 5 * 2 + 3, 4, 5)
    ys = torch.linspace(-1, 1, 4)[:, None].expand(4, 5)
    xs = torch.linspace(-1, 1, 5)[None, :].expand(4, 5)
    coords = [ys, xs, img[0, 0], img[0, 1], img[0, 2]]
    freqs = torch.exp(torch.linspace(-2, 10, 2))
    for f in range(2):
        for d in range(5):
            torch.testing.assert_close(out[0, f * 5 + d], torch.sin(coords[d] * freqs[f]))
            torch.testing.assert_close(out[0, 10 + f * 5 + d], torch.cos(coords[d] * freqs[f]))
    torch.testing.assert_close(out[0, 20:], img[0])


def test_v2_inference_mixed_orientations(model: PanSt3R) -> None:
    """Landscape and portrait views in one scene: every output comes back in its view's own orientation."""
    views = [*_images(2, 48, 64, seed=7), *_images(2, 64, 48, seed=8)]
    out = model.forward_inference(views, _classes(), InferenceOptions(keyframes=LinspaceKeyframes(3), progress=False))
    for view, pm, masks in zip(views, out.pointmaps_raw, out.mask_logits):
        H, W = view.shape[-2:]
        assert pm.shape == (H, W, 7)
        assert masks.shape == (6, H // 2, W // 2)
    assert out.keyframes == (0, 1, 3)


def test_official_landscape_only_portrait_outputs_in_image_orientation() -> None:
    """With the official ``landscape_only`` quirks the portrait outputs are still returned as H x W."""
    torch.manual_seed(0)
    model = PanSt3R(tiny_v2_config(landscape_only=True)).eval()
    imgs = _images(2, 64, 48)[None]
    with torch.no_grad():
        out = model(imgs, _classes())
    assert out.pointmaps_raw.shape == (1, 2, 64, 48, 7)
    assert out.panoptic.mask_logits.shape == (1, 2, 6, 32, 24)


# -- portrait handling by rotation ------------------------------------------------------------------------------------


def _pinhole_raw(h: int, w: int, f: float, depth: float) -> torch.Tensor:
    """Raw pointmap whose activated local points are a pinhole camera's (principal point at the centre)."""
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pts = torch.stack([(u - (w - 1) / 2) / f, (v - (h - 1) / 2) / f, torch.ones_like(u)], -1) * depth
    norm = pts.norm(dim=-1, keepdim=True)
    raw = pts / norm * torch.log1p(norm)  # inverse of NORM_EXP
    return torch.cat([raw, raw, torch.zeros(h, w, 1, dtype=torch.float64)], -1)


def test_unrotate_view_gives_the_portrait_cameras_pinhole_points() -> None:
    """A correct pinhole pointmap of the rotated (landscape) camera maps to the correct pinhole pointmap of the
    portrait camera: checks the array rotation and the camera rotation R together."""
    from panst3r_splat.core.model import activate_pointmaps
    from panst3r_splat.core.model.panst3r import unrotate_view

    H, W, f = 6, 4, 3.0
    rotated = _pinhole_raw(W, H, f, 2.0)  # the view fed as rot90: W rows, H columns
    pm, masks = unrotate_view(rotated, torch.arange(2 * 3 * 2.0).reshape(2, 3, 2), world_rotated=True)
    assert pm.shape == (H, W, 7) and masks.shape == (2, 2, 3)
    _, local, _ = activate_pointmaps(pm)
    _, expected, _ = activate_pointmaps(_pinhole_raw(H, W, f, 2.0))
    torch.testing.assert_close(local, expected.float(), atol=1e-5, rtol=1e-5)


def test_rotate_mode_is_identity_on_landscape_scenes(model: PanSt3R) -> None:
    from panst3r_splat.core.model import PortraitHandling

    views = list(_images(3, 32, 48, seed=4))
    opts = dict(keyframes=LinspaceKeyframes(2), progress=False)
    a = model.forward_inference(views, _classes(), InferenceOptions(**opts))
    b = model.forward_inference(views, _classes(), InferenceOptions(portrait=PortraitHandling.ROTATE, **opts))
    assert torch.equal(a.stacked_pointmaps_raw(), b.stacked_pointmaps_raw())
    assert torch.equal(a.stacked_mask_logits(), b.stacked_mask_logits())


def test_rotate_mode_feeds_the_model_landscape_views(model: PanSt3R) -> None:
    """Portrait views made by rotating landscape ones clockwise give the landscape results, rotated back."""
    from panst3r_splat.core.model import PortraitHandling
    from panst3r_splat.core.model.panst3r import unrotate_view

    landscape = list(_images(2, 32, 48, seed=6))
    portrait = [torch.rot90(v, -1, dims=(-2, -1)) for v in landscape]
    ref = model.forward_inference(landscape, _classes(), InferenceOptions(progress=False))
    out = model.forward_inference(
        portrait, _classes(), InferenceOptions(progress=False, portrait=PortraitHandling.ROTATE)
    )
    for i in range(2):
        pm, masks = unrotate_view(ref.pointmaps_raw[i], ref.mask_logits[i], world_rotated=True)
        torch.testing.assert_close(out.pointmaps_raw[i], pm)
        torch.testing.assert_close(out.mask_logits[i], masks)
    torch.testing.assert_close(out.class_logits, ref.class_logits)
