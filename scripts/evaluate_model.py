"""Quality of a PanSt3R checkpoint on held-out synthetic scenes (never seen in training).

    .venv/bin/python scripts/evaluate_model.py [--checkpoint CKPT] [--scenes 5] [--views 8] [--pool test|train]
                                              [--out eval_model]

Seed pools: `test` (default, the reported numbers) starts at `HELD_OUT_SEED_START + 100`, apart from the held-out
scenes that training watches (`HELD_OUT_SEED_START + i`, i < 100); `train` takes training seeds (rooms a run may
have seen, at the evaluation setting), to tell underfitting from overfitting. For each seed: synth (8 input views at the model's 192x144) ->
`predict` (merge: the checkpoint's default) -> `eval --split train` (PQ^scene, mIoU of the merged predictions on the
input views) and geometry from the predicted pointmaps against the ground truth: median relative depth error of the
global points after a Sim(3) alignment (seen from each GT camera), camera rotation error and camera-centre error (in
units of the scene scale) after that alignment, and the relative rotation error between views with its no-rotation
baseline (on the views whose camera was solved; their share is reported); the median relative depth error of the
local pointmaps after per-view median scaling; for models with a descriptor head, the share of ground-truth
correspondences whose nearest descriptor in the other view lies within 2 pixels. Prints a table and writes
`<out>/model_quality.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from panst3r_splat.core.geometry import local_points
from panst3r_splat.core.predictions import load_predictions
from panst3r_splat.core.training.metrics import geometry_metrics
from panst3r_splat.pipeline.datasets.synth import HELD_OUT_SEED_START, SynthConfig, generate_scene, write_scene
from panst3r_splat.pipeline.evaluation import evaluate_folders
from panst3r_splat.pipeline.stages.predict import PredictOptions, run_predict
from panst3r_splat.pipeline.training.targets import points_in_first_camera

FIRST_SEED = {"test": HELD_OUT_SEED_START + 100, "train": 500_000}
"""First seed of each pool (training runs draw their rooms from the lowest seeds up, so `train` rooms at
500,000 are of the training distribution; whether a run saw them depends on its bank size)."""


def evaluate_scene(seed: int, out: Path, args: argparse.Namespace) -> dict[str, float]:
    """Predict and score one held-out scene."""
    scene = generate_scene(SynthConfig(train_views=args.views, test_views=0), seed)
    scene_dir, pred_dir = out / f"scene_{seed}", out / f"pred_{seed}"
    write_scene(scene, scene_dir, overwrite=True)
    options = PredictOptions(checkpoint=args.checkpoint, merge=args.merge, device=torch.device(args.device))
    started = time.perf_counter()
    run_predict(scene_dir, pred_dir, options) if not (pred_dir / "predictions.npz").exists() else None
    seconds = time.perf_counter() - started
    report = evaluate_folders(scene_dir, pred_dir, split="train")
    pred = load_predictions(pred_dir)
    K = np.broadcast_to(scene.K, (args.views, 3, 3))
    gt_local = local_points(scene.depth, K)
    gt_world = points_in_first_camera(gt_local, scene.T_world_cam)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
    # Views the camera solver could not connect have NaN cameras and points: the geometry is scored on the others,
    # and the share of connected views is reported beside it.
    ok = np.ones(args.views, dtype=bool) if pred.camera_ok is None else np.asarray(pred.camera_ok, dtype=bool)
    geo = geometry_metrics(as_t(pred.pts3d[ok]), as_t(pred.pts3d_local[ok]), as_t(gt_world[ok]), as_t(gt_local[ok]),
                           torch.from_numpy(scene.depth[ok] > 0), as_t(pred.conf[ok]))
    extra = {"desc_match_acc_2px": _descriptor_accuracy(scene, gt_world, gt_local, args)}
    return {
        "seed": seed,
        "pq_scene": report.pq_scene.all.pq,
        "pq_things": report.pq_scene.things.pq,
        "pq_stuff": report.pq_scene.stuff.pq,
        "miou": report.miou.miou,
        "depth_rel_err": geo.global_depth_rel_error,
        "camera_rot_err_deg": geo.camera_rotation_error_deg,
        "camera_center_err": geo.camera_center_error,
        "rel_rot_err_deg": geo.rotation_error_deg,
        "rel_rot_err_identity_deg": geo.rotation_error_identity_deg,
        "local_depth_rel_err": geo.local_depth_rel_error,
        "views_connected": float(ok.mean()),
        **extra,
        "predict_seconds": seconds,
    }


def _descriptor_accuracy(scene, gt_world: np.ndarray, gt_local: np.ndarray, args: argparse.Namespace) -> float:
    """Descriptor matching accuracy (2 px) over all view pairs; NaN for a model without a descriptor head."""
    from panst3r_splat.core.model.outputs import activate_descriptors
    from panst3r_splat.pipeline.training.evaluate import descriptor_match_accuracy
    from panst3r_splat.pipeline.training.targets import normalise_images

    model, class_embeddings = _model(args)
    if model.descriptor_head is None:
        return float("nan")
    images = normalise_images(torch.from_numpy(scene.images))[None]
    with torch.no_grad():
        out = model(images, class_embeddings, panoptic=False)
    desc, _ = activate_descriptors(out.descriptors_raw[0])
    return descriptor_match_accuracy(desc, torch.from_numpy(scene.depth > 0), torch.from_numpy(gt_world).float(),
                                     torch.from_numpy(gt_local).float())


_MODEL: dict = {}


def _model(args: argparse.Namespace):
    """The checkpoint's model and class embeddings, loaded once."""
    if not _MODEL:
        from panst3r_splat.core.checkpoint import load_checkpoint
        from panst3r_splat.pipeline.stages.predict import default_checkpoint_path

        loaded = load_checkpoint(args.checkpoint or default_checkpoint_path())
        _MODEL["model"] = loaded.model.eval()
        _MODEL["emb"] = None if loaded.class_embeddings is None else loaded.class_embeddings.float()
    return _MODEL["model"], _MODEL["emb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="model (default: the built-in one)")
    parser.add_argument("--scenes", type=int, default=5, help="held-out scenes")
    parser.add_argument("--views", type=int, default=8, help="input views per scene")
    parser.add_argument("--pool", choices=sorted(FIRST_SEED), default="test",
                        help="seed pool: test (held out, the reported numbers) or train (the training distribution)")
    parser.add_argument("--merge", default=None, help="merge (default: the checkpoint's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("eval_model"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [evaluate_scene(FIRST_SEED[args.pool] + i, args.out, args) for i in range(args.scenes)]
    keys = [k for k in rows[0] if k != "seed"]
    print(f"{'seed':>8} " + " ".join(f"{k[:14]:>14}" for k in keys))
    for r in rows:
        print(f"{r['seed']:>8} " + " ".join(f"{r[k]:>14.3f}" for k in keys))
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    print(f"{'mean':>8} " + " ".join(f"{mean[k]:>14.3f}" for k in keys))
    (args.out / "model_quality.json").write_text(json.dumps({"pool": args.pool, "scenes": rows, "mean": mean},
                                                            indent=2))


if __name__ == "__main__":
    main()
