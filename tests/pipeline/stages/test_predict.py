"""`panst3r-splat predict` and `panst3r-splat merge` end to end on the CPU.

A tiny random-weight model of our own format (the parity fixture's sizes) is saved into a temporary folder and run
through the command functions: every key, shape and dtype of ``predictions.npz`` against CLI.md, the label PNGs at
the original resolution, ``segments.json``, a Panoptic Lifting scene as input, re-merging in place and into
``--out``, one-line errors. Parity through the command: the official fixture's images written as PNG reproduce the
fixture's inference outputs (all keyframes and 2 keyframes) with its README's tolerances.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from _fixtures import PARITY_FIXTURE

from panst3r_splat.core import class_table
from panst3r_splat.core.checkpoint import save_checkpoint
from panst3r_splat.core.merging import merge_panoptic
from panst3r_splat.core.model import (
    AllKeyframes,
    DecoderConfig,
    DinoConfig,
    EncoderConfig,
    FarthestPointKeyframes,
    LinspaceKeyframes,
    MaskTransformerConfig,
    PanSt3R,
    PanSt3RConfig,
    PixelShuffleConfig,
)
from panst3r_splat.core.photos import read_photos
from panst3r_splat.core.predictions import load_predictions, read_points_ply
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.frontends import cli, commands
from panst3r_splat.pipeline.frontends.commands import MergeArgs, PredictArgs
from panst3r_splat.pipeline.stages import predict as predict_module
from panst3r_splat.pipeline.stages.predict import checkpoint_class_set, keyframe_policy
from panst3r_splat.splat.scene_io import load_scene

REPO = Path(__file__).resolve().parents[3]
FIXTURE = PARITY_FIXTURE

CLASS_NAMES = ("wall", "floor", "chair", "table", "bed")
ORIG_W, ORIG_H = 80, 60  # 4:3, bucketed to 64x48 at the model's training size 64
MODEL_W, MODEL_H = 64, 48
NUM_QUERIES = 8

#: CLI.md "Predictions folder": key -> (shape with V, H, W, Q, K, k symbols; dtype kind and size).
CONTRACT = {
    "image_names": (("V",), "U"),
    "images": (("V", "H", "W", 3), "uint8"),
    "pts3d": (("V", "H", "W", 3), "float32"),
    "pts3d_local": (("V", "H", "W", 3), "float32"),
    "conf": (("V", "H", "W"), "float32"),
    "mask_logits": (("V", "Q", "H2", "W2"), "float32"),
    "class_logits": (("Q", "K"), "float32"),
    "class_names": (("K",), "U"),
    "class_ids": (("K",), "int32"),
    "isthing": (("K",), "bool"),
    "orig_hw": (("V", 2), "int32"),
    "to_orig": (("V", 3, 3), "float32"),
    "keyframes": (("k",), "int64"),
    "K": (("V", 3, 3), "float32"),
    "T_world_cam": (("V", 4, 4), "float32"),
    "panoptic": (("V", "H", "W"), "int32"),
    "camera_source": ((), "U"),
    "camera_ok": (("V",), "bool"),
    "camera_scale": (("V",), "float32"),
    "camera_residuals": (("V", 4), "float32"),
}


# ------------------------------------------------------------------------------------------------------ fixtures


def tiny_config() -> PanSt3RConfig:
    """The parity fixture's sizes, orientation-consistent, trained (nominally) at long side 64."""
    return PanSt3RConfig(
        encoder=EncoderConfig(embed_dim=64, depth=2, num_heads=4),
        decoder=DecoderConfig(enc_embed_dim=64, embed_dim=48, depth=2, num_heads=4, landscape_only=False),
        dino=DinoConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=70,
                        landscape_only=False),
        upscaler=PixelShuffleConfig(input_dim=176, fp_dim=(48, 32, 24, 16)),
        mask_transformer=MaskTransformerConfig(fpn_dim=48, hidden_dim=48, mask_dim=16, ff_dim=96,
                                               num_queries=NUM_QUERIES, num_heads=4, dec_layers=2,
                                               landscape_only=False),
        image_size=64,
        postprocess_default="standard_v2",
    )


@pytest.fixture(scope="module")
def own_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = PanSt3R(tiny_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    emb = torch.nn.functional.normalize(torch.randn(len(CLASS_NAMES), 768), dim=-1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, model, class_names=CLASS_NAMES, class_embeddings=emb)
    return path


def _smooth_image(seed: int, h: int, w: int) -> np.ndarray:
    """A blocky random colour image (so the model sees some structure), uint8 RGB."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    return np.asarray(PIL.Image.fromarray(small).resize((w, h), PIL.Image.BILINEAR))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        PIL.Image.fromarray(_smooth_image(i, ORIG_H, ORIG_W)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def predicted(own_checkpoint: Path, photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "pred"
    commands.predict(PredictArgs(images=photos, out=out, checkpoint=own_checkpoint, merge="qubo", device="cpu"))
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_contract(folder: Path, V: int, H: int, W: int, Q: int, K: int) -> dict[str, np.ndarray]:
    with np.load(folder / "predictions.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert set(arrays) == set(CONTRACT)
    sizes = {"V": V, "H": H, "W": W, "H2": H // 2, "W2": W // 2, "Q": Q, "K": K, "k": len(arrays["keyframes"])}
    for key, (shape, dtype) in CONTRACT.items():
        expected = tuple(sizes[s] if isinstance(s, str) else s for s in shape)
        assert arrays[key].shape == expected, key
        if dtype == "U":
            assert arrays[key].dtype.kind == "U", key
        else:
            assert arrays[key].dtype == np.dtype(dtype), key
    return arrays


# ------------------------------------------------------------------------------------------------------ predict


def test_predict_folder_writes_the_documented_folder(predicted: Path, photos: Path) -> None:
    arrays = _check_contract(predicted, V=3, H=MODEL_H, W=MODEL_W, Q=NUM_QUERIES, K=len(CLASS_NAMES))
    assert arrays["image_names"].tolist() == ["img0.png", "img1.png", "img2.png"]
    assert arrays["class_names"].tolist() == list(CLASS_NAMES)
    # Built-in class names take their dataset ids and thing flags from the class table.
    assert arrays["class_ids"].tolist() == [class_table.CLASS_BY_NAME[n].id for n in CLASS_NAMES]
    assert arrays["isthing"].tolist() == [class_table.CLASS_BY_NAME[n].isthing for n in CLASS_NAMES]
    assert arrays["keyframes"].tolist() == [0, 1, 2]  # auto: all views up to 50
    assert (arrays["orig_hw"] == [ORIG_H, ORIG_W]).all()
    # 80x60 -> 64x48 without a crop: model pixel centre u maps to (u + 0.5) * 1.25 - 0.5.
    np.testing.assert_allclose(arrays["to_orig"][0], [[1.25, 0, 0.125], [0, 1.25, 0.125], [0, 0, 1]], atol=1e-6)
    assert (arrays["conf"] >= 1.0).all()
    # Our own checkpoints use the project's principal point (the image centre).
    np.testing.assert_allclose(arrays["K"][:, 0, 2], (MODEL_W - 1) / 2)
    np.testing.assert_allclose(arrays["K"][:, 1, 2], (MODEL_H - 1) / 2)
    R = arrays["T_world_cam"][:, :3, :3].astype(np.float64)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(arrays["T_world_cam"][:, 3], np.broadcast_to([0, 0, 0, 1], (3, 4)))
    # What the model saw: the 80x60 pictures resized to 64x48.
    expected = np.asarray(PIL.Image.open(photos / "img1.png"))
    assert np.abs(arrays["images"][1].astype(int).mean((0, 1)) - expected.astype(int).mean((0, 1))).max() < 3
    # Where the photos are, for fit --fit-size.
    records = read_photos(predicted)
    assert [(r.name, Path(r.path), r.height, r.width, r.frame) for r in records] == [
        (f"img{i}.png", (photos / f"img{i}.png").resolve(), ORIG_H, ORIG_W, None) for i in range(3)]


def test_fit_from_predictions_trains_at_the_photos_resolution(predicted: Path, tmp_path: Path) -> None:
    assert cli.main(["fit", "--predictions", str(predicted), "--out", str(tmp_path / "scene"), "--steps", "2",
                 "--budget", "300"]) == 0
    scene = load_scene(tmp_path / "scene")
    assert (scene.cameras.width, scene.cameras.height) == (ORIG_W, ORIG_H)
    K_model = load_predictions(predicted).K[0].astype(np.float64)
    to_orig = np.array([[1.25, 0, 0.125], [0, 1.25, 0.125], [0, 0, 1]])
    np.testing.assert_allclose(scene.cameras.K[0].numpy(), to_orig @ K_model, rtol=1e-5)
    assert cli.main(["fit", "--predictions", str(predicted), "--out", str(tmp_path / "model"), "--steps", "2",
                 "--budget", "300", "--fit-size", "0"]) == 0
    assert (load_scene(tmp_path / "model").cameras.width, load_scene(tmp_path / "model").cameras.height) == (
        MODEL_W, MODEL_H)


def test_predict_labels_segments_and_points_agree(predicted: Path) -> None:
    arrays = dict(np.load(predicted / "predictions.npz"))
    segments = json.loads((predicted / "segments.json").read_text())
    for seg in segments:
        assert {"id", "category_id", "isthing", "score", "query_id", "area"} <= set(seg)
        assert 0 <= seg["query_id"] < NUM_QUERIES
        assert seg["area"] == int((arrays["panoptic"] == seg["id"]).sum())
        assert seg["isthing"] == bool(arrays["isthing"][seg["category_id"]])
    ids = set(np.unique(arrays["panoptic"]).tolist()) - {0}
    assert ids <= {s["id"] for s in segments}
    class_of = {0: 0} | {s["id"]: int(arrays["class_ids"][s["category_id"]]) for s in segments}
    for name in arrays["image_names"]:
        stem = Path(str(name)).stem
        sem = np.asarray(PIL.Image.open(predicted / "pred_semantics" / f"{stem}.png"))
        sid = np.asarray(PIL.Image.open(predicted / "pred_surrogateid" / f"{stem}.png"))
        assert sem.shape == sid.shape == (ORIG_H, ORIG_W)  # original resolution
        assert sem.dtype == np.uint8 and sid.dtype.kind in "iu"
        for seg_id in np.unique(sid):
            assert (sem[sid == seg_id] == class_of[int(seg_id)]).all()
    points, colors = read_points_ply(predicted / "points.ply")
    assert len(points) == len(colors) == int((arrays["conf"] >= 3.0).sum())


def test_predict_is_deterministic_and_merge_matches_the_core(predicted: Path, own_checkpoint: Path, photos: Path,
                                                             tmp_path: Path) -> None:
    commands.predict(PredictArgs(images=photos, out=tmp_path / "again", checkpoint=own_checkpoint, merge="qubo",
                                 device="cpu"))
    first, second = load_predictions(predicted), load_predictions(tmp_path / "again")
    for key, value in first.to_npz_dict().items():
        np.testing.assert_array_equal(value, second.to_npz_dict()[key], err_msg=key)
    direct = merge_panoptic("qubo", torch.from_numpy(first.class_logits), torch.from_numpy(first.mask_logits),
                            (MODEL_H, MODEL_W), isthing=torch.from_numpy(first.isthing))
    np.testing.assert_array_equal(direct.panoptic.numpy(), first.panoptic)


def test_default_merge_is_the_checkpoint_postprocess_default(own_checkpoint: Path, photos: Path,
                                                             tmp_path: Path) -> None:
    commands.predict(PredictArgs(images=photos, out=tmp_path / "p", checkpoint=own_checkpoint, device="cpu"))
    pred = load_predictions(tmp_path / "p")
    direct = merge_panoptic("standard_v2", torch.from_numpy(pred.class_logits), torch.from_numpy(pred.mask_logits),
                            (MODEL_H, MODEL_W), isthing=torch.from_numpy(pred.isthing))
    np.testing.assert_array_equal(direct.panoptic.numpy(), pred.panoptic)


def test_single_image_is_paired_with_itself(own_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    PIL.Image.fromarray(_smooth_image(7, MODEL_H, MODEL_W)).save(folder / "only.png")
    commands.predict(PredictArgs(images=folder, out=tmp_path / "p", checkpoint=own_checkpoint, device="cpu"))
    arrays = _check_contract(tmp_path / "p", V=1, H=MODEL_H, W=MODEL_W, Q=NUM_QUERIES, K=len(CLASS_NAMES))
    assert arrays["keyframes"].tolist() == [0]
    assert (tmp_path / "p" / "pred_semantics" / "only.png").is_file()


def test_predict_on_a_panoptic_lifting_scene(own_checkpoint: Path, tmp_path: Path) -> None:
    from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene
    from panst3r_splat.pipeline.evaluation import Protocol, evaluate_folders

    scene = write_scene(generate_scene(SynthConfig(train_views=3, test_views=2, width=64, height=48), 3),
                        tmp_path / "scene")
    splits = json.loads((scene / "splits.json").read_text())
    commands.predict(PredictArgs(images=scene, out=tmp_path / "p", checkpoint=own_checkpoint, device="cpu"))
    arrays = _check_contract(tmp_path / "p", V=3, H=48, W=64, Q=NUM_QUERIES, K=len(CLASS_NAMES))
    assert [Path(str(n)).stem for n in arrays["image_names"]] == splits["train"]
    assert sorted(p.stem for p in (tmp_path / "p" / "pred_semantics").iterdir()) == sorted(splits["train"])
    # The label PNGs are in the evaluation format: `eval --split train` scores them directly.
    report = evaluate_folders(scene, tmp_path / "p", split="train", size=None, protocol=Protocol.REFERENCE)
    assert report is not None
    commands.predict(PredictArgs(images=scene, out=tmp_path / "t", checkpoint=own_checkpoint, split="test",
                                 device="cpu"))
    names = load_predictions(tmp_path / "t").image_names.tolist()
    assert [Path(n).stem for n in names] == splits["test"]


# -------------------------------------------------------------------------------------------------------- merge


def test_merge_to_out_leaves_the_source_untouched(predicted: Path, tmp_path: Path) -> None:
    before = _digest(predicted)
    commands.merge(MergeArgs(predictions=predicted, merge="standard_v1", out=tmp_path / "m", device="cpu"))
    assert _digest(predicted) == before
    assert read_photos(tmp_path / "m") == read_photos(predicted)  # the photos' record travels with the folder
    src, new = load_predictions(predicted), load_predictions(tmp_path / "m")
    for key, value in src.to_npz_dict().items():
        if key != "panoptic":
            np.testing.assert_array_equal(value, new.to_npz_dict()[key], err_msg=key)
    direct = merge_panoptic("standard_v1", torch.from_numpy(src.class_logits), torch.from_numpy(src.mask_logits),
                            (MODEL_H, MODEL_W), isthing=torch.from_numpy(src.isthing))
    np.testing.assert_array_equal(new.panoptic, direct.panoptic.numpy())
    segments = json.loads((tmp_path / "m" / "segments.json").read_text())
    assert [s["id"] for s in segments] == [s.id for s in direct.segments]


def test_merge_in_place_rewrites_and_is_idempotent(predicted: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(predicted, folder)
    # the method predict used: nothing changes
    commands.merge(MergeArgs(predictions=folder, merge="qubo", device="cpu"))
    assert load_predictions(folder).to_npz_dict()["panoptic"].tolist() == load_predictions(predicted).panoptic.tolist()
    assert json.loads((folder / "segments.json").read_text()) == json.loads((predicted / "segments.json").read_text())
    commands.merge(MergeArgs(predictions=folder, merge="standard_v2", device="cpu"))
    once = _digest(folder)
    commands.merge(MergeArgs(predictions=folder, merge="standard_v2", device="cpu"))
    assert _digest(folder) == once
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


# -------------------------------------------------------------------------------------------------- options


def test_keyframe_policies() -> None:
    assert keyframe_policy("auto", "linspace", 50) == AllKeyframes()
    assert keyframe_policy("auto", "linspace", 51) == LinspaceKeyframes(50)
    assert keyframe_policy("auto", "farthest", 200) == FarthestPointKeyframes(50)
    assert keyframe_policy("all", "farthest", 200) == AllKeyframes()
    assert keyframe_policy("7", "linspace", 20) == LinspaceKeyframes(7)
    assert keyframe_policy("7", "farthest", 20) == FarthestPointKeyframes(7)
    for bad in ("0", "-3", "some", ""):
        with pytest.raises(UserError, match="--keyframes"):
            keyframe_policy(bad, "linspace", 10)


def test_checkpoint_class_set_ids() -> None:
    emb = np.eye(3, 8, dtype=np.float32)
    table = checkpoint_class_set(("chair", "wall", "bed"), emb)
    assert table.class_ids.tolist() == [5, 1, 4]
    assert table.isthing.tolist() == [True, False, True]
    other = checkpoint_class_set(("chair", "spaceship", "bed"), emb)
    assert other.class_ids.tolist() == [1, 2, 3]
    assert other.isthing.tolist() == [True, True, True]


# --------------------------------------------------------------------------------------------------- errors


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    logging.disable(logging.CRITICAL)  # only the error line is under test
    try:
        rc = cli.main(argv)
    finally:
        logging.disable(logging.NOTSET)
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USER_ERROR, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("panst3r-splat:")]
    assert len(lines) == 1, err
    return lines[0]


def test_error_missing_folder(capsys: pytest.CaptureFixture[str], own_checkpoint: Path, tmp_path: Path) -> None:
    line = _cli_error(capsys, ["predict", "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "p"),
                               "--checkpoint", str(own_checkpoint)])
    assert "does not exist" in line and "nope" in line


def test_error_corrupt_image(capsys: pytest.CaptureFixture[str], own_checkpoint: Path, photos: Path,
                             tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    shutil.copytree(photos, folder)
    (folder / "broken.png").write_bytes(b"this is not a png")
    line = _cli_error(capsys, ["predict", "--images", str(folder), "--out", str(tmp_path / "p"),
                               "--checkpoint", str(own_checkpoint), "--device", "cpu"])
    assert "broken.png" in line
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"\x80\x04K\x01."])
def test_error_wrong_checkpoint(capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path,
                                content: bytes) -> None:
    bad = tmp_path / "model.pth"
    bad.write_bytes(content)
    line = _cli_error(capsys, ["predict", "--images", str(photos), "--out", str(tmp_path / "p"),
                               "--checkpoint", str(bad)])
    assert "model.pth" in line


def test_error_builtin_model_missing(capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predict_module, "default_checkpoint_path", lambda: tmp_path / "absent.safetensors")
    line = _cli_error(capsys, ["predict", "--images", str(photos), "--out", str(tmp_path / "p")])
    assert "--checkpoint" in line and "absent.safetensors" in line


def test_error_official_checkpoint_without_classes(capsys: pytest.CaptureFixture[str], photos: Path,
                                                   tmp_path: Path) -> None:
    line = _cli_error(capsys, ["predict", "--images", str(photos), "--out", str(tmp_path / "p"),
                               "--checkpoint", str(FIXTURE / "checkpoint.pth")])
    assert "--classes" in line


def test_error_mixed_sizes(capsys: pytest.CaptureFixture[str], own_checkpoint: Path, photos: Path,
                           tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    shutil.copytree(photos, folder)
    PIL.Image.fromarray(_smooth_image(9, ORIG_W, ORIG_H)).save(folder / "portrait.png")  # 60x80: other bucket
    line = _cli_error(capsys, ["predict", "--images", str(folder), "--out", str(tmp_path / "p"),
                               "--checkpoint", str(own_checkpoint), "--device", "cpu"])
    assert "64x48" in line and "48x64" in line and "--size native" in line


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--size", "50", "multiple"), ("--size", "big", "--size"), ("--keyframes", "zero", "--keyframes"),
    ("--batch-size", "0", "--batch-size"),
])
def test_error_bad_options(capsys: pytest.CaptureFixture[str], own_checkpoint: Path, photos: Path,
                           tmp_path: Path, option: str, value: str, needle: str) -> None:
    line = _cli_error(capsys, ["predict", "--images", str(photos), "--out", str(tmp_path / "p"),
                               "--checkpoint", str(own_checkpoint), option, value, "--device", "cpu"])
    assert needle in line


def test_error_out_is_an_unrelated_folder(capsys: pytest.CaptureFixture[str], own_checkpoint: Path, photos: Path,
                                          tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    line = _cli_error(capsys, ["predict", "--images", str(photos), "--out", str(tmp_path / "mine"),
                               "--checkpoint", str(own_checkpoint), "--device", "cpu"])
    assert "mine" in line
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_error_merge_without_predictions(capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path) -> None:
    line = _cli_error(capsys, ["merge", "--predictions", str(photos)])
    assert "predictions.npz" in line
    line = _cli_error(capsys, ["merge", "--predictions", str(tmp_path / "nope")])
    assert "nope" in line


# --------------------------------------------------------------------------------------------------- parity


# ---------------------------------------------------------------------------------------- SigLIP class sets

SIGLIP_TINY = REPO / "tests" / "data" / "siglip_tiny"


@pytest.fixture(scope="module")
def siglip_768(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SigLIP fixture with a random 32 -> 768 pooler head, so its embeddings fit a PanSt3R (lang_dim 768)."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("siglip") / "siglip_768"
    shutil.copytree(SIGLIP_TINY, folder, ignore=shutil.ignore_patterns("*.py", "*.md", "*.json"))
    shutil.copy(SIGLIP_TINY / "tokenizer_config.json", folder)
    config = json.loads((SIGLIP_TINY / "config.json").read_text())
    config["text_config"]["projection_size"] = 768
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(SIGLIP_TINY / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    weights["text_model.head.weight"] = torch.randn(768, 32, generator=g)
    weights["text_model.head.bias"] = torch.randn(768, generator=g)
    save_file(weights, folder / "model.safetensors")
    return folder


def test_classes_command_writes_a_file_predict_accepts(own_checkpoint: Path, photos: Path, siglip_768: Path,
                                                       tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("# classes of the test\nchair\n\nwall\n  bed  \n", encoding="utf-8")
    assert cli.main(["classes", "--siglip", str(siglip_768), "--names", str(names), "--out",
                     str(tmp_path / "c.npz"), "--device", "cpu"]) == 0
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        written = {k: npz[k] for k in npz.files}
    assert written["class_names"].dtype.kind == "U" and written["class_names"].tolist() == ["chair", "wall", "bed"]
    assert written["class_embeddings"].dtype == np.float32 and written["class_embeddings"].shape == (3, 768)
    np.testing.assert_allclose(np.linalg.norm(written["class_embeddings"], axis=1), 1.0, atol=1e-6)
    assert written["class_ids"].tolist() == [5, 1, 4] and written["isthing"].tolist() == [True, False, True]

    commands.predict(PredictArgs(images=photos, out=tmp_path / "p1", checkpoint=own_checkpoint,
                                 classes=tmp_path / "c.npz", merge="qubo", device="cpu"))
    via_file = _check_contract(tmp_path / "p1", V=3, H=MODEL_H, W=MODEL_W, Q=NUM_QUERIES, K=3)
    assert via_file["class_names"].tolist() == ["chair", "wall", "bed"]
    assert via_file["class_ids"].tolist() == [5, 1, 4]
    # --siglip computes the same class set on the fly: the same class logits.
    commands.predict(PredictArgs(images=photos, out=tmp_path / "p2", checkpoint=own_checkpoint, siglip=siglip_768,
                                 class_names=names, merge="qubo", device="cpu"))
    direct = dict(np.load(tmp_path / "p2" / "predictions.npz"))
    np.testing.assert_allclose(direct["class_logits"], via_file["class_logits"], atol=1e-6, rtol=0)


def test_predict_siglip_defaults_to_the_checkpoint_names(own_checkpoint: Path, photos: Path, siglip_768: Path,
                                                         tmp_path: Path) -> None:
    commands.predict(PredictArgs(images=photos, out=tmp_path / "p", checkpoint=own_checkpoint, siglip=siglip_768,
                                 merge="qubo", device="cpu"))
    arrays = _check_contract(tmp_path / "p", V=3, H=MODEL_H, W=MODEL_W, Q=NUM_QUERIES, K=len(CLASS_NAMES))
    assert arrays["class_names"].tolist() == list(CLASS_NAMES)


def test_official_checkpoint_with_siglip_uses_the_class_table(fixture_photos: Path, siglip_768: Path,
                                                              tmp_path: Path) -> None:
    assert FIXTURE is not None
    commands.predict(PredictArgs(images=fixture_photos, out=tmp_path / "p", checkpoint=FIXTURE / "checkpoint.pth",
                                 siglip=siglip_768, size="native", device="cpu"))
    arrays = _check_contract(tmp_path / "p", V=3, H=48, W=64, Q=8, K=class_table.NUM_CLASSES)
    assert arrays["class_names"].tolist() == class_table.class_names()
    assert arrays["class_ids"].tolist() == list(range(1, class_table.NUM_CLASSES + 1))


@pytest.mark.parametrize(("argv", "needle"), [
    (["--classes", "c.npz", "--siglip", "SIGLIP"], "either --classes"),
    (["--class-names", "names.txt"], "--class-names needs --siglip"),
    (["--siglip", "absent"], "absent not found"),
    (["--siglip", "SIGLIP", "--class-names", "absent.txt"], "absent.txt"),
])
def test_error_siglip_options(capsys: pytest.CaptureFixture[str], own_checkpoint: Path, photos: Path,
                              siglip_768: Path, tmp_path: Path, argv: list[str], needle: str) -> None:
    argv = [str(siglip_768) if a == "SIGLIP" else str(tmp_path / a) if a.endswith((".npz", ".txt")) or a == "absent"
            else a for a in argv]
    line = _cli_error(capsys, ["predict", "--images", str(photos), "--out", str(tmp_path / "p"), "--checkpoint",
                               str(own_checkpoint), "--device", "cpu", *argv])
    assert needle in line


def test_error_classes_command(capsys: pytest.CaptureFixture[str], siglip_768: Path, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    shutil.copytree(siglip_768, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    line = _cli_error(capsys, ["classes", "--siglip", str(pickled), "--out", str(tmp_path / "c.npz")])
    assert "pytorch_model.bin" in line and "model.safetensors" in line
    line = _cli_error(capsys, ["classes", "--siglip", str(siglip_768), "--out", str(tmp_path / "c.txt")])
    assert ".npz" in line
    (tmp_path / "empty.txt").write_text("# nothing\n")
    line = _cli_error(capsys, ["classes", "--siglip", str(siglip_768), "--names", str(tmp_path / "empty.txt"),
                               "--out", str(tmp_path / "c.npz")])
    assert "no names" in line
    assert not (tmp_path / "c.npz").exists()


@pytest.fixture(scope="module")
def fixture_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert FIXTURE is not None
    folder = tmp_path_factory.mktemp("fixture_imgs")
    for i, img in enumerate(np.load(FIXTURE / "inputs.npz")["imgs_uint8"]):
        PIL.Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"view{i}.png")
    return folder


def _assert_close(actual: np.ndarray, expected: np.ndarray, atol: float, what: str) -> None:
    assert actual.shape == expected.shape, what
    err = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
    assert err <= atol, f"{what}: max |diff| {err:.3g} > {atol}"


def _same_up_to_renumbering(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs}) and ((a == 0) == (b == 0)).all()


@pytest.mark.parametrize(("keyframes", "tag", "expected_keyframes"), [("all", "allkf", [0, 1, 2]),
                                                                      ("2", "kf2", [0, 2])])
def test_parity_through_the_command(fixture_photos: Path, tmp_path: Path, keyframes: str, tag: str,
                                    expected_keyframes: list[int]) -> None:
    assert FIXTURE is not None
    commands.predict(PredictArgs(images=fixture_photos, out=tmp_path / "p", checkpoint=FIXTURE / "checkpoint.pth",
                                 classes=FIXTURE / "inputs.npz", size="native", keyframes=keyframes, device="cpu"))
    got = dict(np.load(tmp_path / "p" / "predictions.npz"))
    ref = dict(np.load(FIXTURE / "outputs.npz"))
    assert got["keyframes"].tolist() == expected_keyframes
    _assert_close(got["pts3d"], ref[f"infer_{tag}_pts3d"], 1e-4, "pts3d")
    _assert_close(got["pts3d_local"], ref[f"infer_{tag}_pts3d_local"], 1e-4, "pts3d_local")
    _assert_close(got["conf"], ref[f"infer_{tag}_conf"], 1e-4, "conf")
    _assert_close(got["class_logits"], ref[f"infer_{tag}_pred_logits"][0], 1e-4, "class logits")
    _assert_close(got["mask_logits"], ref[f"infer_{tag}_pred_masks"], 1e-3, "mask logits")
    np.testing.assert_array_equal(got["images"], np.load(FIXTURE / "inputs.npz")["imgs_uint8"].transpose(0, 2, 3, 1))
    # Official checkpoints: the official principal point (W/2, H/2).
    np.testing.assert_allclose(got["K"][:, :2, 2], np.broadcast_to([32.0, 24.0], (3, 2)))
    if tag == "allkf":  # the checkpoint's postprocess_default is qubo: the fixture's merged id maps
        assert _same_up_to_renumbering(got["panoptic"], ref["pp_qubo_pan"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_predict_on_cuda_matches_the_cpu(fixture_photos: Path, tmp_path: Path) -> None:
    """CUDA path (bfloat16 autocast of the backbones): same folder, outputs close to the official CPU numbers."""
    assert FIXTURE is not None
    commands.predict(PredictArgs(images=fixture_photos, out=tmp_path / "p", checkpoint=FIXTURE / "checkpoint.pth",
                                 classes=FIXTURE / "inputs.npz", size="native", keyframes="all", device="cuda"))
    got = _check_contract(tmp_path / "p", V=3, H=48, W=64, Q=8, K=5)
    ref = np.load(FIXTURE / "outputs.npz")
    for key, ref_key in (("pts3d", "infer_allkf_pts3d"), ("conf", "infer_allkf_conf"),
                         ("mask_logits", "infer_allkf_pred_masks")):
        assert np.isfinite(got[key]).all(), key
        # bfloat16 keeps about 3 significant digits: compare errors with the values' typical size.
        err = np.median(np.abs(got[key] - ref[ref_key]))
        assert err <= 0.05 * np.median(np.abs(ref[ref_key])), f"{key}: median |diff| {err:.3g}"


def test_scene_folder_without_splits_is_explained(capsys: pytest.CaptureFixture[str], own_checkpoint: Path,
                                                  photos: Path, tmp_path: Path) -> None:
    shutil.copytree(photos, tmp_path / "scene" / "color")
    line = _cli_error(capsys, ["predict", "--images", str(tmp_path / "scene"), "--out", str(tmp_path / "p"),
                               "--checkpoint", str(own_checkpoint)])
    assert "splits.json" in line
