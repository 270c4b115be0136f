"""Reading an `ns-train panst3r-splat` output folder as the project's `FittedScene`.

`panst3r-splat render / export / view` accept a SCENE folder or an ns-train run (`config.yml` +
`nerfstudio_models/step-*.ckpt`); `load_ns_output` turns the latter into the former, and `read_scene_or_run` is the
scene reader (`stages.render.SceneReader`) the command line hands to the `render` and `export` stages:

- Gaussians and lifted labels: the model's entries at the latest checkpoint, in nerfstudio's normalised frame
  (the frame nerfstudio's own exports use).
- Cameras: the train views in that frame (our conventions: OpenCV axes, pixel-centre K).
- Legend: the dataparser's segments (the dataparser runs again, as it does for `ns-render` and `ns-viewer`, so the
  data must still be where training found it).
- Alignment: when the data frame is a Panoptic Lifting scene's frame, the Sim(3) normalised -> dataset frame (the
  inverse of the dataparser's normalisation, composed with nothing else: predicted labels were already aligned to
  the dataset frame by the dataparser), so `render --cameras dataset:SCENE` works unchanged.

`config.yml` is nerfstudio's YAML with Python object tags; like nerfstudio's own `eval_setup`, it is read with the
full YAML loader, so only read run folders you produced or trust. Checkpoints load with `weights_only=True`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.splat.gaussians import Cameras
from panst3r_splat.splat.scene_io import GAUSSIANS_FILE, Alignment, FittedScene, load_scene

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yml"


def is_ns_output(path: str | Path) -> bool:
    """Whether `path` is an ns-train run folder (or its config.yml)."""
    path = Path(path)
    return (path.is_file() and path.name == CONFIG_FILE) or (path / CONFIG_FILE).is_file()


def find_ns_config(path: str | Path) -> Path:
    """The config.yml of a run: `path` itself, `path/config.yml`, or the newest run below `path`
    (`<output-dir>/<experiment>/panst3r-splat/<timestamp>/config.yml`, at most three levels down)."""
    path = Path(path)
    if path.is_file() and path.name == CONFIG_FILE:
        return path
    if (path / CONFIG_FILE).is_file():
        return path / CONFIG_FILE
    if path.is_dir():
        found = sorted(p for depth in ("*", "*/*", "*/*/*") for p in path.glob(f"{depth}/{CONFIG_FILE}"))
        if found:
            newest = max(found, key=lambda p: (p.parent.name, str(p)))
            if len(found) > 1:
                logger.info("%s holds %d ns-train runs; reading the newest, %s", path, len(found), newest.parent)
            return newest
    raise UserError(f"{path} is not an ns-train output: it holds no {CONFIG_FILE} (point to the run folder that "
                    "`ns-train panst3r-splat` printed as 'Config File')")


def _latest_checkpoint(model_dir: Path) -> tuple[Path, int]:
    checkpoints = sorted(model_dir.glob("step-*.ckpt")) if model_dir.is_dir() else []
    if not checkpoints:
        raise UserError(f"{model_dir} holds no step-*.ckpt checkpoint; the run saved none yet (train longer, or "
                        "wait for --steps-per-save)")
    path = checkpoints[-1]  # zero-padded step numbers sort in step order
    return path, int(path.stem.split("-")[1])


def load_ns_pipeline(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[Any, Any, Path, int]:
    """(config, pipeline, checkpoint path, step) of an ns-train panst3r-splat run, ready for rendering.

    The checkpoint folder is taken next to config.yml (not from the output dir recorded in it), so a run folder
    that was moved or is read from another working directory still loads.
    """
    import yaml

    from panst3r_splat.pipeline.frontends.nerfstudio_method import METHOD_NAME

    config_path = find_ns_config(path)
    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)  # nerfstudio's own format (see module doc)
    if getattr(config, "method_name", None) != METHOD_NAME:
        raise UserError(f"{config_path} is a {getattr(config, 'method_name', '?')!r} run; only "
                        f"`ns-train {METHOD_NAME}` outputs carry panoptic labels")
    checkpoint, step = _latest_checkpoint(config_path.parent / config.relative_model_dir)
    device = torch.device(device)
    pipeline = config.pipeline.setup(device=device, test_mode="inference")
    pipeline.eval()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    pipeline.load_pipeline(state["pipeline"], state["step"])
    return config, pipeline, checkpoint, step


def load_ns_output(path: str | Path, *, device: str | torch.device = "cpu") -> FittedScene:
    """The labelled Gaussians of an `ns-train panst3r-splat` run as a `FittedScene` (see the module docstring)."""
    from panst3r_splat.pipeline.frontends.nerfstudio_dataparsers import META_SCENE, META_VIEWS

    config_path = find_ns_config(path)
    config, pipeline, checkpoint, step = load_ns_pipeline(config_path, device=device)
    model = pipeline.model
    metadata = pipeline.datamanager.train_dataset.metadata
    scene_labels, views = metadata.get(META_SCENE), metadata.get(META_VIEWS)
    if scene_labels is None or views is None:
        raise UserError(f"{checkpoint.parent.parent} was trained with a dataparser other than panst3r-data or "
                        "panoptic-lifting-data: it carries no segment legend")
    if not bool(model.labels_lifted):
        logger.warning("%s: labels were never lifted (training stopped early); lifting them now", checkpoint)
        model.lift_labels()
    cameras = Cameras(K=torch.from_numpy(views.K).float(), T_world_cam=torch.from_numpy(views.T_world_cam).float(),
                      width=views.width, height=views.height, names=views.names)
    alignment = None
    if scene_labels.dataset is not None:
        alignment = Alignment.from_similarity(scene_labels.normalisation.to_data(), rotation_error_deg=0.0,
                                              views=views.names, dataset=scene_labels.dataset)
    model_config = config.pipeline.model
    background = {"white": (1.0, 1.0, 1.0)}.get(model_config.background_color, (0.0, 0.0, 0.0))
    info = {
        "source": {"kind": "ns-train", "config": str(config_path.resolve()),
                   "checkpoint": str(checkpoint.resolve()), "step": step, "data": dict(scene_labels.source)},
        "settings": {"train": {"background": list(background)},
                     "model": {f.name: _plain(getattr(model_config, f.name)) for f in dataclasses.fields(model_config)
                               if not f.name.startswith("_")}},
        "normalisation": scene_labels.normalisation.to_json(),
    }
    gaussians = model.gaussian_scene().to("cpu")
    return FittedScene(gaussians=gaussians, cameras=cameras, segments=scene_labels.segments, alignment=alignment,
                       info=info)


def read_scene_or_run(folder: Path) -> FittedScene:
    """A SCENE folder (`splat.scene_io.load_scene`) or, where the folder is an ns-train run (a `config.yml` and no
    `gaussians.ply`), its Gaussians and lifted labels with the map back to the dataset frame (`load_ns_output`)."""
    folder = Path(folder)
    if (folder / CONFIG_FILE).is_file() and not (folder / GAUSSIANS_FILE).is_file():
        try:
            return load_ns_output(folder)
        except (ValueError, FileNotFoundError) as err:
            raise UserError(f"{folder}: cannot read this ns-train run ({err})") from None
    return load_scene(folder)


def _plain(value: Any) -> Any:
    """Config values as JSON-ready Python values."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # the nested `train` step settings
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)
