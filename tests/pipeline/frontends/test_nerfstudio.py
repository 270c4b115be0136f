"""`ns-train panst3r-splat`: registration, dataparsers, model laws, eval metrics, and the real command line (train on
the committed tiny scene, render its test frames with label outputs, resume from the checkpoint, read the run back as
a FittedScene).

The smoke runs start from opaque Gaussians (`init-opacity 0.9`): three steps cannot learn opacities, and the
renders are checked for the scene's class colours, not for quality.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from panst3r_splat.core import class_table
from panst3r_splat.core.geometry import backproject_depth
from panst3r_splat.core.predictions import Predictions, load_predictions, save_predictions
from panst3r_splat.core.transforms import Similarity
from panst3r_splat.pipeline.datasets.panoptic_lifting import gt_segments
from panst3r_splat.pipeline.datasets.panoptic_lifting import read_panoptic_lifting
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.splat.palette import semantic_colors

SCENE = Path(__file__).resolve().parents[2] / "data" / "ns_tiny_scene"
BIN = Path(sys.executable).parent
NS_TRAIN, NS_RENDER = BIN / "ns-train", BIN / "ns-render"
TRAIN, TEST = ("0000", "0001", "0002", "0003"), ("0004", "0005")
SMOKE_OPTIONS = ["--machine.device-type", "cpu", "--vis", "tensorboard", "--logging.local-writer.enable", "False",
                 "--pipeline.model.max-init-gaussians", "4000", "--pipeline.model.init-opacity", "0.9",
                 "--steps-per-eval-all-images", "0", "--steps-per-eval-image", "0"]
needs_cli = pytest.mark.skipif(not NS_TRAIN.exists() or not NS_RENDER.exists(), reason="nerfstudio CLI not installed")


def _run(args: list, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


# --------------------------------------------------------------------------------------------- fixtures


def _true_sim3() -> Similarity:
    """Predictions frame -> dataset frame used to build the synthetic predictions."""
    angle = 0.7
    R = torch.tensor([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    return Similarity(scale=torch.tensor(2.5, dtype=torch.float64), R=R, t=torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64),
                   residual=torch.tensor(0.0, dtype=torch.float64))


@pytest.fixture(scope="module")
def perfect_predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A predictions folder of the train frames with ground-truth geometry and labels, in a frame that differs
    from the dataset's by `_true_sim3` (as PanSt3R's world is the first keyframe's camera frame)."""
    data = read_panoptic_lifting(SCENE, split="train")
    V, H, W, _ = data.images.shape
    K = np.repeat(data.K[None], V, axis=0)
    points, flat = backproject_depth(data.depth, K, data.T_world_cam)
    assert len(points) == V * H * W  # the synthetic rooms have a ceiling: depth everywhere
    to_pred = _true_sim3().inverse()
    pts3d = to_pred.apply(torch.from_numpy(points)).reshape(V, H, W, 3)
    T_pred = to_pred.transform_T_world_cam(torch.from_numpy(data.T_world_cam))
    local = torch.einsum("vij,vhwj->vhwi", T_pred[:, :3, :3].transpose(1, 2),
                         pts3d - T_pred[:, None, None, :3, 3])
    panoptic, legend = gt_segments(data.semantics, data.instances)
    ids, counts = np.unique(panoptic, return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist()))
    segments = [{"id": s.id, "category_id": s.category_id, "isthing": s.isthing, "score": 1.0, "query_id": 0,
                 "area": area.get(s.id, 0)} for s in legend]
    K_model = K.copy()
    pred = Predictions(
        image_names=np.array([f"{n}.png" for n in data.frame_names]), images=data.images, pts3d=pts3d.float(),
        pts3d_local=local.float(), conf=np.full((V, H, W), 5.0, np.float32),
        mask_logits=np.zeros((V, 1, H // 2, W // 2), np.float32),
        class_logits=np.zeros((1, class_table.NUM_CLASSES), np.float32),
        class_names=np.array(class_table.class_names()), class_ids=np.arange(1, class_table.NUM_CLASSES + 1),
        isthing=np.array([c.isthing for c in class_table.CLASSES]), orig_hw=np.array([[H, W]] * V),
        to_orig=np.repeat(np.eye(3, dtype=np.float32)[None], V, axis=0), keyframes=np.arange(V), K=K_model,
        T_world_cam=T_pred.float(), panoptic=panoptic.astype(np.int32))
    return save_predictions(pred, tmp_path_factory.mktemp("pred") / "pred", segments)


def _pipeline(dataparser, **model_options):
    from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig

    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import Panst3rDataset
    from panst3r_splat.pipeline.frontends.nerfstudio_method import Panst3rPipelineConfig
    from panst3r_splat.pipeline.frontends.nerfstudio_model import Panst3rSplatModelConfig

    model = Panst3rSplatModelConfig(**{"max_init_gaussians": 4000, "init_opacity": 0.9, **model_options})
    config = Panst3rPipelineConfig(
        datamanager=FullImageDatamanagerConfig(_target=FullImageDatamanager[Panst3rDataset], dataparser=dataparser,
                                               cache_images_type="uint8"),
        model=model)
    return config.setup(device="cpu", test_mode="val")


@pytest.fixture(scope="module")
def gt_pipeline():
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import PanopticLiftingDataParserConfig

    return _pipeline(PanopticLiftingDataParserConfig(data=SCENE))


# ------------------------------------------------------------------------------------------ registration


def test_entry_points_are_discovered() -> None:
    from nerfstudio.plugins.registry import discover_methods
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import (
        PanopticLiftingDataParserConfig, Panst3rDataParserConfig,
    )
    from panst3r_splat.pipeline.frontends.nerfstudio_method import panst3r_splat_method

    methods, _ = discover_methods()
    assert methods["panst3r-splat"] is panst3r_splat_method.config
    dataparsers, _ = discover_dataparsers()
    assert isinstance(dataparsers["panst3r-data"], Panst3rDataParserConfig)
    assert isinstance(dataparsers["panoptic-lifting-data"], PanopticLiftingDataParserConfig)
    config = panst3r_splat_method.config
    model_groups = {"means", "scales", "quats", "opacities", "sh0", "shN", "reg_colors"}
    assert model_groups <= set(config.optimizers)  # nerfstudio needs an optimizer entry per parameter group
    assert config.pipeline.model.enable_collider is False


def test_method_trains_with_the_fit_defaults() -> None:
    """One set of training defaults: the model nests `splat.train`'s step settings, and the method's steps and
    learning rates are `TrainConfig`'s (the centres' decaying to `means_lr_final` of itself at the last step)."""
    from panst3r_splat.pipeline.frontends.nerfstudio_method import panst3r_splat_method
    from panst3r_splat.splat.train import StepConfig, TrainConfig, learning_rates

    config, train = panst3r_splat_method.config, TrainConfig()
    assert config.pipeline.model.train == StepConfig()
    assert {f: getattr(train, f) for f in StepConfig.__dataclass_fields__} == vars(StepConfig())
    assert config.max_num_iterations == train.steps
    assert {k: v["optimizer"].lr for k, v in config.optimizers.items()} == learning_rates(train)
    means = config.optimizers["means"]["scheduler"]
    assert means.max_steps == train.steps and means.lr_final == pytest.approx(train.means_lr * train.means_lr_final)


def test_model_loss_is_the_fit_loss(gt_pipeline) -> None:
    """`get_loss_dict` is `splat.train`'s photometric and instance-colour terms on the model's outputs."""
    from panst3r_splat.splat.train import colour_regularisation_loss, photometric_loss

    model = gt_pipeline.model
    model.train()
    camera, batch = gt_pipeline.datamanager.next_train(0)
    outputs = model.get_outputs(camera)
    losses = model.get_loss_dict(outputs, batch)
    gt = batch["image"].float() / 255.0
    expected_main = photometric_loss(outputs["rgb"], gt, model.config.train.ssim_lambda)
    torch.testing.assert_close(losses["main_loss"], expected_main)
    seg = batch["segment_map"].long()
    expected = colour_regularisation_loss(outputs["reg_rgb"], seg, model._reg_palette)
    torch.testing.assert_close(losses["reg_loss"], model.config.train.reg_weight * expected)
    assert float(expected) > 0.0
    model.info = {}  # leave no pending strategy update behind for the other tests
    model.eval()


@needs_cli
def test_ns_train_help_lists_the_method() -> None:
    out = _run([NS_TRAIN, "--help"]).stdout
    assert "panst3r-splat" in out


# ------------------------------------------------------------------------------------------- dataparsers


def test_panoptic_lifting_dataparser_honours_splits_and_normalises(gt_pipeline) -> None:
    from panst3r_splat.pipeline.datasets.conventions import from_nerfstudio_cameras
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import META_SCENE, META_VIEWS

    dm = gt_pipeline.datamanager
    train, test = dm.train_dataset.metadata[META_VIEWS], dm.eval_dataset.metadata[META_VIEWS]
    assert train.names == TRAIN and test.names == TEST
    assert [p.stem for p in dm.train_dataset.image_filenames] == list(TRAIN)
    data = read_panoptic_lifting(SCENE)
    norm = dm.train_dataset.metadata[META_SCENE].normalisation
    K, T_ns = from_nerfstudio_cameras(dm.eval_dataset.cameras)
    torch.testing.assert_close(norm.invert_T_world_cam(T_ns.double()), torch.from_numpy(data.T_world_cam[4:]),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(K[0].double(), torch.from_numpy(data.K), atol=1e-5, rtol=0)
    assert float(T_ns[:, :3, 3].abs().max()) <= 1.0 + 1e-5
    # Eval batches carry the dataset's ground truth; train batches the segments they train on.
    batch = dm.eval_dataset[1]
    np.testing.assert_array_equal(batch["gt_semantics"].numpy(), data.semantics[5])
    np.testing.assert_array_equal(batch["gt_instances"].numpy(), data.instances[5])
    seg, _ = gt_segments(data.semantics, data.instances)
    np.testing.assert_array_equal(dm.train_dataset[2]["segment_map"].numpy(), seg[2])


def test_predicted_labels_are_placed_under_the_dataset_cameras(perfect_predictions: Path) -> None:
    """The predictions (cameras in another frame, local pointmaps at 1/2.5 of the dataset's scale) are placed under
    the dataset's cameras as `fit --poses` does: identity alignment, points back on the dataset's surfaces."""
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import (
        META_SCENE, META_VIEWS, PanopticLiftingDataParserConfig,
    )

    parser = PanopticLiftingDataParserConfig(data=SCENE, predictions=perfect_predictions,
                                             init_points="predictions").setup()
    outputs = parser.get_dataparser_outputs("train")
    scene, views = outputs.metadata[META_SCENE], outputs.metadata[META_VIEWS]
    assert scene.alignment.scale == 1.0 and scene.alignment.residual == 0.0
    np.testing.assert_allclose(scene.alignment.R, np.eye(3))
    data = read_panoptic_lifting(SCENE, split="train")
    seg, _ = gt_segments(data.semantics, data.instances)
    np.testing.assert_array_equal(views.segment_maps, seg)
    # The placed predicted points are the back-projected depth (the predictions were built from it), up to the
    # per-view scales recovered from image matches.
    points, _ = backproject_depth(data.depth, np.repeat(data.K[None], 4, axis=0), data.T_world_cam)
    expected = scene.normalisation.apply_points(torch.from_numpy(points))
    got = outputs.metadata["points3D_xyz"].double()
    assert got.shape == expected.shape
    assert float((got - expected).norm(dim=1).median()) < 0.02 * float(expected.std(0).norm())
    # Eval views still score against the dataset's ground truth.
    test_views = parser.get_dataparser_outputs("test").metadata[META_VIEWS]
    assert test_views.names == TEST and test_views.gt_semantics is not None


def test_predictions_must_cover_the_train_frames(tmp_path: Path, perfect_predictions: Path) -> None:
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import PanopticLiftingDataParserConfig

    partial = tmp_path / "scene"
    shutil.copytree(SCENE, partial)
    (partial / "splits.json").write_text('{"train": ["0000", "0001", "0002", "0003", "0004"], "test": ["0005"]}')
    parser = PanopticLiftingDataParserConfig(data=partial, predictions=perfect_predictions).setup()
    with pytest.raises(UserError, match="0004"):
        parser.get_dataparser_outputs("train")


def test_panst3r_data_reads_a_predictions_folder(perfect_predictions: Path) -> None:
    from panst3r_splat.pipeline.datasets.conventions import from_nerfstudio_cameras
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import META_SCENE, META_VIEWS, Panst3rDataParserConfig

    pipeline = _pipeline(Panst3rDataParserConfig(data=perfect_predictions, eval_mode="interval", eval_interval=2))
    pred = load_predictions(perfect_predictions)
    dm = pipeline.datamanager
    assert dm.train_dataset.metadata[META_VIEWS].names == ("0001", "0003")
    assert dm.eval_dataset.metadata[META_VIEWS].names == ("0000", "0002")
    norm = dm.train_dataset.metadata[META_SCENE].normalisation
    _, T_ns = from_nerfstudio_cameras(dm.train_dataset.cameras)
    torch.testing.assert_close(norm.invert_T_world_cam(T_ns.double()), torch.from_numpy(pred.T_world_cam[[1, 3]]).double(),
                               atol=1e-5, rtol=0)
    batch = dm.train_dataset[1]  # images come from memory (model resolution), labels from the merged panoptic
    np.testing.assert_array_equal(batch["image"].numpy(), pred.images[3].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(batch["segment_map"].numpy(), pred.panoptic[3])
    assert dm.train_dataset.metadata[META_SCENE].dataset is None


def test_panst3r_data_runs_predict_once_and_caches(tmp_path: Path, perfect_predictions: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import panst3r_splat.pipeline.stages.predict as predict
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import Panst3rDataParserConfig, predictions_for

    calls = []

    def fake_run_predict(images: Path, out: Path, options: predict.PredictOptions):
        calls.append((images, out))
        shutil.copytree(perfect_predictions, out)
        return predict.PredictResult(folder=out, predictions=load_predictions(out), segments=(), merge="qubo")

    monkeypatch.setattr(predict, "run_predict", fake_run_predict)
    images = tmp_path / "photos"
    shutil.copytree(SCENE / "color", images)
    config = Panst3rDataParserConfig(data=images)
    config.place_predictions_cache(tmp_path / "run")
    first = predictions_for(config)
    second = predictions_for(Panst3rDataParserConfig(data=images, predictions_cache=tmp_path / "run" / "panst3r-predictions"))
    assert first == second and len(calls) == 1
    assert first.parent == tmp_path / "run" / "panst3r-predictions"
    predictions_for(Panst3rDataParserConfig(data=images, predictions_cache=config.predictions_cache, size="native"))
    assert len(calls) == 2  # other predict settings, other cache entry
    predictions_for(Panst3rDataParserConfig(data=images, predictions_cache=config.predictions_cache, cameras="head"))
    assert len(calls) == 3  # another camera source, another cache entry
    own = tmp_path / "own.safetensors"
    own.write_bytes(b"weights v1")
    predictions_for(Panst3rDataParserConfig(data=images, predictions_cache=config.predictions_cache, checkpoint=own))
    own.write_bytes(b"weights v2, retrained")
    predictions_for(Panst3rDataParserConfig(data=images, predictions_cache=config.predictions_cache, checkpoint=own))
    assert len(calls) == 5  # the model file changed: predict again
    with pytest.raises(UserError, match="does not exist"):
        predictions_for(Panst3rDataParserConfig(data=tmp_path / "missing"))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight PanSt3R small enough to predict 4 views in about a second (geometry is noise)."""
    from panst3r_splat.core.checkpoint import save_checkpoint
    from panst3r_splat.core.model import (
        DecoderConfig, DinoConfig, EncoderConfig, MaskTransformerConfig, PanSt3R, PanSt3RConfig, PixelShuffleConfig,
    )

    config = PanSt3RConfig(
        encoder=EncoderConfig(embed_dim=64, depth=2, num_heads=4),
        decoder=DecoderConfig(enc_embed_dim=64, embed_dim=48, depth=2, num_heads=4, landscape_only=False),
        dino=DinoConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=70,
                        landscape_only=False),
        upscaler=PixelShuffleConfig(input_dim=176, fp_dim=(48, 32, 24, 16)),
        mask_transformer=MaskTransformerConfig(fpn_dim=48, hidden_dim=48, mask_dim=16, ff_dim=96, num_queries=8,
                                               num_heads=4, dec_layers=2, landscape_only=False),
        image_size=64, postprocess_default="standard_v2")
    torch.manual_seed(0)
    model = PanSt3R(config)
    names = ["wall", "floor", "bed"]
    emb = torch.nn.functional.normalize(torch.randn(len(names), config.mask_transformer.lang_dim), dim=-1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, model, class_names=names, class_embeddings=emb)
    return path


def test_panst3r_data_predicts_an_images_folder(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """The real predict stage runs once for a folder of photos; the cache then serves the next parser."""
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import META_VIEWS, Panst3rDataParserConfig

    images = tmp_path / "photos"
    shutil.copytree(SCENE / "color", images)

    def parse() -> tuple:
        config = Panst3rDataParserConfig(data=images, checkpoint=tiny_checkpoint, device="cpu", conf_threshold=1.0,
                                         predictions_cache=tmp_path / "cache")
        return config.setup().get_dataparser_outputs("train")

    outputs = parse()
    cached = sorted((tmp_path / "cache").glob("predictions-*/predictions.npz"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    views = outputs.metadata[META_VIEWS]
    assert views.names == tuple(f"{i:04d}" for i in range(6)) and views.images is not None
    again = parse()
    assert cached[0].stat().st_mtime_ns == stamp  # reused, not predicted again
    torch.testing.assert_close(again.cameras.camera_to_worlds, outputs.cameras.camera_to_worlds)


@pytest.mark.slow
@needs_cli
def test_ns_train_on_an_images_folder(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """`ns-train panst3r-splat panst3r-data --data PHOTOS`: predict, train, cache inside the run's folder."""
    images = tmp_path / "photos"
    shutil.copytree(SCENE / "color", images)
    _run([NS_TRAIN, "panst3r-splat", *SMOKE_OPTIONS, "--max-num-iterations", "3", "--output-dir", tmp_path / "out",
          "--timestamp", "run", "panst3r-data", "--data", images, "--checkpoint", tiny_checkpoint,
          "--conf-threshold", "1.0", "--device", "cpu"])
    method = tmp_path / "out" / "photos" / "panst3r-splat"
    assert (method / "run" / "nerfstudio_models" / "step-000000002.ckpt").is_file()
    assert len(list((method / "panst3r-predictions").glob("predictions-*/predictions.npz"))) == 1


# ------------------------------------------------------------------------------------------------ model


def test_model_renders_what_the_splat_package_renders(gt_pipeline) -> None:
    """The nerfstudio camera path (OpenGL, +0.5 pixel centres, normalised frame) and our own (the train views'
    OpenCV cameras) give the same image: the conventions module is the only place they differ."""
    from panst3r_splat.core.transforms import rigid_inverse
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import META_VIEWS
    from panst3r_splat.splat.rasterize import rasterize

    model = gt_pipeline.model
    model.eval()
    views = gt_pipeline.datamanager.train_dataset.metadata[META_VIEWS]
    outputs = model.get_outputs_for_camera(gt_pipeline.datamanager.train_dataset.cameras[1:2])
    assert set(outputs) == {"rgb", "depth", "accumulation", "semantic", "instance", "panoptic"}
    g = model.gaussian_scene()
    T = torch.from_numpy(views.T_world_cam[1:2])
    render, alpha, _ = rasterize(g.means, g.quats, g.scales, g.opacities, g.colors(T)[..., :3], rigid_inverse(T),
                                 torch.from_numpy(views.K[1:2]), views.width, views.height,
                                 backend=model.config.train.backend)  # the same rasteriser; only the cameras differ
    torch.testing.assert_close(outputs["rgb"], render[0].clamp(0, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["accumulation"], alpha[0], atol=1e-5, rtol=0)
    for name in ("rgb", "semantic", "instance", "panoptic"):
        assert outputs[name].shape == (views.height, views.width, 3) and outputs[name].dtype == torch.float32


def test_lifted_labels_reproduce_the_train_views(gt_pipeline) -> None:
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import META_VIEWS

    model = gt_pipeline.model
    model.eval()
    camera = gt_pipeline.datamanager.train_dataset.cameras[0:1]
    if not bool(model.labels_lifted):
        assert float(model.get_outputs_for_camera(camera)["semantic"].abs().max()) == 0.0  # void before lifting
        assert model.lift_labels()
    seg = model.render_segment_ids(camera).numpy()
    target = gt_pipeline.datamanager.train_dataset.metadata[META_VIEWS].segment_maps[0]
    assert np.mean(seg == target) > 0.8
    # The colour outputs paint each segment in its class colour (the palette of the class table).
    semantic = model.get_outputs_for_camera(camera)["semantic"].numpy()
    classes = {s.id: s.class_id for s in model.scene_labels.segments}
    labelled = seg > 0
    expected = semantic_colors(np.vectorize(lambda i: classes.get(int(i), 0))(seg)) / 255.0
    np.testing.assert_allclose(semantic[labelled], expected[labelled], atol=1e-6)
    assert float(np.abs(semantic[~labelled]).max(initial=0.0)) == 0.0


def test_checkpoint_load_resizes_in_place(gt_pipeline) -> None:
    """Loading a checkpoint with fewer Gaussians keeps the same parameter objects (optimisers built before
    loading keep training them) and restores every entry, labels included."""
    model = gt_pipeline.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    keep = torch.arange(0, model.num_points, 2)
    for k in list(state):
        if k.startswith("gauss_params."):
            state[k] = state[k][keep]
    state["labels_lifted"] = torch.tensor(True)
    before = {k: id(p) for k, p in model.gauss_params.items()}
    fresh = _pipeline_model_copy(gt_pipeline)
    ids = {k: id(p) for k, p in fresh.gauss_params.items()}
    fresh.load_state_dict(state)
    assert fresh.num_points == len(keep) and bool(fresh.labels_lifted)
    assert {k: id(p) for k, p in fresh.gauss_params.items()} == ids
    torch.testing.assert_close(fresh.gauss_params["means"].data, model.gauss_params["means"].data[keep])
    assert before == {k: id(p) for k, p in model.gauss_params.items()}


def _pipeline_model_copy(pipeline):
    model = pipeline.model
    return type(model)(config=model.config, scene_box=model.scene_box, num_train_data=model.num_train_data,
                       seed_points=model.seed_points, **model.kwargs)


def test_eval_reports_psnr_per_image_and_pq_scene(gt_pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import META_VIEWS

    model = gt_pipeline.model
    if not bool(model.labels_lifted):
        model.lift_labels()
    metrics = gt_pipeline.get_average_eval_image_metrics(get_std=True)
    assert set(TEST) == {k.split("/")[1] for k in metrics if k.startswith("psnr/")}
    assert metrics["psnr"] == pytest.approx(np.mean([metrics[f"psnr/{n}"] for n in TEST]))
    assert 0.0 <= metrics["pq_scene"] <= 1.0 and "sq_scene_things" in metrics and "miou" in metrics
    # Law: rendering exactly the ground-truth segments scores PQ^scene = 1.
    data = read_panoptic_lifting(SCENE)
    seg, _ = gt_segments(data.semantics, data.instances)
    order = iter(seg[4:])
    assert gt_pipeline.datamanager.eval_dataset.metadata[META_VIEWS].names == TEST
    monkeypatch.setattr(model, "render_segment_ids", lambda camera: torch.from_numpy(next(order)))
    perfect = gt_pipeline.get_average_eval_image_metrics()
    assert perfect["pq_scene"] == pytest.approx(1.0) and perfect["miou"] == pytest.approx(1.0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_on_cuda_matches_cpu(gt_pipeline) -> None:
    """gsplat's kernels (CUDA) and our rasteriser (CPU) render the model alike."""
    model = gt_pipeline.model
    model.eval()
    camera = gt_pipeline.datamanager.train_dataset.cameras[0:1]
    cpu = model.get_outputs_for_camera(camera)
    model.to("cuda")
    try:
        gpu = model.get_outputs_for_camera(camera)
    finally:
        model.to("cpu")
    torch.testing.assert_close(gpu["rgb"].cpu(), cpu["rgb"], atol=2e-3, rtol=0)


# ---------------------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ns-train panst3r-splat` for 3 steps on the tiny scene; returns the run folder (config.yml)."""
    out = tmp_path_factory.mktemp("ns")
    _run([NS_TRAIN, "panst3r-splat", *SMOKE_OPTIONS, "--max-num-iterations", "3", "--output-dir", out,
          "--timestamp", "run1", "panoptic-lifting-data", "--data", SCENE])
    run = out / "ns_tiny_scene" / "panst3r-splat" / "run1"
    assert (run / "config.yml").is_file() and (run / "dataparser_transforms.json").is_file()
    assert (run / "nerfstudio_models" / "step-000000002.ckpt").is_file()
    return run


@needs_cli
def test_ns_render_writes_label_images_with_the_scene_classes(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "renders"
    _run([NS_RENDER, "dataset", "--load-config", trained_run / "config.yml", "--split", "test",
          "--rendered-output-names", "rgb", "semantic", "panoptic", "--image-format", "png", "--output-path", out])
    data = read_panoptic_lifting(SCENE, split="test")
    palette = {tuple(c) for c in semantic_colors(np.arange(class_table.NUM_CLASSES + 1))}
    for i, name in enumerate(TEST):
        for output in ("rgb", "semantic", "panoptic"):
            assert (out / "test" / output / f"{name}.png").is_file()
        semantic = np.asarray(Image.open(out / "test" / "semantic" / f"{name}.png").convert("RGB"))
        colours, counts = np.unique(semantic.reshape(-1, 3), axis=0, return_counts=True)
        assert {tuple(c) for c in colours} <= palette  # label colours only, never blended
        present = {tuple(c) for c, n in zip(colours, counts) if n >= 0.01 * semantic.size / 3}
        gt_classes, gt_counts = np.unique(data.semantics[i], return_counts=True)
        big = [c for c, n in zip(gt_classes, gt_counts) if c > 0 and n >= 0.05 * data.semantics[i].size]
        found = [c for c in big if tuple(semantic_colors(np.array(c))) in present]
        assert len(found) >= min(3, len(big)), (name, big, present)


@needs_cli
def test_training_resumes_from_the_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    _run([NS_TRAIN, "panst3r-splat", *SMOKE_OPTIONS, "--max-num-iterations", "2", "--output-dir", tmp_path,
          "--timestamp", "run2", "--load-dir", trained_run / "nerfstudio_models", "panoptic-lifting-data",
          "--data", SCENE])
    resumed = tmp_path / "ns_tiny_scene" / "panst3r-splat" / "run2" / "nerfstudio_models" / "step-000000004.ckpt"
    assert resumed.is_file()
    before = torch.load(trained_run / "nerfstudio_models" / "step-000000002.ckpt", weights_only=True)
    after = torch.load(resumed, weights_only=True)
    assert after["step"] == 4
    means0, means1 = before["pipeline"]["_model.gauss_params.means"], after["pipeline"]["_model.gauss_params.means"]
    assert means0.shape == means1.shape and not torch.equal(means0, means1)  # the resumed optimisers trained
    adam0, adam1 = before["optimizers"]["means"]["state"][0], after["optimizers"]["means"]["state"][0]
    assert int(adam1["step"]) == int(adam0["step"]) + 2
    assert bool(after["pipeline"]["_model.labels_lifted"])


@needs_cli
def test_load_ns_output_gives_a_fitted_scene(trained_run: Path, tmp_path: Path) -> None:
    from panst3r_splat.pipeline.frontends.nerfstudio_io import is_ns_output, load_ns_output
    from panst3r_splat.splat.scene_io import load_scene, save_scene

    assert is_ns_output(trained_run)
    scene = load_ns_output(trained_run.parent.parent.parent)  # the output dir: the newest run is found
    ckpt = torch.load(trained_run / "nerfstudio_models" / "step-000000002.ckpt", weights_only=True)
    assert len(scene.gaussians) == len(ckpt["pipeline"]["_model.gauss_params.means"])
    assert scene.cameras.names == TRAIN and set(scene.gaussians.segment_ids.tolist()) - {0}
    # The alignment takes the scene (normalised) frame back to the dataset: the train poses come back.
    data = read_panoptic_lifting(SCENE, split="train")
    back = scene.alignment.similarity().transform_T_world_cam(scene.cameras.T_world_cam.double())
    torch.testing.assert_close(back, torch.from_numpy(data.T_world_cam), atol=1e-4, rtol=0)
    saved = load_scene(save_scene(tmp_path / "scene", scene))
    torch.testing.assert_close(saved.gaussians.means, scene.gaussians.means)
    assert saved.segments == scene.segments and saved.info["source"]["kind"] == "ns-train"


@needs_cli
def test_export_and_render_accept_an_ns_train_run(trained_run: Path, tmp_path: Path) -> None:
    from panst3r_splat.pipeline.frontends.cli import main
    from panst3r_splat.pipeline.frontends.nerfstudio_io import read_scene_or_run
    from panst3r_splat.pipeline.stages.export import export_scene
    from panst3r_splat.pipeline.stages.render import load_fitted
    from panst3r_splat.splat.ply import read_ply

    scene = load_fitted(trained_run, read_scene_or_run)
    assert scene.info["source"]["kind"] == "ns-train"
    result = export_scene(trained_run, tmp_path / "run.ply", read_scene=read_scene_or_run)
    ply = read_ply(result.ply)
    assert result.num_gaussians == len(scene.gaussians) == len(ply.scene)
    # The command line hands the stages that reader; the stages alone read SCENE folders only.
    assert main(["export", "--scene", str(trained_run), "--out", str(tmp_path / "cli.ply")]) == 0
    assert len(read_ply(tmp_path / "cli.ply").scene) == len(scene.gaussians)
    with pytest.raises(UserError, match="lacks gaussians.ply"):
        load_fitted(trained_run)


# ------------------------------------------------------------------------------------------- the viewer

CHROMIUM = Path("/usr/bin/chromium")


def ns_viewer_screenshot(run: Path, out: Path, *, camera: int = 0, budget_ms: int = 20000,
                         window: tuple[int, int] = (1200, 800)) -> np.ndarray:
    """nerfstudio's viewer (as `ns-viewer --load-config` starts it) on a run, opened by headless Chromium from the
    train camera `camera`, showing `panoptic` left and `rgb` right of the split (chosen server-side, as a click on
    the 'Output type' and 'Split Screen' controls would); returns the screenshot."""
    import socket
    import threading
    import time
    from threading import Lock

    from panst3r_splat.pipeline.frontends.nerfstudio_io import load_ns_pipeline

    config, pipeline, _, step = load_ns_pipeline(run)  # first: nerfstudio.utils.writer alone imports circularly
    from nerfstudio.utils import writer
    from nerfstudio.viewer.viewer import Viewer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config.viewer.websocket_port, config.viewer.websocket_host, config.vis = port, "127.0.0.1", "viewer"
    viewer = Viewer(config.viewer, log_filename=out.parent / "viewer_log.txt",
                    datapath=pipeline.datamanager.get_datapath(), pipeline=pipeline, train_lock=Lock())
    config.logging.local_writer.enable = False
    writer.setup_local_writer(config.logging, max_iter=config.max_num_iterations, banner_messages=None)
    viewer.init_scene(train_dataset=pipeline.datamanager.train_dataset, train_state="completed",
                      eval_dataset=pipeline.datamanager.eval_dataset)
    viewer.update_scene(step=step)
    viewer.set_camera_visibility(False)
    cameras = pipeline.datamanager.train_dataset.cameras
    fov = 2.0 * float(torch.atan(cameras.height[camera] / (2.0 * cameras.fy[camera])))

    def drive() -> None:
        deadline = time.monotonic() + 120.0
        panel = viewer.control_panel
        while not viewer.viser_server.get_clients() and time.monotonic() < deadline:
            time.sleep(0.05)
        for client in viewer.viser_server.get_clients().values():
            with client.atomic():
                client.camera.wxyz = viewer.camera_handles[camera].wxyz
                client.camera.position = viewer.camera_handles[camera].position
                client.camera.fov = fov
        while "panoptic" not in panel._output_render.options and time.monotonic() < deadline:
            time.sleep(0.05)
        panel._output_render.value = "panoptic"
        panel._split.value = True
        panel._split_output_render.value = "rgb"
        panel.update_control_panel()
        viewer._trigger_rerender()

    threading.Thread(target=drive, daemon=True).start()
    profile = out.parent / f"{out.stem}-chromium"
    try:
        subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
             f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", f"http://127.0.0.1:{port}"],
            capture_output=True, timeout=300, check=False)
    finally:
        viewer.viser_server.stop()
        shutil.rmtree(profile, ignore_errors=True)
    assert out.is_file(), "chromium wrote no screenshot"
    return np.asarray(Image.open(out).convert("RGB"))


@pytest.mark.slow
@pytest.mark.browser
@needs_cli
def test_ns_viewer_shows_the_label_outputs(trained_run: Path, tmp_path: Path) -> None:
    """The viewer lists our outputs and paints the panoptic one in the legend's colours (JPEG-shifted a little)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed")
    from panst3r_splat.pipeline.frontends.nerfstudio_io import load_ns_output

    legend = load_ns_output(trained_run).segments
    image = ns_viewer_screenshot(trained_run, tmp_path / "viewer.png")
    left = image[100:700, 40:400].astype(np.int64)  # the panoptic half of the split, clear of the panel

    def share(color: tuple[int, int, int]) -> float:
        return float((np.abs(left - np.array(color)).max(axis=-1) <= 24).mean())

    shown = [s for s in legend if share(s.color) > 0.02]
    assert len(shown) >= 2, [(s.class_name, share(s.color)) for s in legend]
