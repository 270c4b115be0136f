"""What a demo run does: the defaults (and why), `DemoOptions` and their checks, the synthetic views' resolution
and the fit's point-confidence threshold."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from panst3r_splat.pipeline.errors import UserError


DEMO_SEED = 1_000_001
"""A held-out synthetic room (seeds from 1,000,000 up never enter model training) with six visible thing instances
of five classes (two chairs, two bags, a bed, a toilet) among twelve classes: repeats of a class, several things
and stuff, all in the eight input views."""
DEFAULT_VIEWS = 8
DEFAULT_TEST_VIEWS = 4
DEFAULT_FIT_STEPS = 1500
"""Fit steps of the default run, from a measured curve (`scripts/fit_steps_curve.py`, docs/fit_speed.md): held-out
PSNR under the scenes' poses on two rooms other than the demo's, 22.0 dB after 400 steps, 24.0 after 800, 24.4 after
1,500. With the vectorised CPU rasteriser the whole default run (two fits of 1,500 steps) took 3 min 50 s on a
shared 2-core machine whose other core trained a model (209 s of CPU), inside the 5-minute budget."""
DEFAULT_THREADS = 1
"""Torch CPU threads of the demo. Its tensors are small (192x144 views, tiles of 16x16 pixels), so a second thread
gains little, and on a machine whose cores are busy with other work the threads' fork/join waits cost far more:
measured on a shared 2-core machine, the default run took 27 s with one thread and over 5 minutes with two."""
DEFAULT_BUDGET = 5000
"""Initial Gaussians of the default run: the CPU rasteriser's step time grows with them, and a few thousand cover a
192x144 room in few steps."""
DEFAULT_ORBIT_FRAMES = 60
ORBIT_FPS = 15
SYNTH_ASPECT = (3, 4)
"""Height : width of the synthetic views: 4:3 is one of the model's aspect buckets, so no view is cropped."""
MIN_CONFIDENT_FRACTION = 0.1
"""When fewer predicted points than this share reach the fit's confidence threshold, the fit starts from the more
confident half of the points instead (a weak model's confidences can all sit near their floor of 1)."""

MARKER_FILE = ".panst3r-splat-demo"
SUMMARY_JSON = "summary.json"
SUMMARY_TXT = "summary.txt"
DATA, PREDICTIONS, SCENE = "data", "predictions", "scene"
RENDERS_TEST, RENDERS_ORBIT, SCORES = "renders/test", "renders/orbit", "scores"
ORACLE_SCENE, ORACLE_RENDERS = "oracle/scene", "oracle/renders"
POSED_SCENE, POSED_RENDERS = "posed/scene", "posed/renders"


@dataclass(frozen=True)
class DemoOptions:
    """What `run_demo` does (see `commands.DemoArgs` for the command-line meaning of each field)."""

    out: Path
    """Output folder; every stage writes a sub-folder."""
    device: torch.device = torch.device("cpu")
    views: int = DEFAULT_VIEWS
    """Input views of the synthetic scene."""
    test_views: int = DEFAULT_TEST_VIEWS
    """Held-out views of the synthetic scene (the lifted scores and PSNR are measured on them)."""
    size: str = "default"
    """``default`` (the model's training long side), a long side in pixels, or (``--images`` only) ``native``."""
    seed: int = DEMO_SEED
    """Synthetic scene seed."""
    fit_steps: int = DEFAULT_FIT_STEPS
    budget: int = DEFAULT_BUDGET
    orbit_frames: int = DEFAULT_ORBIT_FRAMES
    merge: Optional[str] = None
    """Merge method; None: the model's default."""
    oracle: bool = False
    """Also fit, render and score from ground truth, as a reference for the splatting and lifting alone."""
    images: Optional[Path] = None
    """A user's photos instead of the synthetic scene: predict -> fit -> orbit, no scores."""
    overwrite: bool = False
    """Redo every stage even when a finished one with the same settings exists."""
    cameras: str = "auto"
    """Camera source of the predict stage (``predict --cameras``)."""
    threads: int = DEFAULT_THREADS
    """Torch CPU threads while the demo runs (0: leave torch's setting); restored afterwards."""


def check_options(options: DemoOptions) -> None:
    """One-line errors for bad options and an unusable --out, before any work."""
    out = Path(options.out)
    for name, value, low in (("--views", options.views, 1), ("--fit-steps", options.fit_steps, 1),
                             ("--budget", options.budget, 1), ("--orbit-frames", options.orbit_frames, 2),
                             ("--seed", options.seed, 0), ("--threads", options.threads, 0)):
        if value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")
    if options.images is None and options.views < 3:
        raise UserError(f"--views must be at least 3 for the synthetic scene (the held-out cameras are aligned to the "
                        f"predicted frame through the input views), got {options.views}")
    if options.images is None and options.test_views < 1:
        raise UserError(f"--test-views must be at least 1 (the lifted scores are measured on them), got "
                        f"{options.test_views}")
    if options.images is not None:
        if options.oracle:
            raise UserError("--oracle needs the synthetic scene's ground truth; drop --images or --oracle")
        if not Path(options.images).exists():
            raise UserError(f"--images {options.images} does not exist: give a folder of your photos (or a video)")
    if options.merge is not None:
        from panst3r_splat.core.merging import MERGE_NAMES

        if options.merge not in MERGE_NAMES:
            raise UserError(f"unknown --merge {options.merge!r}; choose one of {', '.join(MERGE_NAMES)}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER_FILE).is_file():
        raise UserError(f"--out {out} exists and is not a demo folder; choose a new --out folder or empty it")


def model_long_side() -> int:
    """The built-in model's training long side (from the checkpoint's metadata, without loading the weights)."""
    from safetensors import safe_open

    from panst3r_splat.core.model.config import config_from_dict
    from panst3r_splat.pipeline.stages.predict import default_checkpoint_path

    path = default_checkpoint_path()
    if not path.is_file():
        raise UserError(f"the built-in model {path} is not installed; reinstall panst3r-splat (see README)")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
    return int(config_from_dict(json.loads(metadata["architecture"])).image_size)


def synth_resolution(size: str) -> tuple[int, int]:
    """(width, height) of the synthetic views: long side ``size`` (or the model's), the 4:3 bucket's short side."""
    from panst3r_splat.core.images import bucket_resolutions, select_resolution

    long_side = model_long_side() if size == "default" else _long_side(size)
    try:
        height, width = select_resolution(SYNTH_ASPECT[0], SYNTH_ASPECT[1], bucket_resolutions(long_side))
    except ValueError as err:
        raise UserError(f"--size {size}: {err}") from None
    return width, height


def _long_side(size: str) -> int:
    if not size.isdigit() or int(size) <= 0:
        raise UserError(f"--size must be 'default' or a long side in pixels (a multiple of 16, e.g. 192); got {size!r}"
                        + (" ('native' applies to --images only)" if size == "native" else ""))
    return int(size)


def fit_conf_threshold(conf: np.ndarray) -> tuple[float, Optional[str]]:
    """The fit's point-confidence threshold: the `fit` default, or the median confidence when fewer than
    `MIN_CONFIDENT_FRACTION` of the points reach the default (then also a note saying so)."""
    from panst3r_splat.core.predictions import POINT_CONF_THRESHOLD

    if float((conf >= POINT_CONF_THRESHOLD).mean()) >= MIN_CONFIDENT_FRACTION:
        return POINT_CONF_THRESHOLD, None
    median = float(np.median(conf))
    note = (f"only {100 * float((conf >= POINT_CONF_THRESHOLD).mean()):.1f} % of the predicted points reach "
            f"confidence {POINT_CONF_THRESHOLD:g} (max {float(conf.max()):.6g}): the splats start from the more "
            f"confident half (threshold {median:.6g})")
    return median, note
