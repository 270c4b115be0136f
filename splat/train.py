"""Vanilla 3DGS training on the input views, plus PanSt3R's instance-colour regularisation.

Loss (docs/method.md section 5): `L = (1 - l) L1 + l (1 - SSIM) + reg_weight * L_reg`, where `L_reg` is the L1
between a second colour set rendered with the same geometry and an image painting every segment of the view's
panoptic map with its own random colour (void pixels ignored). Rendering both colour sets is one rasteriser call
with 6 channels, so the regularisation costs almost nothing. Densification and pruning are gsplat's
`DefaultStrategy`, which edits every entry of the parameter dict, labels included.

Runs are deterministic for a seed (bit-identical on CPU; gsplat's CUDA backward uses atomic adds, so CUDA runs agree
only up to rounding) and resumable: a checkpoint written atomically every `checkpoint_every` steps holds the
parameters, optimiser moments, strategy state and random-number state, so a resumed run continues exactly as an
uninterrupted one would.

This is the one training core: `ns-train panst3r-splat` (pipeline/frontends/nerfstudio_model.py) runs the same step inside
nerfstudio's Trainer, with `StepConfig` (the settings and defaults both share), `render_colors`, `photometric_loss`,
`colour_regularisation_loss`, `make_strategy` and the `densify_*` hooks; splat/design.md lists what differs there.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int, UInt8
from torch import Tensor
from torch.profiler import record_function
from tqdm.auto import tqdm

from panst3r_splat.core.atomic_io import atomic_output
from panst3r_splat.core.transforms import rigid_inverse
from panst3r_splat.splat import _ssim_kernels as ssim_kernels
from panst3r_splat.splat.gaussians import (
    KEY_MEANS, KEY_OPACITIES, KEY_QUATS, KEY_REG_COLORS, KEY_SCALES, KEY_SH0, KEY_SHN, LABEL_KEYS, Cameras,
    GaussianParams, GaussianScene, sh_colors,
)
from panst3r_splat.splat.lifting import NO_LABEL

if TYPE_CHECKING:
    from gsplat.strategy import DefaultStrategy

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class StepConfig:
    """What one 3DGS training step does: the loss, the SH schedule, gsplat's densification policy and the rasteriser.

    `train_scene` (via `TrainConfig`, which extends this) and the nerfstudio method (`Panst3rSplatModelConfig.train`)
    share these settings and their defaults; what only a training loop owns (steps, learning rates, checkpoints) is
    in `TrainConfig`, and nerfstudio's Trainer owns it in `ns-train` (splat/design.md)."""

    seed: int = 0
    """Seed of the regularisation colours (in `train_scene` also of the view order and gsplat's split sampling; in
    `ns-train` those follow `--machine.seed`)."""
    sh_degree_interval: int = 500
    """Raise the active SH degree by one every this many steps, up to the scene's degree (as gsplat)."""
    ssim_lambda: float = 0.2
    """Weight of the D-SSIM term in the photometric loss (3DGS)."""
    reg_weight: float = 1.0
    """Weight of the instance-colour regularisation (PanSt3R uses 1); 0 disables it."""
    densify: bool = True
    """Run gsplat's DefaultStrategy (clone / split / prune)."""
    refine_start_iter: int = 100
    """First step of densification (gsplat's default 500 is a third of the whole few-view run here)."""
    refine_stop_iter: int = 1200
    """Last step of densification; the remaining steps only optimise (docs/fit_speed.md: Gaussians vs steps)."""
    refine_every: int = 100
    """Densify every this many steps."""
    reset_every: int = 3000
    """Opacity reset period; longer than the default run, because with few views a reset costs more than it helps."""
    grow_grad2d: float = 2e-4
    """Mean image-space gradient above which a Gaussian is cloned (small) or split (large)."""
    grow_scale3d: float = 0.01
    """Scale, as a fraction of the scene scale, that tells clone (below) from split (above)."""
    prune_opa: float = 0.005
    """Gaussians below this opacity are pruned."""
    prune_scale3d: float = 0.1
    """Gaussians larger than this fraction of the scene scale are pruned."""
    absgrad: bool = False
    """Densify on absolute 2D gradients (AbsGS; raise `grow_grad2d` to about 8e-4 with it)."""
    scene_scale: float | None = None
    """Scale of the scene for the densification thresholds (and `train_scene`'s centre learning rate); None:
    estimated (`estimate_scene_scale`)."""
    backend: Literal["auto", "gsplat", "numba", "torch"] = "auto"
    """Rasteriser backend (auto: gsplat on CUDA, the compiled Numba one on CPU; torch: the plain-torch reference)."""


@dataclass(frozen=True)
class TrainConfig(StepConfig):
    """Hyper-parameters of `train_scene` (defaults: gsplat's simple_trainer, densification scaled for few views):
    the shared step settings of `StepConfig` plus what its own loop owns."""

    steps: int = 1500
    """Optimisation steps, one input view per step (held-out PSNR vs steps on the demo's kind of scene:
    docs/fit_speed.md; 1,500 gained 0.5 dB over 800 and 2.4 dB over 400 on average)."""
    means_lr: float = 1.6e-4
    """Learning rate of the centres, times the scene scale; decays exponentially to `means_lr_final` times it."""
    means_lr_final: float = 0.01
    """Final fraction of `means_lr` reached at the last step."""
    scales_lr: float = 5e-3
    """Learning rate of the log-scales."""
    quats_lr: float = 1e-3
    """Learning rate of the rotations (unnormalised quaternions)."""
    opacities_lr: float = 5e-2
    """Learning rate of the opacity logits."""
    sh0_lr: float = 2.5e-3
    """Learning rate of the DC spherical-harmonic coefficients."""
    shN_lr: float = 2.5e-3 / 20
    """Learning rate of the higher spherical-harmonic coefficients (1/20 of the DC rate, as gsplat)."""
    reg_colors_lr: float = 1e-2
    """Learning rate of the regularisation colours (plain RGB, so larger than the DC SH rate)."""
    camera_refine: bool = False
    """Optimise a small SE(3) correction per input camera (the first camera stays fixed: it defines the frame)."""
    camera_lr: float = 1e-4
    """Learning rate of the camera corrections."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Background colour behind the Gaussians."""
    checkpoint_every: int = 100
    """Write the resume checkpoint every this many steps (and at the end)."""
    progress: bool = True
    """Show a progress bar."""


# Fields that may differ between a run and its resumption without changing the result.
_RESUME_FREE_FIELDS = ("checkpoint_every", "progress")


@dataclass(frozen=True)
class TrainResult:
    """What training produces."""

    scene: GaussianScene
    """Trained Gaussians (labels carried through densification, unchanged otherwise)."""
    cameras: Cameras
    """The input cameras, refined when `camera_refine` is on (otherwise the inputs)."""
    losses: tuple[float, ...]
    """Total loss of every step run so far, from step 0 (resumed runs include the earlier steps)."""
    steps_done: int


def ssim_map(img1: Float[Tensor, "*B H W D"], img2: Float[Tensor, "*B H W D"], *, window: int = 11,
             sigma: float = 1.5) -> Float[Tensor, "B D h w"]:
    """Per-pixel SSIM (Wang et al. 2004), Gaussian window, data range 1, over the valid region only (no padding):
    h = H - window + 1, w = W - window + 1. On CPU the blurs and the formula run in compiled kernels, forward and
    backward (`_SsimMapCpu`); elsewhere, and as their reference, in torch (`_ssim_map_torch`)."""
    if img1.shape != img2.shape:
        raise ValueError(f"ssim needs images of one shape, got {tuple(img1.shape)} and {tuple(img2.shape)}")
    H, W, D = img1.shape[-3:]
    if min(H, W) < window:
        raise ValueError(f"ssim needs images of at least {window}x{window} pixels, got {W}x{H}")
    x = img1.reshape(-1, H, W, D).permute(0, 3, 1, 2)  # [B, D, H, W]
    y = img2.reshape(-1, H, W, D).permute(0, 3, 1, 2)
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and y.dtype == x.dtype:
        return _SsimMapCpu.apply(x.contiguous(), y.contiguous(), g)
    return _ssim_map_torch(x, y, g)


def _ssim_map_torch(x: Float[Tensor, "B D H W"], y: Float[Tensor, "B D H W"], g: Float[Tensor, "K"]
                    ) -> Float[Tensor, "B D h w"]:
    """`ssim_map` in torch ops: the five blurs in one call, the 2D Gaussian as two 1D passes (22 taps, not 121)."""
    D, window = x.shape[1], g.shape[0]
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [B, 5D, H, W]
    C = stack.shape[1]
    rows = F.conv2d(stack, g.view(1, 1, 1, window).expand(C, 1, 1, window), groups=C)
    mu_x, mu_y, exx, eyy, exy = F.conv2d(rows, g.view(1, 1, window, 1).expand(C, 1, window, 1), groups=C).split(D, 1)
    c1, c2 = ssim_kernels.C1, ssim_kernels.C2
    sxx = torch.clamp(exx - mu_x**2, min=0.0)
    syy = torch.clamp(eyy - mu_y**2, min=0.0)
    sxy = exy - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


class _SsimMapCpu(torch.autograd.Function):
    """`_ssim_map_torch` in Numba kernels (`_ssim_kernels`): the blurs of (x, y, x^2, y^2, xy), the formula, and the
    analytic backward (the formula's gradient, the blur's adjoint, the products' chain rule). On the demo's fit size
    (192x144, RGB) forward + backward took 9 ms in torch ops, a third of a compiled fit step."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, g: Tensor) -> Tensor:  # type: ignore[override]
        B, D, H, W = x.shape
        K = g.shape[0]
        h, w = H - K + 1, W - K + 1
        src = torch.cat([x, y, x * x, y * y, x * y], dim=1).detach().numpy().reshape(B * 5 * D, H, W)
        g_np = g.detach().numpy()
        blurs = np.empty((B * 5 * D, h, w), dtype=src.dtype)
        ssim_kernels.blur_valid(src, g_np, np.empty((B * 5 * D, H, w), dtype=src.dtype), blurs)
        blurs5 = np.ascontiguousarray(blurs.reshape(B, 5, D, h, w).transpose(1, 0, 2, 3, 4)).reshape(5, -1)
        out = np.empty(blurs5.shape[1], dtype=src.dtype)
        ssim_kernels.ssim_formula(blurs5, out)
        ctx.save_for_backward(x, y)
        ctx.blurs5, ctx.g = blurs5, g_np
        return torch.from_numpy(out).reshape(B, D, h, w)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, y = ctx.saved_tensors
        B, D, H, W = x.shape
        K = ctx.g.shape[0]
        h, w = H - K + 1, W - K + 1
        g_blurs = np.empty_like(ctx.blurs5)
        ssim_kernels.ssim_formula_backward(ctx.blurs5, grad.contiguous().numpy().reshape(-1), g_blurs)
        g_blurs = np.ascontiguousarray(g_blurs.reshape(5, B, D, h, w).transpose(1, 0, 2, 3, 4))
        g_src = np.empty((B * 5 * D, H, W), dtype=g_blurs.dtype)
        ssim_kernels.blur_valid_transpose(g_blurs.reshape(B * 5 * D, h, w), ctx.g,
                                          np.empty((B * 5 * D, H, w), dtype=g_blurs.dtype), g_src)
        gs = torch.from_numpy(g_src).reshape(B, 5, D, H, W).unbind(1)  # mu_x, mu_y, E[x^2], E[y^2], E[xy]
        gx = gs[0] + 2 * x * gs[2] + y * gs[4] if ctx.needs_input_grad[0] else None
        gy = gs[1] + 2 * y * gs[3] + x * gs[4] if ctx.needs_input_grad[1] else None
        return gx, gy, None


def ssim(img1: Float[Tensor, "*B H W D"], img2: Float[Tensor, "*B H W D"]) -> Float[Tensor, ""]:
    """Mean SSIM over the valid region (see `ssim_map`): the loss's. Scores use torchmetrics' (`metrics.image_ssim`),
    which also averages a reflection-padded border; over the valid region the two agree to rounding, forward and
    backward, and this one costs 9 ms instead of 23 ms a fit step (splat/design.md)."""
    return ssim_map(img1, img2).mean()


def se3_exp(xi: Float[Tensor, "C 6"]) -> Float[Tensor, "C 4 4"]:
    """Exponential map of twists (rotation vector, translation) to 4x4 rigid transforms."""
    hat = torch.zeros(xi.shape[0], 4, 4, dtype=xi.dtype, device=xi.device)
    w, v = xi[:, :3], xi[:, 3:]
    hat[:, 0, 1], hat[:, 0, 2], hat[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    hat[:, 1, 0], hat[:, 2, 0], hat[:, 2, 1] = w[:, 2], -w[:, 1], w[:, 0]
    hat[:, :3, 3] = v
    return torch.linalg.matrix_exp(hat)


def estimate_scene_scale(means: Float[Tensor, "N 3"], camera_centers: Float[Tensor, "C 3"]) -> float:
    """1.1 x the larger of the camera spread and the 90th-percentile point radius (gsplat uses the cameras only,
    which collapses for a few nearby views of a room)."""
    cam_radius = (camera_centers - camera_centers.mean(0)).norm(dim=1).max() if len(camera_centers) else 0.0
    pts_radius = torch.quantile((means - means.median(0).values).norm(dim=1).float(), 0.9)
    scale = 1.1 * max(float(cam_radius), float(pts_radius))
    return scale if scale > 0 else 1.0


def view_order(seed: int, epoch: int, num_views: int) -> np.ndarray:
    """The view permutation of an epoch: a pure function of (seed, epoch), so resuming needs no generator state."""
    return np.random.default_rng([seed, epoch]).permutation(num_views)


def segment_colour_table(segment_maps: Int[Tensor, "C H W"], seed: int) -> tuple[Tensor, Tensor]:
    """Compact index maps and one random colour per distinct segment id (from a generator seeded by `seed`).

    Returns `(index_maps (C, H, W) int64, colours (S, 3))`; segment id 0 (void) and `NO_LABEL` (-1, not covered)
    always map to index 0, whose colour is never used because those pixels are left out of the regularisation.
    """
    if bool((segment_maps < NO_LABEL).any()):
        raise ValueError(f"segment maps must hold segment ids >= 0 (0 = void) or {NO_LABEL} (not covered)")
    zero = torch.zeros(1, dtype=segment_maps.dtype, device=segment_maps.device)
    ids, inverse = torch.unique(torch.cat([zero, segment_maps.clamp(min=0).reshape(-1)]), return_inverse=True)
    gen = torch.Generator().manual_seed(seed)
    colours = torch.rand(len(ids), 3, generator=gen)
    return inverse[1:].reshape(segment_maps.shape), colours.to(segment_maps.device)


def learning_rates(config: TrainConfig) -> dict[str, float]:
    """Adam learning rate of every trainable Gaussian entry (keys of `GaussianScene.to_params`); the centres' rate
    before `train_scene` multiplies it by the scene scale (nerfstudio's scenes are normalised to about 1)."""
    return {
        KEY_MEANS: config.means_lr, KEY_SCALES: config.scales_lr, KEY_QUATS: config.quats_lr,
        KEY_OPACITIES: config.opacities_lr, KEY_SH0: config.sh0_lr, KEY_SHN: config.shN_lr,
        KEY_REG_COLORS: config.reg_colors_lr,
    }


def label_optimizers(params: GaussianParams) -> dict[str, torch.optim.Optimizer]:
    """A never-stepped SGD with rate 0 per label entry: gsplat's strategies edit the rows of every entry through its
    optimiser, so the labels need one to stay aligned with the Gaussians they label."""
    return {key: torch.optim.SGD([params[key]], lr=0.0) for key in LABEL_KEYS if key in params}


def _make_optimizers(params: torch.nn.ParameterDict, config: TrainConfig,
                     scene_scale: float) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per entry, as gsplat's strategies require (Adam for the trainable ones)."""
    rates = learning_rates(config)
    rates[KEY_MEANS] *= scene_scale
    optimizers: dict[str, torch.optim.Optimizer] = {
        key: torch.optim.Adam([p], lr=rates[key], eps=1e-15) for key, p in params.items() if key not in LABEL_KEYS}
    return {**optimizers, **label_optimizers(params)}


def make_strategy(config: StepConfig, num_views: int) -> DefaultStrategy | None:
    """gsplat's `DefaultStrategy` with the config's thresholds (None when `densify` is off); refinement pauses for
    one pass over the views after an opacity reset."""
    if not config.densify:
        return None
    from gsplat.strategy import DefaultStrategy

    return DefaultStrategy(
        prune_opa=config.prune_opa, grow_grad2d=config.grow_grad2d, grow_scale3d=config.grow_scale3d,
        prune_scale3d=config.prune_scale3d, refine_start_iter=config.refine_start_iter,
        refine_stop_iter=config.refine_stop_iter, reset_every=config.reset_every, refine_every=config.refine_every,
        pause_refine_after_reset=num_views, absgrad=config.absgrad, verbose=False,
    )


def densify_before_backward(strategy: DefaultStrategy | None, params: GaussianParams,
                            optimizers: Mapping[str, torch.optim.Optimizer], strategy_state: dict[str, Any],
                            step: int, info: dict[str, Any]) -> None:
    """The strategy's hook between render and backward (keeps the 2D means' gradient); `step` counts from 0."""
    if strategy is not None:
        strategy.step_pre_backward(params, optimizers, strategy_state, step + 1, info)


def densify_after_step(strategy: DefaultStrategy | None, params: GaussianParams,
                       optimizers: Mapping[str, torch.optim.Optimizer], strategy_state: dict[str, Any],
                       step: int, info: dict[str, Any]) -> None:
    """Clone / split / prune / reset after the optimisers stepped, as gsplat's simple_trainer does; `step` counts
    from 0, the strategy from 1: its opacity reset fires whenever `step % reset_every == 0`, step 0 included, which
    would clamp every initial opacity to 2 * prune_opa before training starts (harmless over 30k steps, ruinous for
    the short few-view runs here, which never reach `reset_every`)."""
    if strategy is not None:
        strategy.step_post_backward(params, optimizers, strategy_state, step + 1, info,
                                    packed=info.get("gaussian_ids") is not None)


def max_sh_degree(params: GaussianParams) -> int:
    """The SH degree the colour entries hold (0 without `shN`)."""
    return 0 if KEY_SHN not in params else math.isqrt(params[KEY_SHN].shape[1] + 1) - 1


def active_sh_degree(step: int, config: StepConfig, max_degree: int) -> int:
    """The SH degree used at `step` (from 0): one more every `sh_degree_interval` steps, up to `max_degree`."""
    return min(step // max(config.sh_degree_interval, 1), max_degree)


def render_colors(params: GaussianParams, T_world_cam: Float[Tensor, "1 4 4"], sh_degree: int,
                  with_reg: bool) -> Tensor:
    """The colours to rasterise for one camera: RGB from the SH bands up to `sh_degree`, and with `with_reg` the
    regularisation colours as channels 3..5; `[N, D]`, or `[1, N, D]` once view-dependent (sh_degree > 0)."""
    sh = params[KEY_SH0]
    if sh_degree > 0:
        sh = torch.cat([sh, params[KEY_SHN][:, : (sh_degree + 1) ** 2 - 1]], 1)
    colors = sh_colors(params[KEY_MEANS], sh, T_world_cam if sh_degree > 0 else None)
    if with_reg:
        reg = params[KEY_REG_COLORS] if colors.dim() == 2 else params[KEY_REG_COLORS][None]
        colors = torch.cat([colors, reg], dim=-1)
    return colors


def photometric_loss(pred_rgb: Float[Tensor, "H W 3"], gt_rgb: Float[Tensor, "H W 3"],
                     ssim_lambda: float) -> Float[Tensor, ""]:
    """3DGS's `(1 - l) L1 + l (1 - SSIM)` (SSIM: `ssim`, Gaussian window 11, data range 1)."""
    return (1 - ssim_lambda) * (pred_rgb - gt_rgb).abs().mean() + ssim_lambda * (1 - ssim(pred_rgb, gt_rgb))


def colour_regularisation_loss(pred_colours: Float[Tensor, "H W 3"], seg_index: Int[Tensor, "H W"],
                               seg_colours: Float[Tensor, "S 3"]) -> Float[Tensor, ""]:
    """PanSt3R's instance-colour term (docs/method.md section 5): L1 between the rendered regularisation colours and
    `seg_colours[seg_index]`, over the pixels whose index is not 0 (void or not covered)."""
    valid = (seg_index > 0).to(pred_colours.dtype)[..., None]
    target = seg_colours[seg_index]
    return ((pred_colours - target).abs() * valid).sum() / (3 * valid.sum()).clamp_min(1.0)


@dataclass
class _State:
    """Everything that evolves during training (and goes into the checkpoint)."""

    params: torch.nn.ParameterDict
    optimizers: dict[str, torch.optim.Optimizer]
    strategy_state: dict[str, Any]
    cam_deltas: torch.nn.Parameter
    cam_optimizer: torch.optim.Optimizer
    scene_scale: float
    step: int
    losses: list[float]


def _new_state(scene: GaussianScene, cameras: Cameras, config: TrainConfig, device: torch.device,
               strategy: DefaultStrategy | None) -> _State:
    params = scene.to(device).to_params()
    scene_scale = config.scene_scale or estimate_scene_scale(params[KEY_MEANS].detach(), cameras.centers.to(device))
    cam_deltas = torch.nn.Parameter(torch.zeros(len(cameras), 6, device=device))
    return _State(
        params=params, optimizers=_make_optimizers(params, config, scene_scale),
        strategy_state=strategy.initialize_state(scene_scale=scene_scale) if strategy is not None else {},
        cam_deltas=cam_deltas,
        cam_optimizer=torch.optim.Adam([cam_deltas], lr=config.camera_lr), scene_scale=scene_scale, step=0,
        losses=[],
    )


def _config_fingerprint(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in _RESUME_FREE_FIELDS}


def save_checkpoint(path: Path, state: _State, config: TrainConfig, device: torch.device) -> None:
    """Write the resume checkpoint atomically (temporary file in the same folder, then rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": _config_fingerprint(config),
        "step": state.step,
        "scene_scale": state.scene_scale,
        "losses": torch.tensor(state.losses, dtype=torch.float64),
        "params": {k: v.detach().cpu() for k, v in state.params.items()},
        "optimizers": {k: opt.state_dict() for k, opt in state.optimizers.items()},
        "strategy_state": {k: (v.cpu() if isinstance(v, Tensor) else v) for k, v in state.strategy_state.items()},
        "cam_deltas": state.cam_deltas.detach().cpu(),
        "cam_optimizer": state.cam_optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def _load_checkpoint(path: Path, config: TrainConfig, cameras: Cameras, device: torch.device) -> _State:
    payload = torch.load(path, map_location=device, weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint of this version; delete it to start afresh")
    saved = payload["config"]
    now = _config_fingerprint(config)
    diff = sorted(k for k in now if saved.get(k) != now[k])
    if diff:
        raise ValueError(f"{path} was written with other training settings ({', '.join(diff)}); "
                         "resume with the same settings or delete the checkpoint to start afresh")
    if payload["cam_deltas"].shape[0] != len(cameras):
        raise ValueError(f"{path} was written for {payload['cam_deltas'].shape[0]} views, not {len(cameras)}; "
                         "delete it to start afresh")
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.to(device), requires_grad=k not in LABEL_KEYS)
                                     for k, v in payload["params"].items()})
    optimizers = _make_optimizers(params, config, payload["scene_scale"])
    for key, opt in optimizers.items():
        opt.load_state_dict(payload["optimizers"][key])
    cam_deltas = torch.nn.Parameter(payload["cam_deltas"].to(device))
    cam_optimizer = torch.optim.Adam([cam_deltas], lr=config.camera_lr)
    cam_optimizer.load_state_dict(payload["cam_optimizer"])
    strategy_state = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in payload["strategy_state"].items()}
    torch.set_rng_state(payload["rng_cpu"].cpu())
    if device.type == "cuda" and payload["rng_cuda"] is not None:
        torch.cuda.set_rng_state(payload["rng_cuda"].cpu(), device)
    return _State(params=params, optimizers=optimizers, strategy_state=strategy_state, cam_deltas=cam_deltas,
                  cam_optimizer=cam_optimizer, scene_scale=float(payload["scene_scale"]), step=int(payload["step"]),
                  losses=[float(x) for x in payload["losses"]])


def _camera_of(state: _State, cameras: Cameras, view: int, config: TrainConfig) -> Tensor:
    """T_world_cam of one view, with its learned correction when camera refinement is on."""
    T = cameras.T_world_cam[view : view + 1]
    if config.camera_refine:
        T = T @ se3_exp(state.cam_deltas[view : view + 1])
    return T


def _render_view(state: _State, cameras: Cameras, view: int, config: TrainConfig, sh_degree: int,
                 with_reg: bool) -> tuple[Tensor, dict]:
    """Render one input view: RGB (+ the regularisation colours as channels 3..5). Returns ([H, W, D], info)."""
    from panst3r_splat.splat.rasterize import rasterize

    p = state.params
    T_world_cam = _camera_of(state, cameras, view, config)
    colors = render_colors(p, T_world_cam, sh_degree, with_reg)  # [N, D] or [1, N, D]
    background = torch.tensor(config.background, dtype=colors.dtype, device=colors.device)
    if with_reg:
        background = torch.cat([background, torch.zeros_like(background)])
    out, _, info = rasterize(
        p[KEY_MEANS], p[KEY_QUATS], torch.exp(p[KEY_SCALES]), torch.sigmoid(p[KEY_OPACITIES]), colors,
        rigid_inverse(T_world_cam), cameras.K[view : view + 1], cameras.width, cameras.height,
        render_mode="RGB", backgrounds=background[None] if any(config.background) else None,
        absgrad=config.absgrad, backend=config.backend,
    )
    return out[0], info


def _step_loss(pred: Tensor, image: Tensor, seg_index: Tensor | None, seg_colours: Tensor | None,
               config: TrainConfig) -> Tensor:
    """The photometric loss on RGB, plus the weighted regularisation of channels 3..5 when segments are given."""
    loss = photometric_loss(pred[..., :3], image, config.ssim_lambda)
    if seg_index is not None and seg_colours is not None:
        loss = loss + config.reg_weight * colour_regularisation_loss(pred[..., 3:6], seg_index, seg_colours)
    return loss


def _validate(scene: GaussianScene, cameras: Cameras, images: Tensor, segment_maps: Tensor | None) -> None:
    if len(scene) == 0:
        raise ValueError("train_scene got a scene with no Gaussians; check the initial point cloud")
    expected = (len(cameras), cameras.height, cameras.width, 3)
    if tuple(images.shape) != expected:
        raise ValueError(f"train_scene needs images of shape {expected} (one per camera, at the cameras' size), "
                         f"got {tuple(images.shape)}")
    if segment_maps is not None and tuple(segment_maps.shape) != expected[:3]:
        raise ValueError(f"train_scene needs segment maps of shape {expected[:3]}, got {tuple(segment_maps.shape)}")
    if segment_maps is not None and segment_maps.is_floating_point():
        raise ValueError("segment maps must hold integer segment ids")


def train_scene(scene: GaussianScene, cameras: Cameras, images: Float[Tensor, "C H W 3"] | UInt8[Tensor, "C H W 3"],
                segment_maps: Int[Tensor, "C H W"] | None, config: TrainConfig, device: torch.device | str, *,
                checkpoint: Path | None = None, stop_at: int | None = None) -> TrainResult:
    """Optimise the Gaussians on the input views (one view per step); see the module docstring for the loss.

    Args:
        scene: initial Gaussians (see `init_from_points`); labels, if any, are carried along unchanged.
        cameras: the input cameras, one per image.
        images: RGB in [0, 1] (uint8 accepted), at the cameras' size.
        segment_maps: panoptic segment id per pixel (0 = void) for the regularisation, or None to skip it.
        config: hyper-parameters.
        device: where to train.
        checkpoint: resume file; resumed from when it exists, (re)written every `config.checkpoint_every` steps.
        stop_at: stop after this many steps in total (a checkpoint is written there), to split a run in slices.
    """
    device = torch.device(device)
    _validate(scene, cameras, images, segment_maps)
    images = images.to(device)
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    cameras = cameras.to(device)
    with_reg = segment_maps is not None and config.reg_weight > 0
    seg_index, seg_colours = (segment_colour_table(segment_maps.to(device).long(), config.seed)
                              if with_reg else (None, None))
    strategy = make_strategy(config, len(cameras))
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        if checkpoint is not None and Path(checkpoint).exists():
            state = _load_checkpoint(Path(checkpoint), config, cameras, device)
            logger.info("resuming training from %s at step %d", checkpoint, state.step)
        else:
            state = _new_state(scene, cameras, config, device, strategy)
        _run_steps(state, strategy, cameras, images, seg_index, seg_colours, config, end, checkpoint, device)
    T_refined = cameras.T_world_cam
    if config.camera_refine:
        T_refined = (cameras.T_world_cam @ se3_exp(state.cam_deltas.detach())).detach()
    out_cameras = dataclasses.replace(cameras, T_world_cam=T_refined)
    return TrainResult(scene=GaussianScene.from_params(state.params), cameras=out_cameras,
                       losses=tuple(state.losses), steps_done=state.step)


def _run_steps(state: _State, strategy: DefaultStrategy | None, cameras: Cameras, images: Tensor,
               seg_index: Tensor | None, seg_colours: Tensor | None, config: TrainConfig, end: int,
               checkpoint: Path | None, device: torch.device) -> None:
    """The optimisation loop from `state.step` to `end` (exclusive), in place on `state`."""
    num_views = len(cameras)
    sh_max = max_sh_degree(state.params)
    bar = tqdm(total=end, initial=state.step, desc="3DGS", disable=not config.progress, dynamic_ncols=True)
    while state.step < end:
        step = state.step
        view = int(view_order(config.seed, step // num_views, num_views)[step % num_views])
        sh_degree = active_sh_degree(step, config, sh_max)
        frac = step / max(config.steps - 1, 1)
        state.optimizers[KEY_MEANS].param_groups[0]["lr"] = (
            config.means_lr * state.scene_scale * config.means_lr_final ** frac)
        with record_function("fit.render"):
            pred, info = _render_view(state, cameras, view, config, sh_degree, seg_index is not None)
        densify_before_backward(strategy, state.params, state.optimizers, state.strategy_state, step, info)
        with record_function("fit.loss"):
            loss = _step_loss(pred, images[view], None if seg_index is None else seg_index[view], seg_colours,
                              config)
        with record_function("fit.backward"):
            loss.backward()
        with record_function("fit.optimizer"):
            for key, opt in state.optimizers.items():
                if key not in LABEL_KEYS:
                    opt.step()
                    opt.zero_grad(set_to_none=True)
        if config.camera_refine:
            if state.cam_deltas.grad is not None:
                state.cam_deltas.grad[0] = 0.0  # camera 0 fixes the gauge (the world frame is its frame)
            state.cam_optimizer.step()
            state.cam_optimizer.zero_grad(set_to_none=True)
        with record_function("fit.densify"):
            densify_after_step(strategy, state.params, state.optimizers, state.strategy_state, step, info)
        state.losses.append(float(loss.detach()))
        state.step += 1
        bar.update(1)
        if state.step % 10 == 0 or state.step == end:
            bar.set_postfix(loss=f"{state.losses[-1]:.4f}", gaussians=len(state.params[KEY_MEANS]))
        if checkpoint is not None and (state.step % max(config.checkpoint_every, 1) == 0 or state.step == end):
            with record_function("fit.checkpoint"):
                save_checkpoint(Path(checkpoint), state, config, device)
    bar.close()
