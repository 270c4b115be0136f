"""Accuracy and speed of the camera solver on held-out synthetic scenes, from ground truth inputs.

    .venv/bin/python scripts/evaluate_cameras.py [--scenes 5] [--views 8] [--width 192 --height 144]
                                                 [--path orbit|sweep|mixed] [--out eval_cameras]
    .venv/bin/python scripts/evaluate_cameras.py --checkpoint docs/training/builtin_v2/model.safetensors  # + model
    .venv/bin/python scripts/evaluate_cameras.py --timing 8 16 32 64      # solve time rows (matching included)

For each held-out scene (seeds from ``HELD_OUT_SEED_START + 200``, apart from the ones training and
`evaluate_model.py` use) the solver runs on the *local* pointmaps from ground-truth depth, each view at a random
scale (the model's per-view scale ambiguity), with three kinds of matches:

- ``gt``: exact ground-truth matches;
- ``gt_noisy``: the same with 30 % of them replaced by random positions and 0.5 px Gaussian noise;
- ``gt_noisy_distorted``: ``gt_noisy`` on local pointmaps with a weak model's errors (focal 20 % short, a smooth
  10 % depth error; `oracle.distort_pointmaps`);
- ``descriptors``: stand-in dense descriptors (random Fourier features of the true 3D point) through the real
  reciprocal matching, so the whole `--cameras matches` path runs;
- ``model`` (with ``--checkpoint CKPT``, a model with a descriptor head, at its training resolution): the model's
  own descriptors and local pointmaps from the scene's images, i.e. what `predict --cameras matches` solves.

Intrinsics always come from the local pointmaps, never from ground truth. Reported per kind: median / mean relative
rotation error and median translation-direction error over all view pairs (a view without a camera counts as
180 degrees), the share of views connected, and the solve time. Prints a table and writes ``<out>/cameras.json``.
Without ``--checkpoint`` the numbers describe the solver, not a trained descriptor head.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from panst3r_splat.core.cameras import SolverOptions, solve_cameras, solve_cameras_from_descriptors
from panst3r_splat.core.cameras.metrics import pair_errors
from panst3r_splat.core.cameras.oracle import (
    corrupt_matches,
    distort_pointmaps,
    ground_truth_matches,
    local_pointmaps,
    synthetic_descriptors,
    world_points,
)
from panst3r_splat.pipeline.datasets.synth import HELD_OUT_SEED_START, SynthConfig, generate_scene, with_views

FIRST_SEED = HELD_OUT_SEED_START + 200
"""Seeds of this evaluation (apart from training's held-out watch scenes and evaluate_model.py's pool)."""
KINDS = ("gt", "gt_noisy", "gt_noisy_distorted", "descriptors")


def _scene(seed: int, views: int, args: argparse.Namespace):
    config = with_views(SynthConfig(width=args.width, height=args.height, path=args.path), train_views=views,
                        test_views=0)
    scene = generate_scene(config, seed)
    K = np.repeat(scene.K[None], views, axis=0)
    scales = np.exp(np.random.default_rng(seed).uniform(-0.5, 0.5, views))
    local = np.nan_to_num(local_pointmaps(scene.depth, K)) * scales[:, None, None, None]
    return scene, K, local


def _model_inputs(scene, model) -> tuple[np.ndarray, list, list]:
    """The model's local pointmaps [V, H, W, 3], descriptors and their confidences on the scene's images."""
    import torch

    from panst3r_splat.core.model.outputs import activate_pointmaps
    from panst3r_splat.core.model.panst3r import InferenceOptions
    from panst3r_splat.pipeline.training.targets import normalise_images

    images = normalise_images(torch.from_numpy(scene.images))
    with torch.no_grad():
        out = model["model"].forward_inference(list(images), model["embeddings"], InferenceOptions(progress=False))
    local = activate_pointmaps(out.stacked_pointmaps_raw())[1].double().numpy()
    return local, list(out.descriptors), list(out.descriptor_conf)


def _load_model(checkpoint: Path) -> dict:
    """The checkpoint's model and its own class embeddings (as `evaluate_model.py` loads them)."""
    from panst3r_splat.core.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    model = loaded.model.eval()
    if model.config.descriptor_head is None or loaded.class_embeddings is None:
        raise SystemExit(f"{checkpoint} is not one of our models with a descriptor head: the model kind needs one")
    return {"model": model, "embeddings": loaded.class_embeddings.float()}


def _solve(kind: str, scene, K: np.ndarray, local: np.ndarray, seed: int, options: SolverOptions, model=None):
    height, width = scene.depth.shape[1:]
    if kind == "model":
        return solve_cameras_from_descriptors(*_model_inputs(scene, model), options)
    if kind == "descriptors":
        descriptors, conf = synthetic_descriptors(world_points(scene.depth, K, scene.T_world_cam), seed=seed)
        return solve_cameras_from_descriptors(local, descriptors, conf, options)
    matches = ground_truth_matches(scene.depth, K, scene.T_world_cam, seed=seed)
    if kind == "gt_noisy_distorted":
        local = distort_pointmaps(local, focal_factor=0.8, depth_noise=0.1, seed=seed)
    if kind in ("gt_noisy", "gt_noisy_distorted"):
        matches = corrupt_matches(matches, outlier_share=0.3, noise_px=0.5, image_hw=(height, width), seed=seed)
    return solve_cameras(local, matches, options)


def _options(args: argparse.Namespace) -> SolverOptions:
    return SolverOptions(self_calibration_passes=args.self_calibration_passes)


def evaluate(args: argparse.Namespace) -> dict:
    kinds = KINDS + (("model",) if args.checkpoint else ())
    model = _load_model(args.checkpoint) if args.checkpoint else None
    rows: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for i in range(args.scenes):
        seed = FIRST_SEED + i
        scene, K, local = _scene(seed, args.views, args)
        for kind in kinds:
            try:
                solution = _solve(kind, scene, K, local, seed, _options(args), model)
            except ValueError as err:  # fewer than 2 views connected: every pair counts as 180 degrees
                logging.warning("seed %d, %s: %s", seed, kind, err)
                rows[kind].append({"seed": seed, "median_rot": 180.0, "mean_rot": 180.0, "median_trans": 180.0,
                                   "connected": 0.0, "all_connected": False, "seconds": float("nan")})
                continue
            errors = pair_errors(solution.T_world_cam, scene.T_world_cam)
            rows[kind].append({"seed": seed, "median_rot": errors.median_rotation_deg,
                               "mean_rot": errors.mean_rotation_deg, "median_trans": errors.median_translation_deg,
                               "connected": errors.connected_share, "all_connected": bool(solution.camera_ok.all()),
                               "seconds": solution.seconds})
    summary = {}
    for kind, scenes in rows.items():
        col = {k: np.array([r[k] for r in scenes], dtype=float) for k in scenes[0] if k != "seed"}
        summary[kind] = {"median_rot_deg": float(np.median(col["median_rot"])),
                         "mean_rot_deg": float(np.mean(col["mean_rot"])),
                         "median_trans_deg": float(np.median(col["median_trans"])),
                         "connected_share": float(np.mean(col["connected"])),
                         "scenes_all_connected": float(np.mean(col["all_connected"])),
                         "median_seconds": float(np.nanmedian(col["seconds"]))}
    settings = vars(args) | {"out": str(args.out), "checkpoint": str(args.checkpoint)}
    return {"settings": settings, "scenes": rows, "summary": summary}


def timing(args: argparse.Namespace) -> list[dict]:
    """Solve time with matching (stand-in descriptors) for each view count, one scene each."""
    out = []
    for views in args.timing:
        scene, K, local = _scene(FIRST_SEED, views, args)
        solution = _solve("descriptors", scene, K, local, FIRST_SEED, _options(args))
        errors = pair_errors(solution.T_world_cam, scene.T_world_cam)
        out.append({"views": views, "seconds": solution.seconds, "median_rot_deg": errors.median_rotation_deg,
                    "connected_share": errors.connected_share})
        print(f"{views:3d} views: {solution.seconds:6.2f} s (matching included), median rotation error "
              f"{errors.median_rotation_deg:.2f} deg, {100 * errors.connected_share:.0f} % connected", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=5)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--path", choices=("orbit", "sweep", "mixed"), default="orbit")
    parser.add_argument("--timing", type=int, nargs="*", default=None, help="view counts to time instead")
    parser.add_argument("--self-calibration-passes", type=int, default=SolverOptions().self_calibration_passes,
                        help="focal self-calibration passes of the solver (0: keep the pointmaps' focal)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="also solve from this model's descriptors and local pointmaps (kind `model`)")
    parser.add_argument("--out", type=Path, default=Path("eval_cameras"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.timing:
        result = {"settings": vars(args) | {"out": str(args.out)}, "timing": timing(args)}
        (args.out / "camera_timing.json").write_text(json.dumps(result, indent=1) + "\n")
        return
    result = evaluate(args)
    print(f"{args.scenes} scenes, {args.views} views, {args.width}x{args.height}, {args.path} path")
    print(f"{'matches':19s} {'med rot':>8s} {'mean rot':>9s} {'med trans':>10s} {'connected':>10s} {'all conn':>9s} "
          f"{'seconds':>8s}")
    for kind, s in result["summary"].items():
        print(f"{kind:19s} {s['median_rot_deg']:8.3f} {s['mean_rot_deg']:9.3f} {s['median_trans_deg']:10.3f} "
              f"{100 * s['connected_share']:9.0f}% {100 * s['scenes_all_connected']:8.0f}% {s['median_seconds']:8.2f}")
    (args.out / "cameras.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
