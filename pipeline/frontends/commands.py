"""Subcommands of `panst3r-splat`, thin wrappers from CLI options to the stage functions.

Each function's docstring is its `--help` text; options follow the README's command table (the public
contract).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional


MergeName = Literal["qubo", "standard_v2", "standard_v1"]
DeviceName = Literal["auto", "cpu", "cuda"]
CameraSourceName = Literal["auto", "head", "matches", "sfm"]


def demo(*, out: Path = Path("demo_out"), device: DeviceName = "auto", views: int = 8, test_views: int = 4,
         size: str = "default", oracle: bool = False, images: Optional[Path] = None, seed: int = 1_000_001,
         fit_steps: int = 1500, budget: int = 5000, orbit_frames: int = 60, merge: Optional[MergeName] = None,
         overwrite: bool = False, threads: int = 1, cameras: CameraSourceName = "auto") -> None:
    """The main job on the built-in defaults: synthetic scene -> predict + merge -> fit -> render -> eval.

    Prints one summary table (each stage's wall time, CPU time and peak memory; PQ^scene and mIoU direct and lifted;
    PSNR; the paths written) and the `panst3r-splat view` command to run next; OUT/summary.json holds the same.
    Every stage is written atomically into its own folder under --out; a re-run reuses the stages it finished.

    Args:
        out: output folder (data/, predictions/, scene/, renders/, scores/, summary.json).
        device: where to run the model and the splats.
        views: number of input views of the synthetic scene.
        test_views: number of held-out views (the lifted scores and PSNR are measured on them).
        size: 'default' (the built-in model's training size: 192x144 synthetic views), a long side in pixels (a
            multiple of 16), or 'native' (with --images: the photos' own size).
        oracle: also fit, render and score from the ground truth, as a reference for the splatting and lifting.
        images: your own photos instead of the synthetic scene: predict -> fit -> orbit video, no scores.
        seed: synthetic scene seed (1000000 and up: rooms the built-in model never trained on).
        fit_steps: 3DGS optimisation steps of the fit.
        budget: initial number of Gaussians of the fit.
        orbit_frames: frames of the orbit video.
        merge: merging method; default: the model's own default.
        overwrite: redo every stage even where a finished one with the same settings exists.
        threads: torch CPU threads (1 is fastest for the demo's small tensors, above all on a busy machine; 0: torch's
            default).
        cameras: camera source of the predict stage (see `predict --cameras`).
    """
    import sys

    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.jobs.demo import DemoOptions, format_summary, run_demo

    options = DemoOptions(out=out, device=resolve_device(device), views=views, test_views=test_views, size=size,
                          seed=seed, fit_steps=fit_steps, budget=budget, orbit_frames=orbit_frames, merge=merge,
                          oracle=oracle, images=images, overwrite=overwrite, threads=threads, cameras=cameras)
    result = run_demo(options)
    sys.stdout.write("\n" + format_summary(result))


def synth(*, out: Path, seed: int = 0, train_views: int = 12, test_views: int = 6, width: int = 192,
          height: int = 144, num_objects: int = 6, images_only: bool = False, overwrite: bool = False,
          camera_path: Literal["orbit", "sweep", "mixed"] = "orbit") -> None:
    """Write a synthetic indoor scene in the Panoptic Lifting layout (exact ground truth).

    Seeds from 1000000 up are the held-out evaluation range (never used for training data).

    Args:
        out: scene folder to write.
        seed: scene seed; same seed and options give byte-identical files (view options do not change the room).
        train_views: number of training (input) views.
        test_views: number of held-out novel test views.
        width: image width in pixels.
        height: image height in pixels.
        num_objects: furniture pieces on the floor (props on surfaces and doors/windows come extra).
        images_only: write only the training views' images as OUT/<frame>.png (the unposed input a user has).
        overwrite: replace a scene already in --out.
        camera_path: orbit (ring looking inwards), sweep (along a wall, looking across) or mixed (by seed).
    """
    import logging
    import time

    from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_images, write_scene
    from panst3r_splat.pipeline.errors import UserError

    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    if num_objects < 0:
        raise UserError(f"--num-objects must be >= 0, got {num_objects}")
    try:
        config = SynthConfig(train_views=train_views, test_views=test_views, width=width, height=height,
                             num_objects=(num_objects, num_objects), path=camera_path)
    except ValueError as err:
        raise UserError(str(err)) from None
    start = time.perf_counter()
    scene = generate_scene(config, seed)
    if images_only:
        write_images(scene, out, overwrite=overwrite)
        what = f"{train_views} images"
    else:
        write_scene(scene, out, overwrite=overwrite)
        things = len([i for i in scene.description["instances"] if i["visible"]])
        what = (f"{config.num_views} views ({train_views} train, {test_views} test), "
                f"{things} object instances")
    logging.getLogger(__name__).info("synth: seed %d, %s at %dx%d in %.1f s -> %s", seed, what, width, height,
                                     time.perf_counter() - start, out)


def predict(*, images: Path, out: Path, checkpoint: Optional[Path] = None, classes: Optional[Path] = None,
            siglip: Optional[Path] = None, class_names: Optional[Path] = None, size: str = "default",
            keyframes: str = "auto",
            keyframe_selection: Literal["linspace", "farthest"] = "linspace", merge: Optional[MergeName] = None,
            split: str = "train", device: DeviceName = "auto", batch_size: int = 1, max_video_frames: int = 100,
            seed: int = 0, cameras: CameraSourceName = "auto") -> None:
    """PanSt3R forward pass + multi-view mask merging on a folder of unposed images.

    Writes OUT/predictions.npz, segments.json, points.ply and the pred_semantics/ + pred_surrogateid/ label PNGs
    at the input images' original resolution (see README "Predictions folder").

    Args:
        images: a folder of images, a video file, or a Panoptic Lifting scene (its color/ frames of --split).
        out: predictions folder to write (an existing one is replaced).
        checkpoint: model checkpoint (official .pth or our .safetensors); default: the built-in model.
        classes: class-set .npz (class_names, class_embeddings); default: the checkpoint's own.
        siglip: local SigLIP model folder (config.json, model.safetensors, spiece.model; e.g. a download of
            google/siglip-base-patch16-224): embed the class names with it, as the official checkpoints expect
            (instead of --classes; `panst3r-splat classes` writes the same set to a file once).
        class_names: with --siglip: a text file of class names, one a line; default: the checkpoint's names, else
            the 21 classes of the class table.
        size: 'default' (the checkpoint's training size), an integer long side such as 512, or 'native'.
        keyframes: 'auto' (all up to 50, else 50), 'all', or a number K.
        keyframe_selection: how K keyframes are chosen: 'linspace' over the input order (official; videos,
            ordered captures) or 'farthest' (farthest-point sampling on image descriptors; unordered photo sets).
        merge: merging method; default: the checkpoint's postprocess_default (else qubo).
        split: split of a Panoptic Lifting scene to read.
        device: where to run the model.
        batch_size: views per encoder/render call (1 as the official demo; larger is faster on a GPU).
        max_video_frames: frames sampled evenly from a video input.
        seed: seed of the QUBO solver (results are deterministic given it).
        cameras: where the cameras come from: 'head' (PanSt3R's global pointmaps, as the paper), 'matches' (the
            model's dense descriptors, matched and solved classically; needs a checkpoint with a descriptor head),
            'sfm' (COLMAP through pycolmap on the photos at their resolution, the model's local depth placed by
            its cameras; views it cannot register get none), or 'auto' (the checkpoint's camera_source metadata, else 'matches'
            when the model has a descriptor head, else 'head').
    """
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.stages.predict import PredictOptions, run_predict

    options = PredictOptions(checkpoint=checkpoint, classes=classes, siglip=siglip, class_names=class_names,
                             size=size, keyframes=keyframes, keyframe_selection=keyframe_selection, merge=merge,
                             split=split, device=resolve_device(device), batch_size=batch_size,
                             max_video_frames=max_video_frames, seed=seed, cameras=cameras)
    run_predict(images, out, options)


def classes(*, siglip: Path, out: Path, names: Optional[Path] = None, prompt: str = "This is a photo of {}.",
            device: DeviceName = "auto", batch_size: int = 32) -> None:
    """Write a class-set file (for `predict --classes`) with SigLIP text embeddings from a local SigLIP folder.

    Each class embedding is the normalised SigLIP text pooler output of the prompt, as the official PanSt3R
    checkpoints expect. Dataset ids and thing flags come from the class table when every name is one of its
    classes, else ids 1..K and every class a thing.

    Args:
        siglip: local SigLIP model folder (config.json, model.safetensors, spiece.model), e.g. a download of
            google/siglip-base-patch16-224; nothing is fetched from the network.
        out: class-set file to write (.npz with class_names, class_embeddings, class_ids, isthing).
        names: text file of class names, one a line (blank and '#' lines skipped); default: the 21 classes of the
            class table.
        prompt: prompt template, '{}' is replaced by the class name (the official one is the default; another
            shifts the official checkpoints' class scores).
        device: where to run the text model.
        batch_size: texts per model call.
    """
    import logging

    from panst3r_splat.core import class_table
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.stages.classes import (
        check_class_set_out,
        read_names_file,
        siglip_class_set,
        write_class_set_file,
    )

    check_class_set_out(out)
    class_names = read_names_file(names) if names is not None else tuple(class_table.class_names())
    class_set = siglip_class_set(siglip, class_names, prompt=prompt, device=resolve_device(device),
                                 batch_size=batch_size)
    path = write_class_set_file(class_set, out)
    logging.getLogger(__name__).info("classes: %d classes -> %s", len(class_set), path)


def merge(*, predictions: Path, merge: MergeName = "qubo", out: Optional[Path] = None,
          device: DeviceName = "auto", seed: int = 0) -> None:
    """Re-merge an existing predictions folder without re-running the model.

    Rewrites panoptic (in predictions.npz), segments.json and the label PNGs, atomically.

    Args:
        predictions: predictions folder written by `predict`.
        merge: merging method.
        out: write a new predictions folder here instead of updating in place.
        device: where to merge.
        seed: seed of the QUBO solver.
    """
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.stages.merge import run_merge

    run_merge(predictions, merge, out, device=resolve_device(device), seed=seed)


def fit(*, out: Path, predictions: Optional[Path] = None, dataset: Optional[Path] = None, oracle: bool = False,
        steps: int = 1500, device: DeviceName = "auto", seed: int = 0, budget: int = 20000, sh_degree: int = 1,
        conf_threshold: float = 3.0, split: str = "train", ignore_void: bool = False, camera_refine: bool = False,
        background: Literal["mean", "black", "white"] = "mean", overwrite: bool = False,
        stop_after: Optional[int] = None, poses: Optional[str] = None, fit_size: int = 512) -> None:
    """Fit a labelled 3DGS scene from predictions (or, with --oracle, from a dataset's ground truth).

    An interrupted fit resumes from the checkpoint beside --out (.OUT.train.ckpt) when run again.

    Args:
        out: fitted scene folder to write.
        predictions: predictions folder written by `predict`.
        dataset: Panoptic Lifting scene (with --oracle).
        oracle: use ground-truth cameras, depth and labels of --dataset.
        steps: optimisation steps.
        device: where to train.
        seed: random seed.
        budget: initial number of Gaussians (the point cloud is voxel-downsampled to it).
        sh_degree: spherical-harmonic degree of the colours (0..3).
        conf_threshold: predicted points with a lower confidence are not used to initialise the Gaussians.
        split: split of --dataset whose frames are the input views (--oracle).
        ignore_void: lifting: unlabelled pixels do not vote (holes in the masks are filled from other views).
        camera_refine: also optimise a small pose correction per input camera (for predicted cameras).
        background: colour behind the Gaussians in training and renders (mean: the input images' mean colour,
            what parts of the scene no input view saw render in).
        overwrite: replace a fitted scene already in --out.
        stop_after: stop after this many steps (checkpointed) without writing the scene; run again to continue.
        poses: dataset:SCENE: fit --predictions under the cameras of a Panoptic Lifting scene (pose/, intrinsic/,
            frames matched by file stem), each view's local pointmap scaled by multi-view consistency; the scene is
            then in the dataset's frame (the paper's novel-view protocol).
        fit_size: --predictions: train on the input photos (recorded by predict) with their long side at most this
            many pixels (never enlarged), labels mapped from the model's crop (pixels outside it do not vote);
            0 = the model's resolution.
    """
    import dataclasses

    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.errors import UserError
    from panst3r_splat.pipeline.stages.fit import (
        FitOptions, check_output_folder, fit_scene, inputs_from_dataset, inputs_from_predictions,
    )
    from panst3r_splat.splat.train import TrainConfig

    if (predictions is None) == (dataset is None):
        raise UserError("give exactly one of --predictions PRED or --dataset PANLI_SCENE --oracle")
    if dataset is not None and not oracle:
        raise UserError("--dataset fits from ground truth and needs --oracle; to fit from predictions, run "
                        "`panst3r-splat predict --images SCENE` and pass --predictions")
    if oracle and dataset is None:
        raise UserError("--oracle needs --dataset PANLI_SCENE")
    if poses is not None and predictions is None:
        raise UserError("--poses places predictions under known cameras and needs --predictions PRED")
    if steps < 1 or budget < 1:
        raise UserError(f"--steps and --budget must be positive, got {steps} and {budget}")
    if not 0 <= sh_degree <= 3:
        raise UserError(f"--sh-degree must be in 0..3, got {sh_degree}")
    if stop_after is not None and stop_after < 1:
        raise UserError(f"--stop-after must be positive, got {stop_after}")
    check_output_folder(out, overwrite)
    torch_device = resolve_device(device)
    if dataset is not None:
        inputs = inputs_from_dataset(dataset, split=split, seed=seed)
    else:
        from panst3r_splat.pipeline.stages.known_poses import parse_poses

        from panst3r_splat.pipeline.stages.fit_resolution import at_photo_resolution

        if fit_size < 0:
            raise UserError(f"--fit-size must be 0 (the model's resolution) or a long side in pixels, got {fit_size}")
        inputs = inputs_from_predictions(predictions, conf_threshold=conf_threshold,
                                         poses=None if poses is None else parse_poses(poses))
        inputs = at_photo_resolution(inputs, predictions, fit_size)
    train = dataclasses.replace(TrainConfig(), steps=steps, seed=seed, camera_refine=camera_refine)
    options = FitOptions(train=train, budget=budget, sh_degree=sh_degree, ignore_void=ignore_void,
                         background=background, stop_after=stop_after)
    fit_scene(inputs, out, options, torch_device)


def render(*, scene: Path, out: Path, cameras: str = "orbit", device: DeviceName = "auto",
           orbit_frames: int = 120, min_alpha: float = 0.5, keep_void: bool = False, video: bool = True,
           fps: int = 24) -> None:
    """Render RGB and panoptic labels of a fitted scene.

    Writes rgb/, semantic/, instance/, panoptic/, overlay/ (colour PNGs), pred_semantics/ + pred_surrogateid/
    (the evaluation format), legend.json, render.json and, for an orbit, video.mp4.

    Args:
        scene: fitted scene folder.
        out: output folder.
        cameras: 'orbit', 'train' or 'dataset:PANLI_SCENE[:SPLIT]' (default split test; the scene is aligned to
            the dataset frame through the cameras of its input views).
        device: where to render.
        orbit_frames: number of views of the orbit.
        min_alpha: pixels whose accumulated alpha is below this render as void.
        keep_void: keep void pixels void in pred_semantics/ and pred_surrogateid/ too (by default they take the
            nearest labelled pixel's label there, as the reference protocol scores void as a wrong class).
        video: write video.mp4 for the orbit.
        fps: frame rate of video.mp4.
    """
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.frontends.nerfstudio_io import read_scene_or_run
    from panst3r_splat.pipeline.stages.render import RenderOptions, parse_cameras, render_scene

    spec = parse_cameras(cameras, orbit_frames=orbit_frames)
    options = RenderOptions(min_alpha=min_alpha, video=video, fps=fps, fill_void=not keep_void)
    render_scene(scene, out, spec, options, device=resolve_device(device), read_scene=read_scene_or_run)


def render_predict(*, scene: Path, cameras: str, out: Path, checkpoint: Optional[Path] = None,
                   merge: Optional[MergeName] = None, size: str = "default", predict_cameras: CameraSourceName = "auto",
                   device: DeviceName = "auto") -> None:
    """Render-then-predict: RGB of a fitted scene at the given cameras, then PanSt3R (and the merge) on the renders.

    The paper's other novel-view strategy (the "PanSt3R" row of its Table 2, next to the lifted labels, "+LUDVIG").
    Writes OUT/renders/ (as `render`) and OUT/predictions/ (as `predict`, label PNGs named after the rendered
    frames); score them with `panst3r-splat eval --gt PANLI_SCENE --pred OUT/predictions`.

    Args:
        scene: fitted scene folder.
        cameras: 'dataset:PANLI_SCENE[:SPLIT]' (default split test), 'train' or 'orbit'.
        out: output folder (renders/, predictions/).
        checkpoint: model checkpoint; default: the built-in model.
        merge: merging method; default: the checkpoint's default.
        size: model input size (as `predict --size`).
        predict_cameras: camera source of the predict step (as `predict --cameras`).
        device: where to render and run the model.
    """
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.frontends.nerfstudio_io import read_scene_or_run
    from panst3r_splat.pipeline.stages.predict import PredictOptions
    from panst3r_splat.pipeline.stages.render import RenderOptions, parse_cameras, render_scene
    from panst3r_splat.pipeline.stages.render_predict import render_then_predict

    torch_device = resolve_device(device)
    spec = parse_cameras(cameras)
    predict = PredictOptions(checkpoint=checkpoint, size=size, merge=merge, device=torch_device,
                             cameras=predict_cameras)
    render_scene(scene, out / "renders", spec, RenderOptions(video=False), device=torch_device,
                 read_scene=read_scene_or_run)
    render_then_predict(out / "renders", out / "predictions", predict)


def evaluate(*, gt: Path, pred: Path, split: str = "test", json: Optional[Path] = None,
             clean: bool = False, size: str = "512") -> None:
    """Score predictions against a Panoptic Lifting scene: PQ^scene, SQ, RQ, mIoU, per-view PQ.

    The default reproduces Panoptic Lifting's evaluation code exactly (the numbers papers report).

    Args:
        gt: Panoptic Lifting scene with rs_semantics/ and rs_instance/.
        pred: folder with pred_semantics/ and pred_surrogateid/.
        split: split of the scene to score.
        json: also write the scores to this JSON file.
        clean: treat predicted class 0 as void (the reference protocol scores it as a class).
        size: resize every label map to this square side with nearest neighbour ('512', the reference), or 'native'.
    """
    import json as json_module
    import sys

    from panst3r_splat.pipeline.errors import UserError
    from panst3r_splat.pipeline.evaluation import Protocol, evaluate_folders, format_table, report_to_json

    if size == "native":
        side = None
    elif size.isdigit() and int(size) > 0:
        side = int(size)
    else:
        raise UserError(f"--size must be a positive integer (e.g. 512) or 'native', got {size!r}")
    protocol = Protocol.CLEAN if clean else Protocol.REFERENCE
    report = evaluate_folders(gt, pred, split=split, size=side, protocol=protocol)
    sys.stdout.write(format_table(report))
    if json is not None:
        try:
            json.parent.mkdir(parents=True, exist_ok=True)
            json.write_text(json_module.dumps(report_to_json(report), indent=2) + "\n")
        except OSError as err:
            raise UserError(f"cannot write {json} ({err.strerror}); choose a writable path for --json") from None
        sys.stdout.write(f"scores written to {json}\n")


def view(path: Path, /, *, host: str = "127.0.0.1", port: int = 8080,
         mode: Literal["rgb", "semantic", "instance", "panoptic", "depth"] = "rgb", device: DeviceName = "auto",
         preview_size: int = 0, still_size: int = 0, max_splats: int = 20_000) -> None:
    """Browse a fitted scene, a predictions folder or an ns-train run in the browser (viser); Ctrl-C stops it.

    A scene's Gaussians are drawn by the browser as splats (WebGL); modes and edits change their colours and
    opacities. This machine renders only the segment map under a click (exact labels) and the depth mode.
    A predictions folder is shown as its fused point cloud.

    Args:
        path: SCENE, predictions folder, or `ns-train panst3r-splat` run folder (its config.yml).
        host: interface to bind (localhost by default; any other exposes the viewer to the network).
        port: port to serve on.
        mode: render mode to start in.
        device: where to render a scene.
        preview_size: depth mode: longer side of the renders while the camera moves (0: 192 on CPU, 480 on CUDA).
        still_size: longer side of the depth mode's render once the camera stops and of a click's segment map
            (0: 640 on CPU, 1280 on CUDA).
        max_splats: Gaussians sent to the browser at most, the most visible ones (0: all); the default keeps a
            software-WebGL browser at about 2 frames per second (README). The scene itself stays whole.
    """
    import sys

    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.errors import UserError
    from panst3r_splat.pipeline.frontends.viewer.app import ViewerOptions, serve
    from panst3r_splat.pipeline.frontends.viewer.state import RenderMode

    for name, value in (("--preview-size", preview_size), ("--still-size", still_size)):
        if value < 0:
            raise UserError(f"{name} must be >= 0 (0 picks a default), got {value}")
    if max_splats < 0:
        raise UserError(f"--max-splats must be >= 0 (0: all), got {max_splats}")
    options = ViewerOptions(host=host, port=port, mode=RenderMode(mode), device=resolve_device(device),
                            preview_size=preview_size, still_size=still_size,
                            max_splats=max_splats)

    def ready(url: str) -> None:
        sys.stdout.write(f"panst3r-splat view: serving {path} at {url} (Ctrl-C to stop)\n")
        sys.stdout.flush()

    serve(path, options, ready=ready)
    sys.stdout.write("panst3r-splat view: stopped\n")


def export(*, scene: Optional[Path] = None, out: Optional[Path] = None, per_instance: Optional[Path] = None,
           predictions: Optional[Path] = None, cameras_out: Optional[Path] = None) -> None:
    """Export the labelled Gaussians as a standard 3DGS PLY (plus semantic_id, instance_id), or a predictions
    folder's cameras as nerfstudio transforms.json + a COLMAP text model (--predictions PRED --cameras-out DIR).

    Args:
        scene: fitted scene folder.
        out: PLY file to write.
        per_instance: also write one PLY per instance into this folder.
        predictions: predictions folder whose solved cameras to export (with --cameras-out).
        cameras_out: new folder for transforms.json, images/, sparse_pc.ply and colmap/sparse/0/*.txt.
    """
    from panst3r_splat.pipeline.errors import UserError

    if predictions is not None or cameras_out is not None:
        if predictions is None or cameras_out is None or scene is not None or out is not None:
            raise UserError("export the cameras with --predictions PRED --cameras-out DIR (without --scene/--out)")
        from panst3r_splat.pipeline.stages.camera_export import export_cameras

        export_cameras(predictions, cameras_out)
        return
    if scene is None or out is None:
        raise UserError("give --scene SCENE --out FILE.ply (or --predictions PRED --cameras-out DIR for the cameras)")
    from panst3r_splat.pipeline.frontends.nerfstudio_io import read_scene_or_run
    from panst3r_splat.pipeline.stages.export import export_scene

    export_scene(scene, out, per_instance=per_instance, read_scene=read_scene_or_run)


def train_model(*, preset: str = "tiny", out: Path = Path("train_out/model.safetensors"), resume: bool = False,
                device: DeviceName = "auto", max_steps: Optional[int] = None,
                max_minutes: Optional[float] = None, init_from: Optional[Path] = None) -> None:
    """Train a small PanSt3R on synthetic scenes (resumable; see README "Our own model").

    Args:
        preset: training preset name (configs/training.py: tiny for CPU, gpu for a CUDA machine, smoke).
        out: model checkpoint to write (.safetensors); the resume file and CSV logs sit next to it.
        resume: continue from the resume file next to --out, in the same data order.
        device: where to train.
        max_steps: stop after this many steps of this run (checkpointed; continue with --resume).
        max_minutes: stop after this much wall time (checkpointed; continue with --resume).
        init_from: start from the weights (and step) of a saved model with a fresh optimiser.
    """
    from panst3r_splat.configs.training import get_preset
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.errors import UserError
    from panst3r_splat.pipeline.training.loop import train_model as run

    try:
        recipe = get_preset(preset)
    except ValueError as err:
        raise UserError(str(err)) from None
    if out.suffix != ".safetensors":
        raise UserError(f"--out must end in .safetensors, got {out}")
    if resume and not out.with_suffix(".resume.pt").exists():
        raise UserError(f"--resume: no resume file {out.with_suffix('.resume.pt')}; run once without --resume")
    if not resume and out.with_suffix(".resume.pt").exists():
        raise UserError(f"{out.with_suffix('.resume.pt')} exists: continue it with --resume, or choose another --out")
    run(recipe, out, resume=resume, device=resolve_device(device), max_steps=max_steps, max_minutes=max_minutes,
        init_from=init_from)


def batch(*, scenes: Path, out: Path, address: Optional[str] = None, cameras: CameraSourceName = "auto",
          poses: Literal["predicted", "dataset"] = "predicted", checkpoint: Optional[Path] = None,
          merge: Optional[MergeName] = None, size: str = "default", fit_steps: int = 1500, budget: int = 20000,
          render_predict: bool = True, num_cpus: int = 1, max_retries: int = 1,
          timeout: Optional[float] = None) -> None:
    """Many scenes on Ray: predict -> fit -> render the test split -> eval, per sub-folder of --scenes.

    Each sub-folder that is a Panoptic Lifting scene (or a folder of images) is one Ray task; results go to
    OUT/<scene>/ (the stage folders and scores.json), then OUT/summary.json and OUT/summary.md (the paper's table:
    direct, render-then-predict and lifted PQ^scene). A scene finished earlier with the same settings is not redone.
    Exits with 1 after the summary when a scene failed.

    Args:
        scenes: folder whose sub-folders are the scenes.
        out: output folder (one sub-folder per scene, summary.json, summary.md).
        address: Ray cluster address (`ray start --head` prints it); default: a local Ray on this machine's cores.
            A cluster's nodes must see --scenes and --out at the same paths and run the same panst3r-splat version.
        cameras: camera source of predict (see `predict --cameras`).
        poses: 'predicted' (fit on the predicted cameras and points) or 'dataset' (the paper's protocol: the
            predictions placed under the scene's own cameras, as `fit --poses dataset:SCENE`).
        checkpoint: model checkpoint; default: the built-in model.
        merge: merging method; default: the checkpoint's default.
        size: model input size (see `predict --size`).
        fit_steps: 3DGS optimisation steps per scene.
        budget: initial number of Gaussians per scene.
        render_predict: also score render-then-predict (PanSt3R on RGB rendered at the test cameras).
        num_cpus: CPU cores per task (torch and BLAS threads are pinned to them).
        max_retries: extra attempts after a worker crash or an unexpected error (bad input is not retried).
        timeout: seconds a scene may run (per attempt) before it is cancelled and recorded as failed.
    """
    from panst3r_splat.pipeline.errors import ScenesFailed
    from panst3r_splat.pipeline.jobs.batch import BatchOptions, run_batch

    options = BatchOptions(checkpoint=checkpoint, merge=merge, cameras=cameras, poses=poses, size=size,
                           fit_steps=fit_steps, budget=budget, render_predict=render_predict, num_cpus=num_cpus,
                           max_retries=max_retries, timeout=timeout, address=address)
    result = run_batch(scenes, out, options)
    if result.failed:
        names = ", ".join(f"{s.name} ({s.reason})" for s in result.failed[:3])
        raise ScenesFailed(f"{len(result.failed)} of {len(result.scenes)} scenes failed: {names}; see "
                           f"{out / 'summary.md'}")
