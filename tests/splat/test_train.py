"""Training: the loss goes down, runs are reproducible and resumable, densification keeps labels aligned."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from panst3r_splat.splat.gaussians import GaussianScene, rgb_to_sh_dc
from panst3r_splat.splat.train import (
    TrainConfig, _ssim_map_torch, estimate_scene_scale, se3_exp, segment_colour_table, ssim, ssim_map, train_scene,
    view_order,
)
from _splat_toy import toy_cameras, toy_scene, toy_targets

FAST = TrainConfig(steps=8, densify=False, progress=False, checkpoint_every=100)
# Densify on every second step with a threshold every visible Gaussian passes, so clones, splits and pruning happen.
DENSE = dataclasses.replace(FAST, densify=True, refine_start_iter=2, refine_every=2, refine_stop_iter=5,
                            grow_grad2d=1e-9, grow_scale3d=0.05, prune_opa=0.3, scene_scale=1.0)


def _assert_scenes_equal(a: GaussianScene, b: GaussianScene) -> None:
    for key, value in a.tensors().items():
        assert torch.equal(value, getattr(b, key)), key


def _torchmetrics_ssim_map(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """torchmetrics' per-pixel SSIM of `[..., H, W, 3]` images (data range 1), `[B, 3, H, W]`."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    H, W, D = pred.shape[-3:]
    _, full = structural_similarity_index_measure(pred.reshape(-1, H, W, D).permute(0, 3, 1, 2),
                                                  gt.reshape(-1, H, W, D).permute(0, 3, 1, 2), data_range=1.0,
                                                  return_full_image=True, reduction="none")
    return full


def test_ssim_matches_torchmetrics_and_is_one_on_identical_images() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 20, 24, 3, generator=g)
    y = (x + 0.1 * torch.randn(2, 20, 24, 3, generator=g)).clamp(0, 1)
    # torchmetrics pads by reflection; its map away from the 5-pixel border is the valid-region map.
    ref = _torchmetrics_ssim_map(y, x)
    assert torch.allclose(ssim_map(y, x), ref[..., 5:-5, 5:-5], atol=1e-5)
    assert torch.allclose(ssim(y, x), ssim_map(y, x).mean())
    assert torch.allclose(ssim(x, x), torch.tensor(1.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_ssim_matches_its_torch_twin_forward_and_backward(dtype: torch.dtype) -> None:
    """`ssim_map` on CPU (Numba kernels, analytic backward) against `_ssim_map_torch` (autograd), both images taking
    gradients, batched, on images with flat regions (a variance clamped at 0) and saturated pixels."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 23, 31, 3, generator=g, dtype=dtype)
    x[0, :12, :14] = 0.5  # flat: zero variance, clamped
    y = (x + 0.2 * torch.randn(2, 23, 31, 3, generator=g, dtype=dtype)).clamp(0, 1)
    weights = torch.rand(2, 3, 13, 21, generator=g, dtype=dtype)
    inputs = [(x.clone().requires_grad_(True), y.clone().requires_grad_(True)) for _ in range(2)]
    ours = ssim_map(*inputs[0])
    window = torch.exp(-((torch.arange(11, dtype=dtype) - 5) ** 2) / (2 * 1.5**2))
    theirs = _ssim_map_torch(*(t.permute(0, 3, 1, 2) for t in inputs[1]), window / window.sum())
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    # Tolerances: the same sums in another order (loops vs convolutions); measured below 1e-6 / 1e-14.
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ours, theirs, atol=atol, rtol=0)
    for a, b in zip(inputs[0], inputs[1]):
        torch.testing.assert_close(a.grad, b.grad, atol=atol, rtol=0)


def test_compiled_ssim_passes_a_float64_gradient_check() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 12, 13, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 12, 13, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ssim_map(a, b), (x, y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_ssim_is_torchmetrics_ssim_forward_and_backward(dtype: torch.dtype) -> None:
    """The fit loss's separable SSIM (`ssim`) against torchmetrics' (the evaluation's, `metrics.image_ssim`) at the
    demo's fit size: value and gradient of the mean over the valid region agree to rounding; the whole-image means
    differ only by torchmetrics' reflection-padded 5-pixel border."""
    from panst3r_splat.splat.metrics import image_ssim

    g = torch.Generator().manual_seed(2)
    gt = torch.rand(144, 192, 3, generator=g, dtype=dtype)
    base = (gt + 0.1 * torch.randn(144, 192, 3, generator=g, dtype=dtype)).clamp(0, 1)
    ours_in, theirs_in = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    ours = ssim(ours_in, gt)
    ours.backward()
    theirs = _torchmetrics_ssim_map(theirs_in, gt)[..., 5:-5, 5:-5].mean()
    theirs.backward()
    # Tolerances: the same sums in another order (two 1D passes vs one 2D window). Measured: 3e-7 in the value and
    # 2e-10 in a gradient of size 7e-5 in float32, 0 and 4e-19 in float64.
    value_atol, grad_atol = (1e-5, 1e-8) if dtype == torch.float32 else (1e-12, 1e-15)
    torch.testing.assert_close(ours, theirs, atol=value_atol, rtol=0)
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, atol=grad_atol, rtol=0)
    # The whole-image mean (torchmetrics' score) includes the border: measured 1.4e-4 away at this size.
    assert abs(float(ours.detach()) - float(image_ssim(base, gt))) < 1e-3


def test_densify_after_step_counts_steps_from_zero() -> None:
    """gsplat's strategy counts steps from 1 and resets every opacity when `step % reset_every == 0`; our loops count
    from 0, so step 0 must not reset (it would, before training began) and step `reset_every - 1` must."""
    from panst3r_splat.splat.gaussians import KEY_OPACITIES, LABEL_KEYS
    from panst3r_splat.splat.rasterize import rasterize
    from panst3r_splat.splat.train import (
        StepConfig, densify_after_step, densify_before_backward, label_optimizers, make_strategy, render_colors,
    )

    cameras = toy_cameras()
    config = StepConfig(reset_every=4, refine_start_iter=100, scene_scale=1.0)
    for step, resets in ((0, False), (2, False), (3, True)):
        params = toy_scene().to_params()  # opacities 0.5
        optimizers = {**{k: torch.optim.Adam([p]) for k, p in params.items() if k not in LABEL_KEYS},
                      **label_optimizers(params)}
        strategy = make_strategy(config, len(cameras))
        state = strategy.initialize_state(scene_scale=1.0)
        colors = render_colors(params, cameras.T_world_cam[:1], 0, False)
        out, _, info = rasterize(params["means"], params["quats"], torch.exp(params["scales"]),
                                 torch.sigmoid(params[KEY_OPACITIES]), colors, cameras.T_cam_world[:1],
                                 cameras.K[:1], cameras.width, cameras.height)
        densify_before_backward(strategy, params, optimizers, state, step, info)
        out.sum().backward()
        densify_after_step(strategy, params, optimizers, state, step, info)
        opacities = torch.sigmoid(params[KEY_OPACITIES].detach())
        assert bool((opacities <= 2 * config.prune_opa + 1e-6).all()) == resets, step
        assert float(opacities.max()) == pytest.approx(2 * config.prune_opa if resets else 0.5, rel=1e-4)


def test_no_strategy_without_densification() -> None:
    from panst3r_splat.splat.train import StepConfig, make_strategy

    assert make_strategy(StepConfig(densify=False), 3) is None


def test_se3_exp_is_rigid_and_inverts_with_negation() -> None:
    xi = torch.tensor([[0.1, -0.2, 0.3, 1.0, 2.0, -0.5]])
    T = se3_exp(xi)
    R = T[0, :3, :3]
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    assert torch.allclose(T @ se3_exp(-xi), torch.eye(4), atol=1e-6)


def test_view_order_covers_every_view_each_epoch() -> None:
    for epoch in range(3):
        assert sorted(view_order(7, epoch, 5).tolist()) == list(range(5))
    assert view_order(7, 0, 5).tolist() == view_order(7, 0, 5).tolist()


def test_segment_colour_table_void_is_index_zero() -> None:
    maps = torch.tensor([[[5, 9], [9, 5]]])
    index, colours = segment_colour_table(maps, seed=0)
    assert index.min() >= 1 and len(colours) == 3  # void gets index 0 even when absent
    assert index[0, 0, 0] == index[0, 1, 1] != index[0, 0, 1]
    again, colours2 = segment_colour_table(maps, seed=0)
    assert torch.equal(colours, colours2)
    uncovered, colours3 = segment_colour_table(torch.tensor([[[5, -1], [9, 0]]]), seed=0)
    assert uncovered[0, 0, 1] == uncovered[0, 1, 1] == 0 and len(colours3) == 3  # NO_LABEL: left out like void
    with pytest.raises(ValueError, match="segment ids"):
        segment_colour_table(torch.tensor([[[5, -2]]]), seed=0)


def test_scene_scale_uses_points_when_cameras_coincide() -> None:
    means = torch.randn(200, 3, generator=torch.Generator().manual_seed(0)) * 2
    assert estimate_scene_scale(means, torch.zeros(3, 3)) > 1.0


def test_training_reduces_the_loss() -> None:
    cameras = toy_cameras()
    images, segments = toy_targets(cameras)
    result = train_scene(toy_scene(), cameras, images, segments, dataclasses.replace(FAST, steps=20, sh0_lr=0.05), "cpu")
    assert result.steps_done == 20 and len(result.losses) == 20
    first = sum(result.losses[:3]) / 3
    last = sum(result.losses[-3:]) / 3
    assert last < 0.8 * first


def test_same_seed_same_result_other_seed_differs() -> None:
    cameras = toy_cameras()
    images, segments = toy_targets(cameras)
    a = train_scene(toy_scene(), cameras, images, segments, DENSE, "cpu")
    b = train_scene(toy_scene(), cameras, images, segments, DENSE, "cpu")
    _assert_scenes_equal(a.scene, b.scene)
    assert a.losses == b.losses
    c = train_scene(toy_scene(), cameras, images, segments, dataclasses.replace(DENSE, seed=1, steps=5), "cpu")
    assert a.losses[:5] != c.losses


def test_training_does_not_touch_the_global_rng() -> None:
    cameras = toy_cameras()
    images, _ = toy_targets(cameras)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_scene(toy_scene(), cameras, images, None, dataclasses.replace(DENSE, steps=5), "cpu")
    assert torch.equal(torch.rand(3), expected)


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    cameras = toy_cameras()
    images, segments = toy_targets(cameras)
    config = dataclasses.replace(DENSE, camera_refine=True, checkpoint_every=2)
    full = train_scene(toy_scene(), cameras, images, segments, config, "cpu")
    ckpt = tmp_path / "train.ckpt"
    part = train_scene(toy_scene(), cameras, images, segments, config, "cpu", checkpoint=ckpt, stop_at=4)
    assert part.steps_done == 4 and ckpt.exists()
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file
    resumed = train_scene(toy_scene(), cameras, images, segments, config, "cpu", checkpoint=ckpt)
    assert resumed.steps_done == config.steps
    assert resumed.losses == full.losses
    _assert_scenes_equal(resumed.scene, full.scene)
    assert torch.equal(resumed.cameras.T_world_cam, full.cameras.T_world_cam)
    assert torch.equal(full.cameras.T_world_cam[0], cameras.T_world_cam[0])  # camera 0 fixes the frame
    assert not torch.equal(full.cameras.T_world_cam[1], cameras.T_world_cam[1])


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    cameras = toy_cameras()
    images, _ = toy_targets(cameras)
    ckpt = tmp_path / "train.ckpt"
    train_scene(toy_scene(), cameras, images, None, FAST, "cpu", checkpoint=ckpt, stop_at=2)
    with pytest.raises(ValueError, match="ssim_lambda"):
        train_scene(toy_scene(), cameras, images, None, dataclasses.replace(FAST, ssim_lambda=0.5), "cpu",
                    checkpoint=ckpt)


def test_densification_keeps_labels_aligned() -> None:
    cameras = toy_cameras()
    images, segments = toy_targets(cameras)
    scene = toy_scene()
    n = len(scene)
    # Tag every Gaussian: a unique segment id, a confidence and a frozen colour that all encode its index.
    ids = torch.arange(n) * 1000 + 7
    tags = torch.linspace(0.05, 0.95, n)
    sh = scene.sh.clone()
    sh[:, 0] = rgb_to_sh_dc(tags[:, None].expand(n, 3))
    scene = scene.replace(sh=sh).with_labels(ids, tags)
    config = dataclasses.replace(DENSE, sh0_lr=0.0)
    result = train_scene(scene, cameras, images, segments, config, "cpu").scene
    assert len(result) != n  # densification ran
    row = (result.segment_ids - 7) // 1000
    assert bool(((result.segment_ids - 7) % 1000 == 0).all()) and int(row.min()) >= 0 and int(row.max()) < n
    assert torch.equal(result.label_conf, tags[row])
    assert torch.allclose(result.sh[:, 0], sh[row, 0])
    assert result.segment_ids.dtype == torch.int64


def test_rejects_images_of_the_wrong_size() -> None:
    cameras = toy_cameras()
    images, _ = toy_targets(cameras)
    with pytest.raises(ValueError, match="images of shape"):
        train_scene(toy_scene(), cameras, images[:, :10], None, FAST, "cpu")


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@needs_cuda
def test_training_on_cuda_through_gsplat(tmp_path: Path) -> None:
    cameras = toy_cameras()
    images, segments = toy_targets(cameras)
    loss_run = train_scene(toy_scene(), cameras, images, segments,
                           dataclasses.replace(FAST, steps=40, sh0_lr=0.05), "cuda")
    assert sum(loss_run.losses[-3:]) < 0.8 * sum(loss_run.losses[:3])
    assert loss_run.scene.device.type == "cuda"
    # Densification on CUDA keeps the label rows aligned, and a resumed run tracks the uninterrupted one (gsplat's
    # backward accumulates with atomic adds, so only up to rounding).
    scene = toy_scene()
    n = len(scene)
    ids = torch.arange(n) * 1000 + 7
    scene = scene.with_labels(ids, torch.linspace(0.05, 0.95, n))
    config = dataclasses.replace(DENSE, camera_refine=True)
    full = train_scene(scene, cameras, images, segments, config, "cuda")
    assert len(full.scene) != n
    row = ((full.scene.segment_ids - 7) // 1000).cpu()
    assert torch.equal(full.scene.label_conf.cpu(), torch.linspace(0.05, 0.95, n)[row])
    ckpt = tmp_path / "train.ckpt"
    train_scene(scene, cameras, images, segments, config, "cuda", checkpoint=ckpt, stop_at=4)
    resumed = train_scene(scene, cameras, images, segments, config, "cuda", checkpoint=ckpt)
    assert len(resumed.scene) == len(full.scene)
    assert torch.allclose(torch.tensor(resumed.losses), torch.tensor(full.losses), rtol=1e-3, atol=1e-4)
