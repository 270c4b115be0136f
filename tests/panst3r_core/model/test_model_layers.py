"""Laws and hand-computed cases for the model's parts: RoPE, sine encoding, memory, keyframes, activation, config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from jaxtyping import TypeCheckError

from panst3r_splat.core.model import (
    AllKeyframes,
    FarthestPointKeyframes,
    LinspaceKeyframes,
    PanSt3R,
    activate_pointmaps,
    config_from_dict,
    config_to_dict,
    default_keyframe_policy,
    official_v1_config,
    official_v2_config,
    small_config,
)
from panst3r_splat.core.model.config import DecoderConfig, PanSt3RConfig
from panst3r_splat.core.model.decoder import MUSt3RDecoder, _others_index
from panst3r_splat.core.model.encoder import check_image_size
from panst3r_splat.core.model.keyframes import (
    _farthest_point_sampling,
    farthest_point_sampling,
    memory_schedule,
    order_by_similarity,
)
from panst3r_splat.core.model.layers import RoPE2D
from panst3r_splat.core.model.mask_transformer import sine_position_embedding

# -- RoPE -------------------------------------------------------------------------------------------------------------


def test_rope_scores_depend_only_on_relative_position() -> None:
    """<R(p) q, R(p') k> is a function of p - p' (the point of rotary embeddings)."""
    rope = RoPE2D(100.0)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(pq: tuple[int, int], pk: tuple[int, int]) -> float:
        rq = rope(q, torch.tensor([[pq]]))
        rk = rope(k, torch.tensor([[pk]]))
        return float((rq * rk).sum())

    assert score((2, 3), (5, 1)) == pytest.approx(score((4, 7), (7, 5)), abs=1e-5)
    assert score((0, 0), (0, 0)) == pytest.approx(float((q * k).sum()), abs=1e-6)
    assert score((2, 3), (5, 1)) != pytest.approx(score((2, 3), (1, 5)), abs=1e-3)


def test_rope_rotates_y_with_first_half_and_x_with_second() -> None:
    rope = RoPE2D(100.0)
    t = torch.randn(1, 2, 3, 8)
    moved_x = rope(t, torch.tensor([[[0, 1], [0, 2], [0, 3]]]))
    assert torch.equal(moved_x[..., :4], t[..., :4])  # y = 0: first half untouched
    moved_y = rope(t, torch.tensor([[[1, 0], [2, 0], [3, 0]]]))
    assert torch.equal(moved_y[..., 4:], t[..., 4:])
    # Hand-computed: channel 0 of the y half at y=1 rotates with inv_freq 1 against channel 2 (half of 4).
    expected = t[0, 0, 0, 0] * math.cos(1.0) - t[0, 0, 0, 2] * math.sin(1.0)
    assert float(moved_y[0, 0, 0, 0]) == pytest.approx(float(expected), abs=1e-6)


# -- sine encoding ----------------------------------------------------------------------------------------------------


def test_sine_position_embedding_hand_values() -> None:
    pe = sine_position_embedding(2, 3, 4, torch.device("cpu"))
    assert pe.shape == (6, 8)
    y1 = 1 / (2 + 1e-6) * 2 * math.pi  # first row, normalised to 2*pi over 2 rows
    x2 = 2 / (3 + 1e-6) * 2 * math.pi  # second column
    token = 0 * 3 + 1  # row 0, column 1
    assert float(pe[token, 0]) == pytest.approx(math.sin(y1), abs=1e-6)
    assert float(pe[token, 1]) == pytest.approx(math.cos(y1), abs=1e-6)
    assert float(pe[token, 2]) == pytest.approx(math.sin(y1 / 100), abs=1e-6)  # 10000 ** (2 * 1 / 4)
    assert float(pe[token, 4]) == pytest.approx(math.sin(x2), abs=1e-6)
    assert float(pe[token, 7]) == pytest.approx(math.cos(x2 / 100), abs=1e-6)


# -- decoder memory ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decoder() -> MUSt3RDecoder:
    torch.manual_seed(0)
    dec = MUSt3RDecoder(DecoderConfig(enc_embed_dim=32, embed_dim=32, depth=2, num_heads=2))
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return dec.eval()


def _tokens(n: int, h: int = 2, w: int = 3) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(n)
    pos = torch.cartesian_prod(torch.arange(h), torch.arange(w))[None]
    return [torch.randn(1, h * w, 32, generator=g) for _ in range(n)], [pos] * n


def test_memory_grows_by_image_and_labels_follow(decoder: MUSt3RDecoder) -> None:
    x, pos = _tokens(3)
    with torch.no_grad():
        mem = decoder.update_memory(x[:2], pos[:2], None)
        mem = decoder.update_memory(x[2:], pos[2:], mem)
    assert mem.num_images == 3 and mem.num_tokens == 18
    assert mem.labels.tolist() == [[0] * 6 + [1] * 6 + [2] * 6]
    assert all(b.shape == (1, 18, 32) for b in mem.banks)


def test_memory_update_key_sets_exclude_the_image_itself() -> None:
    """Hand case of the official ``make_mem_mask``: 4 memory tokens, new images of 3 and 2 tokens."""
    i0 = _others_index(4, [3, 2], 0, torch.device("cpu"))
    i1 = _others_index(4, [3, 2], 1, torch.device("cpu"))
    assert i0.tolist() == [0, 1, 2, 3, 7, 8]
    assert i1.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert _others_index(4, [3], 0, torch.device("cpu")) == slice(0, 4)


def test_memory_update_appends_without_touching_old_banks(decoder: MUSt3RDecoder) -> None:
    x, pos = _tokens(3)
    with torch.no_grad():
        mem = decoder.update_memory(x[:2], pos[:2], None)
        a = decoder.update_memory(x[2:], pos[2:], mem)
        b = decoder.update_memory([x[2] * 2], pos[2:], mem)
    for la, lb, old in zip(a.banks, b.banks, mem.banks):
        assert torch.equal(la[:, :12], old) and torch.equal(lb[:, :12], old)
        assert not torch.equal(la[:, 12:], lb[:, 12:])


def test_render_of_views_together_equals_one_by_one(decoder: MUSt3RDecoder) -> None:
    """Cross-attention has no positions and one key set per scene: batching views changes nothing."""
    x, pos = _tokens(3)
    with torch.no_grad():
        kv = decoder.memory_kv(decoder.update_memory(x[:2], pos[:2], None))
        new = torch.stack([x[2][0], x[0][0] * 0.5])[None]
        together, feats = decoder.render(new, torch.stack([pos[0][0]] * 2)[None], kv, (32, 48))
        for i in range(2):
            one, f1 = decoder.render(new[:, i : i + 1], pos[0][None], kv, (32, 48))
            torch.testing.assert_close(together[:, i : i + 1], one, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(feats[:, i : i + 1], f1, atol=1e-6, rtol=1e-5)
    assert together.shape == (1, 2, 32, 48, 7)


def test_image_size_must_be_multiple_of_patch() -> None:
    check_image_size(48, 64, 16)
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        check_image_size(50, 64, 16)


# -- keyframes --------------------------------------------------------------------------------------------------------


def test_linspace_keyframes_match_official() -> None:
    d = torch.zeros(10, 4)
    assert LinspaceKeyframes(2).select(d[:3]) == [0, 2]
    assert LinspaceKeyframes(4).select(d) == [int(i) for i in np.linspace(0, 9, 4, dtype=int)]
    assert LinspaceKeyframes(50).select(d) == list(range(10))
    assert AllKeyframes().select(d[:4]) == [0, 1, 2, 3]
    assert isinstance(default_keyframe_policy(50), AllKeyframes)
    assert default_keyframe_policy(51) == LinspaceKeyframes(50)


@pytest.mark.parametrize("seed", range(20))
def test_farthest_point_sampling_equals_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 13)), int(rng.integers(1, 13))
    pts = rng.normal(size=(n, 3))
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    k = min(k, n)
    assert farthest_point_sampling(dist, k, first=0) == _farthest_point_sampling(dist, k, first=0)


def test_farthest_point_keyframes_cover_clusters_and_start_connected() -> None:
    """Three tight clusters of views: 3 keyframes take one view of each, ordered through similarity."""
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3]
    desc = np.concatenate([c + 0.01 * rng.normal(size=(5, 8)) for c in centres])
    picked = FarthestPointKeyframes(3).select(torch.from_numpy(desc))
    assert sorted(p // 5 for p in picked) == [0, 1, 2]
    assert len(set(picked)) == 3
    assert FarthestPointKeyframes(40).select(torch.from_numpy(desc)).__len__() == 15


def test_order_by_similarity_hand_case() -> None:
    # 0-1 similar, 1-2 similar, 0-2 not: start at the most connected (1), then its best neighbour, then the rest.
    sim = np.array([[1, 0.9, 0.1], [0.9, 1, 0.8], [0.1, 0.8, 1.0]])
    assert order_by_similarity(sim, [10, 11, 12]) == [11, 10, 12]


def test_memory_schedule() -> None:
    assert memory_schedule(5) == [2, 1, 1, 1]
    assert memory_schedule(1) == [1]
    assert memory_schedule(2) == [2]
    assert memory_schedule(0) == []


# -- activation -------------------------------------------------------------------------------------------------------


def test_activate_pointmaps_hand_case() -> None:
    raw = torch.tensor([[3.0, 4.0, 0.0, 0.0, 0.0, 0.0, math.log(2.0)]])
    pts, local, conf = activate_pointmaps(raw)
    torch.testing.assert_close(pts, torch.tensor([[0.6, 0.8, 0.0]]) * math.expm1(5.0))
    torch.testing.assert_close(local, torch.zeros(1, 3))  # the 1e-8 clip keeps the origin finite
    torch.testing.assert_close(conf, torch.tensor([3.0]))


# -- config -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [official_v1_config, official_v2_config, small_config])
def test_config_json_round_trip(make) -> None:
    import json

    cfg = make()
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg


def test_config_rejects_inconsistent_widths() -> None:
    cfg = config_to_dict(small_config())
    cfg["upscaler"]["input_dim"] += 1
    with pytest.raises(ValueError, match="upscaler.input_dim"):
        config_from_dict(cfg)
    cfg = config_to_dict(small_config())
    cfg["encoder"]["bogus"] = 1
    with pytest.raises(ValueError, match="unknown EncoderConfig fields"):
        config_from_dict(cfg)


def test_official_parameter_budget() -> None:
    """method.md 1.11: v1 878.9 M parameters in 1170 tensors."""
    with torch.device("meta"):
        model = PanSt3R(official_v1_config())
    assert len(model.state_dict()) == 1170
    assert round(sum(p.numel() for p in model.parameters()) / 1e5) == 8789
    assert isinstance(model.config, PanSt3RConfig)


# -- run-time shape annotations ---------------------------------------------------------------------------------------


def test_shape_annotations_hold_at_run_time() -> None:
    """Run the training forward and the inference (v1 and v2 heads) with every annotation of the core checked (the
    suite's shape checker, tests/conftest.py)."""
    from panst3r_splat.core.model import InferenceOptions, LinspaceKeyframes, outputs

    with pytest.raises(TypeCheckError, match="7"):  # the checker does check: 5 channels are not the annotated 7
        outputs.activate_pointmaps(torch.zeros(2, 5))

    from test_model_v2 import tiny_v2_config  # noqa: E402 (sibling test module)

    for cfg in (tiny_v2_config(), tiny_v2_config(landscape_only=True)):
        torch.manual_seed(0)
        model = PanSt3R(cfg).eval()
        emb = torch.nn.functional.normalize(torch.randn(4, 768), dim=-1)
        with torch.no_grad():
            out = model(torch.rand(1, 2, 3, 32, 48) * 2 - 1, emb)
        outputs.activate_pointmaps(out.pointmaps_raw)
        views = [torch.rand(3, 32, 48) * 2 - 1, torch.rand(3, 48, 32) * 2 - 1, torch.rand(3, 32, 48) * 2 - 1]
        model.forward_inference(views, emb, InferenceOptions(keyframes=LinspaceKeyframes(2), progress=False))
