"""The nerfstudio `Model` of `ns-train panst3r-splat`: a thin adapter over `splat/`.

- Gaussians: `splat.gaussians.GaussianScene` parameters (gsplat key names plus the instance-colour set and the lifted
  labels) in one `ParameterDict`, initialised from the dataparser's points (`init_from_points`).
- Rendering: `splat.rasterize.rasterize` (gsplat's CUDA kernels on GPU, our compiled Numba rasteriser on CPU);
  nerfstudio's OpenGL cameras are converted once, in `conventions`.
- Training: the same step as `panst3r-splat fit` (`splat.train`): its `StepConfig` (nested as `train`, one set of
  defaults), `render_colors`, `photometric_loss` (L1 + D-SSIM) and `colour_regularisation_loss` (PanSt3R's
  instance colours; docs/method.md section 5), gsplat's `DefaultStrategy` from `make_strategy`, driven by
  nerfstudio's callbacks through `densify_before_backward` / `densify_after_step`. nerfstudio's Trainer owns the
  step loop, the optimisers and their schedules (splat/design.md lists what differs and why). The strategy edits
  every row of every entry, labels included, so they stay aligned; the label entries get never-stepped SGD
  optimisers (`label_optimizers`) only so the strategy finds an optimiser for them.
- Labels: LUDVIG lifting (`splat.lifting.lift_segments`) of the train views' segment maps at the last training step,
  every `lift_every` steps, or on demand (`lift_labels`, the viewer's "Lift labels" button).
- Outputs: `rgb`, `depth`, `accumulation`, and the float RGB colour maps `semantic`, `instance`, `panoptic`
  (nerfstudio's viewer cannot show 1-channel integer outputs; raw ids come from `render_segment_ids`).

Checkpoints are nerfstudio's; `load_state_dict` resizes the entries in place to the checkpoint's number of Gaussians
(the optimisers built before loading keep pointing at the same tensors, so `--load-dir` resumes training).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.cameras import Cameras as NerfstudioCameras
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.viewer.viewer_elements import ViewerButton

from panst3r_splat.core.transforms import rigid_inverse
from panst3r_splat.pipeline.datasets.conventions import from_nerfstudio_cameras
from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import (
    KEY_SEGMENT_MAP, META_SCENE, META_VIEWS, SceneLabels, ViewLabels,
)
from panst3r_splat.splat.gaussians import (
    KEY_LABEL_CONF, KEY_MEANS, KEY_OPACITIES, KEY_QUATS, KEY_SCALES, KEY_SEGMENT_IDS, LABEL_KEYS, GaussianScene,
    init_from_points,
)
from panst3r_splat.splat.lifting import LiftOptions, lift_segments, render_segments
from panst3r_splat.splat.metrics import image_psnr, image_ssim
from panst3r_splat.splat.palette import instance_colors, panoptic_colors, semantic_colors
from panst3r_splat.splat.rasterize import rasterize
from panst3r_splat.splat.train import (
    StepConfig, active_sh_degree, colour_regularisation_loss, densify_after_step, densify_before_backward,
    estimate_scene_scale, label_optimizers, make_strategy, max_sh_degree, photometric_loss, render_colors,
)

logger = logging.getLogger(__name__)

OUT_RGB, OUT_DEPTH, OUT_ACCUMULATION = "rgb", "depth", "accumulation"
OUT_SEMANTIC, OUT_INSTANCE, OUT_PANOPTIC = "semantic", "instance", "panoptic"
OUT_REG = "reg_rgb"
"""Training only: the rendered instance-colour set."""
OUT_BACKGROUND = "background"
"""Training only: the background colour composited behind the Gaussians ([3])."""
LABEL_OUTPUTS = (OUT_SEMANTIC, OUT_INSTANCE, OUT_PANOPTIC)


@dataclass
class Panst3rSplatModelConfig(ModelConfig):
    """Labelled 3D Gaussian Splatting (PanSt3R section 5) on our rasteriser, for nerfstudio."""

    _target: Type = field(default_factory=lambda: Panst3rSplatModel)
    enable_collider: bool = False
    """Rasterisation needs no near/far collider (nerfstudio's ray collider does not apply to cameras)."""
    max_init_gaussians: int = 100_000
    """Initial Gaussians: the dataparser's points are voxel-downsampled to at most this many."""
    init_opacity: float = 0.1
    """Opacity of the initial Gaussians."""
    num_random: int = 20_000
    """Random Gaussians in the scene box when the dataparser gives no points."""
    sh_degree: int = 3
    """Largest spherical-harmonic degree of the colours."""
    background_color: Literal["black", "white", "random"] = "black"
    """Colour behind the Gaussians ('random': a new colour every training step, black otherwise)."""
    train: StepConfig = StepConfig()
    """The training step, shared with `panst3r-splat fit` (`splat.train.StepConfig`, one set of defaults): loss
    weights, SH schedule, gsplat's densification, rasteriser. The learning rates and the number of steps are
    nerfstudio's (`--optimizers`, `--max-num-iterations`), their defaults `splat.train.TrainConfig`'s. (A plain
    default, frozen, so a class attribute: the config.yml of a run from before this field loads with it.)"""
    lift_every: int = 0
    """Also lift labels every this many steps (0: only at the end of training and on demand)."""
    lift_include_void: bool = True
    """Void pixels vote for 'unlabelled' when lifting (False: they do not vote; holes fill from other views)."""
    label_min_alpha: float = 0.5
    """Pixels whose accumulated opacity is below this render as void in the label outputs."""


def _color_lut(scene: Optional[SceneLabels], kind: str) -> Tensor:
    """[max segment id + 1, 3] float colour of every segment id for one label output (void and unknown ids black)."""
    segments = () if scene is None else scene.segments
    size = max((s.id for s in segments), default=0) + 1
    ids = np.zeros(size, dtype=np.int64)
    classes = np.zeros(size, dtype=np.int64)
    instances = np.zeros(size, dtype=np.int64)
    for s in segments:
        ids[s.id] = s.id
        classes[s.id] = s.class_id
        instances[s.id] = s.id if s.isthing else 0
    if kind == OUT_SEMANTIC:
        rgb = semantic_colors(classes)
    elif kind == OUT_INSTANCE:
        rgb = instance_colors(instances)
    else:
        rgb = panoptic_colors(classes, instances)
    rgb[ids == 0] = 0
    return torch.from_numpy(rgb.astype(np.float32) / 255.0)


class Panst3rSplatModel(Model):
    """See the module docstring."""

    config: Panst3rSplatModelConfig

    def __init__(self, *args: Any, seed_points: Optional[Tuple[Tensor, Tensor]] = None, **kwargs: Any) -> None:
        self.seed_points = seed_points
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------------------------------------ set-up

    def populate_modules(self) -> None:
        super().populate_modules()
        metadata = self.kwargs.get("metadata") or {}
        self.scene_labels: Optional[SceneLabels] = metadata.get(META_SCENE)
        self.train_views: Optional[ViewLabels] = metadata.get(META_VIEWS)
        scene = self._initial_scene()
        self.gauss_params = scene.to_params()
        self.register_buffer("labels_lifted", torch.zeros((), dtype=torch.bool))
        self._label_optimizers = label_optimizers(self.gauss_params)
        self.step = 0
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        self.info: Dict[str, Any] = {}
        self.crop_box: Optional[OrientedBox] = None
        self._final_step: Optional[int] = None
        centres = (torch.zeros(0, 3) if self.train_views is None
                   else torch.from_numpy(self.train_views.T_world_cam[:, :3, 3]).float())
        estimated = estimate_scene_scale(scene.means, centres) if len(centres) else 1.0
        self.scene_scale = self.config.train.scene_scale or estimated
        self.strategy = make_strategy(self.config.train, self.num_train_data)
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale) if self.strategy else {}
        for kind in LABEL_OUTPUTS:
            self.register_buffer(f"_lut_{kind}", _color_lut(self.scene_labels, kind), persistent=False)
        max_id = max((s.id for s in self.scene_labels.segments), default=0) if self.scene_labels else 0
        gen = torch.Generator().manual_seed(self.config.train.seed)
        self.register_buffer("_reg_palette", torch.rand(max_id + 1, 3, generator=gen), persistent=False)
        self.lift_button = ViewerButton(name="Lift labels", cb_hook=lambda _: self.lift_labels())

    def _initial_scene(self) -> GaussianScene:
        c = self.config
        if self.seed_points is not None and len(self.seed_points[0]) > 0:
            points, colors = self.seed_points
        else:
            gen = torch.Generator().manual_seed(0)
            aabb = self.scene_box.aabb.float()
            points = aabb[0] + torch.rand(c.num_random, 3, generator=gen) * (aabb[1] - aabb[0])
            colors = torch.rand(c.num_random, 3, generator=gen)
            logger.info("panst3r-splat: no seed points from the dataparser, %d random Gaussians", c.num_random)
        return init_from_points(points, colors, c.max_init_gaussians, sh_degree=c.sh_degree,
                                init_opacity=c.init_opacity)

    # ------------------------------------------------------------------------------------------ parameters

    @property
    def num_points(self) -> int:
        return int(self.gauss_params[KEY_MEANS].shape[0])

    def gaussian_scene(self) -> GaussianScene:
        """The current Gaussians (detached copies, labels included), in nerfstudio's normalised frame."""
        return GaussianScene.from_params(self.gauss_params)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        """One group per trainable entry, named as the entry (gsplat's strategies look optimisers up by it)."""
        return {k: [p] for k, p in self.gauss_params.items() if k not in LABEL_KEYS}

    def _all_optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        return {**self.optimizers, **self._label_optimizers}

    def load_state_dict(self, state_dict: Dict[str, Tensor], strict: bool = True, **kwargs: Any):  # type: ignore[override]
        """Resize every entry in place to the checkpoint's number of Gaussians, then load (strictly)."""
        for name, param in self.gauss_params.items():
            key = f"gauss_params.{name}"
            if key in state_dict:
                param.data = torch.zeros(state_dict[key].shape, dtype=param.dtype, device=param.device)
        if self.strategy is not None:
            self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)
        return super().load_state_dict(state_dict, strict=strict, **kwargs)

    def update_to_step(self, step: int) -> None:
        self.step = step

    # -------------------------------------------------------------------------------------------- training

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = attributes.trainer
        if trainer is not None:  # the loop runs steps start .. start + max_num_iterations - 1
            self._final_step = int(getattr(trainer, "_start_step", 0)) + int(trainer.config.max_num_iterations) - 1
        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self._before_step,
                             args=[attributes.optimizers]),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self._after_step),
        ]

    def _before_step(self, optimizers: Any, step: int) -> None:
        self.step = step
        self.optimizers = optimizers.optimizers

    def _after_step(self, step: int) -> None:
        if self.info:  # a training render of this step happened (nerfstudio's callbacks drive the strategy)
            densify_after_step(self.strategy, self.gauss_params, self._all_optimizers(), self.strategy_state, step,
                               self.info)
        self.info = {}
        every = self.config.lift_every
        if step == self._final_step or (every > 0 and (step + 1) % every == 0):
            self.lift_labels()

    def _background(self) -> Tensor:
        if self.config.background_color == "white":
            return torch.ones(3, device=self.device)
        if self.config.background_color == "random" and self.training:
            return torch.rand(3, device=self.device)
        return torch.zeros(3, device=self.device)

    # ------------------------------------------------------------------------------------------- rendering

    def _visible(self) -> Dict[str, Tensor]:
        """The entries to render: all of them, or those inside the viewer's crop box."""
        p = dict(self.gauss_params.items())
        if self.crop_box is None or self.training:
            return p
        inside = self.crop_box.within(p[KEY_MEANS]).squeeze()
        return {k: v[inside] for k, v in p.items()}

    def _camera(self, camera: NerfstudioCameras) -> tuple[Tensor, Tensor, int, int]:
        """(viewmat [1, 4, 4], K [1, 3, 3], width, height) of a single nerfstudio camera, our conventions."""
        if camera.shape[0] != 1:
            raise ValueError(f"panst3r-splat renders one camera at a time, got {camera.shape[0]}")
        K, T_world_cam = from_nerfstudio_cameras(camera)
        K = K.to(self.device, torch.float32)
        T_world_cam = T_world_cam.to(self.device, torch.float32)
        return rigid_inverse(T_world_cam), K, int(camera.width.reshape(-1)[0]), int(camera.height.reshape(-1)[0])

    def get_outputs(self, camera: NerfstudioCameras) -> Dict[str, Tensor]:  # type: ignore[override]
        """Render one camera: rgb, depth (expected z), accumulation; in training also the regularisation colours,
        in evaluation the label colour maps."""
        if not isinstance(camera, NerfstudioCameras):
            raise TypeError("panst3r-splat renders cameras (use a FullImageDatamanager), not ray bundles")
        viewmat, K, width, height = self._camera(camera)
        p = self._visible()
        T_world_cam = rigid_inverse(viewmat)
        c = self.config.train
        sh_max = max_sh_degree(p)
        degree = active_sh_degree(self.step, c, sh_max) if self.training else sh_max
        with_reg = self.training and c.reg_weight > 0
        colors = render_colors(p, T_world_cam, degree, with_reg)  # [N, D] or [1, N, D]
        render, alpha, info = rasterize(
            p[KEY_MEANS], p[KEY_QUATS], torch.exp(p[KEY_SCALES]), torch.sigmoid(p[KEY_OPACITIES]), colors, viewmat,
            K, width, height, render_mode="RGB+ED", absgrad=c.absgrad, backend=c.backend,
        )  # fmt: skip
        if self.training:
            densify_before_backward(self.strategy, self.gauss_params, self._all_optimizers(), self.strategy_state,
                                    self.step, info)
            self.info = info
        render, alpha = render[0], alpha[0]
        background = self._background()
        outputs = {
            OUT_RGB: torch.clamp(render[..., :3] + (1.0 - alpha) * background, 0.0, 1.0),
            OUT_DEPTH: render[..., -1:],
            OUT_ACCUMULATION: alpha,
        }
        if with_reg:
            outputs[OUT_REG] = render[..., 3:6]
        if self.training:
            outputs[OUT_BACKGROUND] = background
        else:
            outputs.update(self._label_outputs(p, viewmat, K, width, height))
        return outputs

    def _segment_ids(self, p: Dict[str, Tensor], viewmat: Tensor, K: Tensor, width: int, height: int) -> Tensor:
        return render_segments(
            p[KEY_MEANS].detach(), p[KEY_QUATS].detach(), torch.exp(p[KEY_SCALES].detach()),
            torch.sigmoid(p[KEY_OPACITIES].detach()), p[KEY_SEGMENT_IDS].detach().round().long(), viewmat, K, width,
            height, min_alpha=self.config.label_min_alpha, backend=self.config.train.backend,
        )[0]  # fmt: skip

    def _label_outputs(self, p: Dict[str, Tensor], viewmat: Tensor, K: Tensor, width: int,
                       height: int) -> Dict[str, Tensor]:
        if not bool(self.labels_lifted):
            black = torch.zeros(height, width, 3, device=self.device)
            return {kind: black for kind in LABEL_OUTPUTS}
        seg = self._segment_ids(p, viewmat, K, width, height)
        out = {}
        for kind in LABEL_OUTPUTS:
            lut = getattr(self, f"_lut_{kind}")
            out[kind] = lut[seg.clamp(0, len(lut) - 1)] * (seg < len(lut))[..., None]
        return out

    @torch.no_grad()
    def render_segment_ids(self, camera: NerfstudioCameras) -> Int[Tensor, "H W"]:
        """Raw panoptic segment id per pixel (ids of the legend, 0 = void) of one camera; all void before lifting."""
        viewmat, K, width, height = self._camera(camera.to(self.device))
        if not bool(self.labels_lifted):
            return torch.zeros(height, width, dtype=torch.long, device=self.device)
        return self._segment_ids(self._visible(), viewmat, K, width, height)

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: NerfstudioCameras,  # type: ignore[override]
                               obb_box: Optional[OrientedBox] = None) -> Dict[str, Tensor]:
        self.crop_box = obb_box
        return self.get_outputs(camera.to(self.device))

    # ---------------------------------------------------------------------------------------------- labels

    def lift_labels(self) -> bool:
        """Lift the train views' segment maps onto the Gaussians (LUDVIG); returns False when there are none."""
        views = self.train_views
        if views is None or views.segment_maps is None:
            logger.warning("panst3r-splat: the dataparser gave no segment maps; no labels to lift")
            return False
        p = self.gauss_params
        T = torch.from_numpy(views.T_world_cam).to(self.device, torch.float32)
        K = torch.from_numpy(views.K).to(self.device, torch.float32)
        seg = torch.from_numpy(views.segment_maps).to(self.device, torch.long)
        lifted = lift_segments(
            p[KEY_MEANS].detach(), p[KEY_QUATS].detach(), torch.exp(p[KEY_SCALES].detach()),
            torch.sigmoid(p[KEY_OPACITIES].detach()), rigid_inverse(T), K, seg,
            LiftOptions(include_void=self.config.lift_include_void, backend=self.config.train.backend),
        )  # fmt: skip
        with torch.no_grad():
            p[KEY_SEGMENT_IDS].copy_(lifted.segment_ids.to(p[KEY_SEGMENT_IDS].dtype))
            p[KEY_LABEL_CONF].copy_(lifted.confidence.to(p[KEY_LABEL_CONF].dtype))
            self.labels_lifted.fill_(True)
        labelled = int((lifted.segment_ids > 0).sum())
        logger.info("panst3r-splat: lifted labels onto %d of %d Gaussians", labelled, self.num_points)
        return True

    # ------------------------------------------------------------------------------------ losses, metrics

    def _gt_rgb(self, image: Tensor, background: Tensor) -> Tensor:
        image = image.to(self.device)
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        if image.shape[-1] == 4:  # composite RGBA ground truth over the same background
            return image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:]) * background
        return image

    # `batch` is nerfstudio's: the view's tensors plus its "image_idx", an int.
    def get_loss_dict(self, outputs: Dict[str, Tensor], batch: Dict[str, Any],
                      metrics_dict: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        """`train_scene`'s loss (`splat.train`), its two terms logged apart: `main_loss` (L1 + D-SSIM on RGB) and
        `reg_loss` (the weighted instance-colour term; segment ids outside the legend's palette count as void)."""
        c = self.config.train
        gt = self._gt_rgb(batch["image"], outputs.get(OUT_BACKGROUND, self._background()))
        loss = {"main_loss": photometric_loss(outputs[OUT_RGB], gt, c.ssim_lambda)}
        if OUT_REG in outputs and KEY_SEGMENT_MAP in batch:
            seg = batch[KEY_SEGMENT_MAP].to(self.device).long()
            index = torch.where((seg > 0) & (seg < len(self._reg_palette)), seg, torch.zeros_like(seg))
            loss["reg_loss"] = c.reg_weight * colour_regularisation_loss(outputs[OUT_REG], index, self._reg_palette)
        return loss

    def get_metrics_dict(self, outputs: Dict[str, Tensor], batch: Dict[str, Any]) -> Dict[str, Tensor]:
        gt = self._gt_rgb(batch["image"], outputs.get(OUT_BACKGROUND, self._background()))
        return {"psnr": image_psnr(outputs[OUT_RGB].detach(), gt),
                "gaussian_count": torch.tensor(float(self.num_points))}

    def get_image_metrics_and_images(self, outputs: Dict[str, Tensor], batch: Dict[str, Any]
                                     ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """PSNR and SSIM of one view (torchmetrics, data range 1; no LPIPS: its weights would have to be
        downloaded), the GT | render image, and the panoptic render once labels are lifted."""
        gt = self._gt_rgb(batch["image"], self._background())
        pred = outputs[OUT_RGB]
        metrics = {"psnr": float(image_psnr(pred, gt)), "ssim": float(image_ssim(pred, gt))}
        images = {"img": torch.cat([gt, pred], dim=1)}
        if bool(self.labels_lifted) and OUT_PANOPTIC in outputs:
            images[OUT_PANOPTIC] = outputs[OUT_PANOPTIC]
        return metrics, images
