"""Numerical parity of the PanSt3R model with the official code on the ``official_tiny_v1`` fixture.

The fixture (../shared/fixtures/official_tiny_v1, see its README) holds a tiny random-weight model in the official
checkpoint format and the official outputs, intermediates included. Tolerances are the README's: 1e-4 for tokens,
pointmaps, confidences and class logits, 1e-3 for mask logits (attention masks flip only for |logit| < 0.02).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _fixtures import PARITY_FIXTURE

from panst3r_splat.core.model import InferenceOptions, LinspaceKeyframes, PanSt3R, activate_pointmaps

#: The parity fixture (a copy of the official code's outputs kept with the tests).
FIXTURE = PARITY_FIXTURE

ATOL = 1e-4
ATOL_MASK = 1e-3


def _load_fixture_model() -> PanSt3R:
    from panst3r_splat.core.checkpoint import load_checkpoint

    return load_checkpoint(FIXTURE / "checkpoint.pth").model.eval()


@pytest.fixture(scope="module")
def model() -> PanSt3R:
    return _load_fixture_model()


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / "inputs.npz"))


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / "outputs.npz"))


@pytest.fixture(scope="module")
def imgs(inputs: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(inputs["imgs"])


@pytest.fixture(scope="module")
def class_embeddings(inputs: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(inputs["class_embeddings"])


@pytest.fixture(scope="module")
def training_out(model: PanSt3R, imgs: torch.Tensor, class_embeddings: torch.Tensor):
    with torch.no_grad():
        return model(imgs[None], class_embeddings)


def assert_close(actual: torch.Tensor, expected: np.ndarray, atol: float, what: str) -> None:
    exp = torch.from_numpy(np.asarray(expected)).to(torch.float64)
    act = actual.detach().to(torch.float64)
    assert tuple(act.shape) == tuple(exp.shape), f"{what}: shape {tuple(act.shape)} != {tuple(exp.shape)}"
    err = (act - exp).abs().max().item()
    assert err <= atol, f"{what}: max |diff| {err:.3g} > {atol}"


# -- encoder, DINOv2, memory, render --------------------------------------------------------------------------------


def test_encoder_tokens_and_positions(model: PanSt3R, imgs: torch.Tensor, expected: dict) -> None:
    with torch.no_grad():
        tokens, pos = model.encode(imgs)
    assert_close(tokens[None], expected["inter_enc_tokens"], ATOL, "encoder tokens")
    assert pos.dtype == torch.int64
    assert torch.equal(pos[None], torch.from_numpy(expected["inter_enc_pos"]))


def test_dino_tokens(model: PanSt3R, imgs: torch.Tensor, expected: dict) -> None:
    with torch.no_grad():
        tokens = model.dino_encoder(imgs)
    assert_close(tokens[None], expected["inter_dino_tokens"], ATOL, "DINOv2 tokens")


def test_memory_banks_and_labels(model: PanSt3R, imgs: torch.Tensor, expected: dict) -> None:
    with torch.no_grad():
        x, pos = model.encode(imgs)
        memory = model.build_memory([x[None, i] for i in range(3)], [pos[None, i] for i in range(3)])
    assert len(memory.banks) == model.config.decoder.depth
    for layer, bank in enumerate(memory.banks):
        assert_close(bank, expected[f"inter_mem_layer{layer}"], ATOL, f"memory bank {layer}")
    assert torch.equal(memory.labels, torch.from_numpy(expected["inter_mem_labels"]))
    assert memory.num_images == 3


def test_render_features_and_upscaler(model: PanSt3R, imgs: torch.Tensor, expected: dict) -> None:
    with torch.no_grad():
        x, pos = model.encode(imgs)
        memory = model.build_memory([x[None, i] for i in range(3)], [pos[None, i] for i in range(3)])
        kv = model.must3r_decoder.memory_kv(memory)
        pointmaps, feats = model.must3r_decoder.render(x[None], pos[None], kv, (48, 64))
        f16, mask_f = model.panoptic_features(imgs, x, pos, feats[0])
    assert_close(feats, expected["inter_dec_render_feats"], ATOL, "render features")
    assert_close(pointmaps, expected["train_pointmaps_raw"], ATOL, "render pointmaps")
    assert_close(f16, expected["inter_frame_tokens_f16"], ATOL, "frame tokens f16")
    assert_close(mask_f, expected["inter_mask_features"], ATOL, "mask features")


# -- training-mode forward ------------------------------------------------------------------------------------------


def test_training_forward_pointmaps(training_out, expected: dict) -> None:
    assert_close(training_out.pointmaps_raw, expected["train_pointmaps_raw"], ATOL, "pointmaps")
    pts, pts_local, conf = activate_pointmaps(training_out.pointmaps_raw)
    assert_close(pts, expected["train_pts3d"], ATOL, "pts3d")
    assert_close(pts_local, expected["train_pts3d_local"], ATOL, "pts3d_local")
    assert_close(conf, expected["train_conf"], ATOL, "conf")


def test_training_forward_panoptic(training_out, expected: dict) -> None:
    pan = training_out.panoptic
    assert_close(pan.class_logits, expected["train_pred_logits"], ATOL, "class logits")
    assert_close(pan.mask_logits, expected["train_pred_masks"], ATOL_MASK, "mask logits")
    assert_close(pan.queries, expected["train_out_queries"], ATOL, "queries")
    assert len(pan.aux) == expected["train_aux_pred_logits"].shape[0]
    for layer, aux in enumerate(pan.aux):
        assert_close(aux.class_logits, expected["train_aux_pred_logits"][layer], ATOL, f"aux {layer} logits")
        assert_close(aux.mask_logits, expected["train_aux_pred_masks"][layer], ATOL_MASK, f"aux {layer} masks")


def test_training_forward_has_gradients(model: PanSt3R, imgs: torch.Tensor, class_embeddings: torch.Tensor) -> None:
    """The training forward is differentiable w.r.t. the trainable head (what training optimises)."""
    out = model(imgs[None, :2], class_embeddings)
    loss = out.panoptic.mask_logits.square().mean() + out.panoptic.class_logits.square().mean()
    loss.backward()
    grads = [p.grad for p in model.panoptic_decoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.zero_grad(set_to_none=True)


def test_frozen_backbones_get_no_gradients(imgs: torch.Tensor, class_embeddings: torch.Tensor) -> None:
    """Official training setting: MUSt3R and DINOv2 frozen, only the head learns."""
    model = _load_fixture_model()
    model.set_trainable(must3r_encoder=False, must3r_decoder=False, dino=False, head=True)
    out = model(imgs[None, :2], class_embeddings)
    out.panoptic.mask_logits.square().mean().backward()
    assert all(p.grad is None for p in model.must3r_encoder.parameters())
    assert all(p.grad is None for p in model.dino_encoder.parameters())
    assert model.panoptic_decoder.mask_transformer.query_feat.weight.grad is not None
    assert not out.pointmaps_raw.requires_grad


# -- inference paths ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix,num_keyframes", [("infer_allkf", None), ("infer_kf2", 2)])
def test_inference(
    model: PanSt3R, imgs: torch.Tensor, class_embeddings: torch.Tensor, expected: dict, prefix: str,
    num_keyframes: int | None,
) -> None:
    policy = None if num_keyframes is None else LinspaceKeyframes(num_keyframes)
    out = model.forward_inference(list(imgs), class_embeddings, InferenceOptions(keyframes=policy, progress=False))
    assert out.keyframes == ((0, 1, 2) if num_keyframes is None else (0, 2))
    assert_close(out.stacked_pointmaps_raw(), expected[f"{prefix}_pointmaps_raw"], ATOL, f"{prefix} pointmaps")
    pts, pts_local, conf = activate_pointmaps(out.stacked_pointmaps_raw())
    assert_close(pts, expected[f"{prefix}_pts3d"], ATOL, f"{prefix} pts3d")
    assert_close(pts_local, expected[f"{prefix}_pts3d_local"], ATOL, f"{prefix} pts3d_local")
    assert_close(conf, expected[f"{prefix}_conf"], ATOL, f"{prefix} conf")
    assert_close(out.class_logits[None], expected[f"{prefix}_pred_logits"], ATOL, f"{prefix} class logits")
    assert_close(out.stacked_mask_logits(), expected[f"{prefix}_pred_masks"], ATOL_MASK, f"{prefix} mask logits")
    assert_close(out.queries[:, None], expected[f"{prefix}_out_queries"], ATOL, f"{prefix} queries")


def test_inference_batching_does_not_change_results(
    model: PanSt3R, imgs: torch.Tensor, class_embeddings: torch.Tensor
) -> None:
    """Rendering views together (batch_size 3) or one by one gives the same outputs."""
    views = list(imgs) + [imgs[1].flip(-1)]
    opts = dict(keyframes=LinspaceKeyframes(2), progress=False)
    one = model.forward_inference(views, class_embeddings, InferenceOptions(batch_size=1, **opts))
    many = model.forward_inference(views, class_embeddings, InferenceOptions(batch_size=3, **opts))
    torch.testing.assert_close(one.stacked_pointmaps_raw(), many.stacked_pointmaps_raw(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one.stacked_mask_logits(), many.stacked_mask_logits(), atol=1e-4, rtol=1e-5)


def test_all_keyframe_inference_equals_training_forward(
    model: PanSt3R, imgs: torch.Tensor, class_embeddings: torch.Tensor, training_out
) -> None:
    """With every view a keyframe, inference is the training forward (the fixture shows bitwise equality)."""
    out = model.forward_inference(list(imgs), class_embeddings, InferenceOptions(progress=False))
    torch.testing.assert_close(out.stacked_pointmaps_raw(), training_out.pointmaps_raw[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.stacked_mask_logits(), training_out.panoptic.mask_logits[0], atol=1e-4, rtol=0)


# -- CUDA -----------------------------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture()
def exact_cuda_matmuls():
    """TF32 would cost about three decimal digits; parity is checked in true float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.cuda
@cuda
def test_cuda_parity(
    exact_cuda_matmuls, imgs: torch.Tensor, class_embeddings: torch.Tensor, expected: dict
) -> None:
    """Device comes from the inputs: the same model on CUDA reproduces the official CPU outputs."""
    model = _load_fixture_model().to("cuda")
    with torch.no_grad():
        out = model(imgs[None].cuda(), class_embeddings.cuda())
    assert out.pointmaps_raw.device.type == "cuda"
    assert_close(out.pointmaps_raw.cpu(), expected["train_pointmaps_raw"], ATOL, "cuda pointmaps")
    assert_close(out.panoptic.class_logits.cpu(), expected["train_pred_logits"], ATOL, "cuda class logits")
    assert_close(out.panoptic.mask_logits.cpu(), expected["train_pred_masks"], ATOL_MASK, "cuda mask logits")
    inf = model.forward_inference(
        [im.cuda() for im in imgs], class_embeddings.cuda(),
        InferenceOptions(keyframes=LinspaceKeyframes(2), progress=False, output_device=torch.device("cpu")),
    )
    assert inf.pointmaps_raw[0].device.type == "cpu"
    assert_close(inf.stacked_pointmaps_raw(), expected["infer_kf2_pointmaps_raw"], ATOL, "cuda kf2 pointmaps")
    assert_close(inf.stacked_mask_logits(), expected["infer_kf2_pred_masks"], ATOL_MASK, "cuda kf2 masks")


@pytest.mark.cuda
@cuda
def test_cuda_autocast_inference(imgs: torch.Tensor, class_embeddings: torch.Tensor, expected: dict) -> None:
    """bfloat16 autocast of MUSt3R and DINOv2 stays close to float32 (heads run in float32)."""
    model = _load_fixture_model().to("cuda")
    inf = model.forward_inference(
        [im.cuda() for im in imgs], class_embeddings.cuda(),
        InferenceOptions(progress=False, autocast_dtype=torch.bfloat16),
    )
    pm = inf.stacked_pointmaps_raw().float().cpu()
    assert pm.dtype == torch.float32 and torch.isfinite(pm).all()
    ref = torch.from_numpy(expected["infer_allkf_pointmaps_raw"])
    assert (pm - ref).abs().max() < 0.1
    assert inf.class_logits.dtype == torch.float32
