"""`ns-train panst3r-splat`: the nerfstudio method (entry point `nerfstudio.method_configs`).

    ns-train panst3r-splat panst3r-data --data PHOTOS            # PanSt3R predict once, then labelled 3DGS
    ns-train panst3r-splat panoptic-lifting-data --data SCENE    # GT cameras, splits.json, GT or predicted labels
    ns-train panst3r-splat --machine.device-type cpu --vis tensorboard ... (CPU: our rasteriser)

The method is a `TrainerConfig` with our model (`nerfstudio_model`), a `FullImageDatamanager` over
`Panst3rDataset` (label maps in the batch), one optimiser per trainable Gaussian entry (gsplat's strategies look
them up by the entry's name) and no LPIPS anywhere (its weights are a download). Its number of steps and learning
rates are `panst3r-splat fit`'s defaults (`splat.train.TrainConfig`; the model nests the shared `StepConfig`).
`Panst3rPipeline` replaces the averaged eval metrics: PSNR per image and their mean, plus PQ^scene / SQ / RQ / mIoU
over the whole eval split as Panoptic Lifting computes them (a scene-level score cannot be an average of per-image
ones). `ns-eval` writes them.

`Panst3rTrainerConfig` fills in what nerfstudio leaves to the data: the experiment name from the dataparser's
`--data`, and the predictions cache of `panst3r-data` inside the run's output folder (before config.yml is written,
so `ns-render` / `ns-viewer` find the same cache).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Type

import torch
from torch.optim import lr_scheduler

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecayScheduler, ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import (
    KEY_GT_INSTANCES, KEY_GT_SEMANTICS, META_VIEWS, Panst3rDataParserConfig, Panst3rDataset,
)
from panst3r_splat.pipeline.frontends.nerfstudio_model import Panst3rSplatModel, Panst3rSplatModelConfig
from panst3r_splat.splat.gaussians import KEY_MEANS
from panst3r_splat.splat.train import TrainConfig, learning_rates

METHOD_NAME = "panst3r-splat"


@dataclass
class Panst3rPipelineConfig(VanillaPipelineConfig):
    """nerfstudio's vanilla pipeline with scene-level panoptic evaluation."""

    _target: Type = field(default_factory=lambda: Panst3rPipeline)


class Panst3rPipeline(VanillaPipeline):
    """`VanillaPipeline` whose averaged eval metrics add per-image PSNR and scene-level panoptic scores."""

    config: Panst3rPipelineConfig

    @torch.no_grad()
    def get_average_eval_image_metrics(self, step: Optional[int] = None, output_path: Optional[Path] = None,
                                       get_std: bool = False) -> Dict[str, float]:
        """Mean (and std) of the per-image metrics, `psnr/<frame>` for every eval frame, and PQ^scene, SQ^scene,
        RQ^scene (all, things, stuff) and mIoU over the split (reference protocol, 512x512 nearest) once labels are
        lifted and the eval views have labels."""
        from panst3r_splat.pipeline.evaluation import REFERENCE_SIZE, frame_overlaps, score_frames
        from panst3r_splat.pipeline.evaluation.scene_files import FrameLabels
        from panst3r_splat.splat.scene_io import labels_from_segments

        model: Panst3rSplatModel = self.model  # type: ignore[assignment]
        self.eval()
        views = self.datamanager.eval_dataset.metadata.get(META_VIEWS)  # type: ignore[attr-defined]
        per_image: list[dict[str, float]] = []
        tables = []
        result: Dict[str, float] = {}
        if output_path is not None:
            output_path.mkdir(parents=True, exist_ok=True)
        for camera, batch in self.datamanager.fixed_indices_eval_dataloader:  # type: ignore[attr-defined]
            outputs = model.get_outputs_for_camera(camera)
            metrics, images = model.get_image_metrics_and_images(outputs, batch)
            idx = int(batch["image_idx"])
            name = views.names[idx] if views is not None else f"{idx:05d}"
            result[f"psnr/{name}"] = metrics["psnr"]
            per_image.append(metrics)
            if output_path is not None:
                _save_images(output_path, name, images)
            if bool(model.labels_lifted) and KEY_GT_SEMANTICS in batch and model.scene_labels is not None:
                seg = model.render_segment_ids(camera).cpu().numpy()
                pred_sem, pred_inst = labels_from_segments(seg, model.scene_labels.segments)
                labels = FrameLabels(name=name, gt_semantics=batch[KEY_GT_SEMANTICS].cpu().numpy(),
                                     gt_instances=batch[KEY_GT_INSTANCES].cpu().numpy(), pred_semantics=pred_sem,
                                     pred_instances=pred_inst)
                tables.append(frame_overlaps(labels, REFERENCE_SIZE))
        for key in per_image[0] if per_image else ():
            values = torch.tensor([m[key] for m in per_image], dtype=torch.float64)
            result[key] = float(values.mean())
            if get_std:
                result[f"{key}_std"] = float(values.std()) if len(values) > 1 else 0.0
        result.update(_panoptic_scores(tables, score_frames))
        self.train()
        return result


def _save_images(folder: Path, name: str, images: Dict[str, torch.Tensor]) -> None:
    from PIL import Image

    for key, image in images.items():
        array = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        Image.fromarray(array).save(folder / f"eval_{key}_{name}.png")


def _panoptic_scores(tables: list, score_frames: Any) -> Dict[str, float]:
    """PQ^scene and friends of the collected frames (nothing when no frame had labels or all GT is void)."""
    from panst3r_splat.pipeline.errors import UserError

    if not tables:
        return {}
    try:
        pq, miou, per_view, void_fraction = score_frames(tables)
    except UserError:
        return {}
    out = {"miou": miou.miou, "pq_per_view": per_view.all.pq, "predicted_void_fraction": void_fraction}
    for group in ("all", "things", "stuff"):
        summary = getattr(pq, group)
        suffix = "" if group == "all" else f"_{group}"
        out.update({f"pq_scene{suffix}": summary.pq, f"sq_scene{suffix}": summary.sq,
                    f"rq_scene{suffix}": summary.rq})
    return {k: float(v) for k, v in out.items()}


@dataclass
class Panst3rTrainerConfig(TrainerConfig):
    """nerfstudio's trainer config, completed from the dataparser (see the module docstring)."""

    def _dataparser_data(self) -> Optional[Path]:
        datamanager = self.pipeline.datamanager
        data = datamanager.data or getattr(datamanager.dataparser, "data", None)
        return Path(data) if data is not None and str(data) not in ("", ".") else None

    def set_experiment_name(self) -> None:
        if self.experiment_name is None and self.pipeline.datamanager.data is None:
            data = self._dataparser_data()
            if data is not None:
                self.experiment_name = (data.parent if data.is_file() else data).resolve().name
        super().set_experiment_name()

    def save_config(self) -> None:
        dataparser = self.pipeline.datamanager.dataparser
        if isinstance(dataparser, Panst3rDataParserConfig):
            dataparser.place_predictions_cache(self.get_base_dir().parent.resolve())
        super().save_config()


@dataclass
class FloatExponentialDecaySchedulerConfig(ExponentialDecaySchedulerConfig):
    """nerfstudio's exponential decay (with warmup) whose factors are Python floats."""

    _target: Type = field(default_factory=lambda: FloatExponentialDecayScheduler)


class FloatExponentialDecayScheduler(ExponentialDecayScheduler):
    """nerfstudio's `ExponentialDecayScheduler` computes its factors with numpy, so numpy scalars end up in the
    optimisers' learning rates and in every checkpoint; torch >= 2.6 loads checkpoints with `weights_only=True`,
    which refuses them, and `ns-render`, `ns-viewer`, `ns-eval` and `--load-dir` then fail. Same schedule, floats."""

    config: FloatExponentialDecaySchedulerConfig

    def get_scheduler(self, optimizer: torch.optim.Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        c = self.config
        lr_final = lr_init if c.lr_final is None else c.lr_final

        def factor(step: int) -> float:
            if step < c.warmup_steps:
                ramp = min(max(step / c.warmup_steps, 0.0), 1.0)
                if c.ramp == "cosine":
                    ramp = math.sin(0.5 * math.pi * ramp)
                return float(c.lr_pre_warmup + (lr_init - c.lr_pre_warmup) * ramp) / lr_init
            t = min(max((step - c.warmup_steps) / max(c.max_steps - c.warmup_steps, 1), 0.0), 1.0)
            return math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t) / lr_init

        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def _optimizers(train: TrainConfig) -> dict[str, dict[str, Any]]:
    """nerfstudio's optimiser entries from `train_scene`'s settings: one Adam per trainable Gaussian entry (gsplat's
    strategies look them up by the entry's name), the centres' rate decaying to `means_lr_final` of itself at the
    last step as in `train_scene` (no scene-scale factor: nerfstudio's scenes are normalised to about 1)."""
    out: dict[str, dict[str, Any]] = {}
    for key, lr in learning_rates(train).items():
        scheduler = None
        if key == KEY_MEANS:
            scheduler = FloatExponentialDecaySchedulerConfig(lr_final=lr * train.means_lr_final, max_steps=train.steps)
        out[key] = {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": scheduler}
    return out


_TRAIN = TrainConfig()
"""The one set of training defaults (`panst3r-splat fit`'s), which the method's step count and rates take."""


panst3r_splat_method = MethodSpecification(
    config=Panst3rTrainerConfig(
        method_name=METHOD_NAME,
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=1000,
        steps_per_eval_all_images=1000,
        max_num_iterations=_TRAIN.steps,
        mixed_precision=False,
        pipeline=Panst3rPipelineConfig(
            datamanager=FullImageDatamanagerConfig(
                _target=FullImageDatamanager[Panst3rDataset],
                dataparser=Panst3rDataParserConfig(),
                cache_images_type="uint8",
            ),
            model=Panst3rSplatModelConfig(),
        ),
        optimizers=_optimizers(_TRAIN),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    ),
    description="PanSt3R labelled 3D Gaussian Splatting: RGB + semantic / instance / panoptic renders "
                "(CPU via our rasteriser, CUDA via gsplat)",
)
