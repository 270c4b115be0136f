"""Subcommands of `panst3r-splat`: one frozen dataclass of options per command, and the command, a thin wrapper from
those options to the stage or job it runs.

Each dataclass is what tyro parses: its docstring is the command's `--help` text, its fields (docstring under each)
are the flags, flat (`--out`, not `--args.out`: the dataclass is the subcommand itself, not a field of one); options
follow the README's command table (the public contract, snapshot in `tests/data/cli_options.json`). The commands map
them onto the stages' own options (`PredictOptions`, `FitOptions`, `DemoOptions`, ...) instead of nesting those:
the stages take resolved values (a `torch.device`, a parsed camera spec, a `TrainConfig`) and import torch, which
`panst3r-splat --help` must not, and a flag's name and help text are for the user, a stage option's for the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import tyro

if TYPE_CHECKING:
    from panst3r_splat.pipeline.stages.fit import FitInputs

MergeName = Literal["qubo", "standard_v2", "standard_v1"]
DeviceName = Literal["auto", "cpu", "cuda"]
CameraSourceName = Literal["auto", "head", "matches", "sfm"]


@dataclass(frozen=True)
class DemoArgs:
    """The main job on the built-in defaults: synthetic scene -> predict + merge -> fit -> render -> eval.

    Prints one summary table (each stage's wall time, CPU time and peak memory; PQ^scene and mIoU direct and lifted;
    PSNR; the paths written) and the `panst3r-splat view` command to run next; OUT/summary.json holds the same.
    Every stage is written atomically into its own folder under --out; a re-run reuses the stages it finished.
    """

    out: Path = Path("demo_out")
    """output folder (data/, predictions/, scene/, renders/, scores/, summary.json)."""
    device: DeviceName = "auto"
    """where to run the model and the splats."""
    views: int = 8
    """number of input views of the synthetic scene."""
    test_views: int = 4
    """number of held-out views (the lifted scores and PSNR are measured on them)."""
    size: str = "default"
    """'default' (the built-in model's training size: 192x144 synthetic views), a long side in pixels (a
    multiple of 16), or 'native' (with --images: the photos' own size)."""
    oracle: bool = False
    """also fit, render and score from the ground truth, as a reference for the splatting and lifting."""
    images: Optional[Path] = None
    """your own photos instead of the synthetic scene: predict -> fit -> orbit video, no scores."""
    seed: int = 1_000_001
    """synthetic scene seed (1000000 and up: rooms the built-in model never trained on)."""
    fit_steps: int = 1500
    """3DGS optimisation steps of the fit."""
    budget: int = 5000
    """initial number of Gaussians of the fit."""
    orbit_frames: int = 60
    """frames of the orbit video."""
    merge: Optional[MergeName] = None
    """merging method; default: the model's own default."""
    overwrite: bool = False
    """redo every stage even where a finished one with the same settings exists."""
    threads: int = 1
    """torch CPU threads (1 is fastest for the demo's small tensors, above all on a busy machine; 0: torch's
    default)."""
    cameras: CameraSourceName = "auto"
    """camera source of the predict stage (see `predict --cameras`)."""


def demo(args: DemoArgs) -> None:
    """`panst3r-splat demo`: run the demo job and print its summary."""
    import sys

    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.jobs.demo import DemoOptions, format_summary, run_demo

    options = DemoOptions(out=args.out, device=resolve_device(args.device), views=args.views,
                          test_views=args.test_views, size=args.size, seed=args.seed, fit_steps=args.fit_steps,
                          budget=args.budget, orbit_frames=args.orbit_frames, merge=args.merge, oracle=args.oracle,
                          images=args.images, overwrite=args.overwrite, threads=args.threads, cameras=args.cameras)
    result = run_demo(options)
    sys.stdout.write("\n" + format_summary(result))


@dataclass(frozen=True)
class SynthArgs:
    """Write a synthetic indoor scene in the Panoptic Lifting layout (exact ground truth).

    Seeds from 1000000 up are the held-out evaluation range (never used for training data).
    """

    out: Path
    """scene folder to write."""
    seed: int = 0
    """scene seed; same seed and options give byte-identical files (view options do not change the room)."""
    train_views: int = 12
    """number of training (input) views."""
    test_views: int = 6
    """number of held-out novel test views."""
    width: int = 192
    """image width in pixels."""
    height: int = 144
    """image height in pixels."""
    num_objects: int = 6
    """furniture pieces on the floor (props on surfaces and doors/windows come extra)."""
    images_only: bool = False
    """write only the training views' images as OUT/<frame>.png (the unposed input a user has)."""
    overwrite: bool = False
    """replace a scene already in --out."""
    camera_path: Literal["orbit", "sweep", "mixed"] = "orbit"
    """orbit (ring looking inwards), sweep (along a wall, looking across) or mixed (by seed)."""


def synth(args: SynthArgs) -> None:
    """`panst3r-splat synth`: generate a synthetic scene and write it (or its training images only)."""
    import logging
    import time

    from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_images, write_scene
    from panst3r_splat.pipeline.errors import UserError

    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.num_objects < 0:
        raise UserError(f"--num-objects must be >= 0, got {args.num_objects}")
    try:
        config = SynthConfig(train_views=args.train_views, test_views=args.test_views, width=args.width,
                             height=args.height, num_objects=(args.num_objects, args.num_objects),
                             path=args.camera_path)
    except ValueError as err:
        raise UserError(str(err)) from None
    start = time.perf_counter()
    scene = generate_scene(config, args.seed)
    if args.images_only:
        write_images(scene, args.out, overwrite=args.overwrite)
        what = f"{args.train_views} images"
    else:
        write_scene(scene, args.out, overwrite=args.overwrite)
        things = len([i for i in scene.description["instances"] if i["visible"]])
        what = (f"{config.num_views} views ({args.train_views} train, {args.test_views} test), "
                f"{things} object instances")
    logging.getLogger(__name__).info("synth: seed %d, %s at %dx%d in %.1f s -> %s", args.seed, what, args.width,
                                     args.height, time.perf_counter() - start, args.out)


@dataclass(frozen=True)
class PredictArgs:
    """PanSt3R forward pass + multi-view mask merging on a folder of unposed images.

    Writes OUT/predictions.npz, segments.json, points.ply and the pred_semantics/ + pred_surrogateid/ label PNGs
    at the input images' original resolution (see README "Predictions folder").
    """

    images: Path
    """a folder of images, a video file, or a Panoptic Lifting scene (its color/ frames of --split)."""
    out: Path
    """predictions folder to write (an existing one is replaced)."""
    checkpoint: Optional[Path] = None
    """model checkpoint (official .pth or our .safetensors); default: the built-in model."""
    classes: Optional[Path] = None
    """class-set .npz (class_names, class_embeddings); default: the checkpoint's own."""
    siglip: Optional[Path] = None
    """local SigLIP model folder (config.json, model.safetensors, spiece.model; e.g. a download of
    google/siglip-base-patch16-224): embed the class names with it, as the official checkpoints expect
    (instead of --classes; `panst3r-splat classes` writes the same set to a file once)."""
    class_names: Optional[Path] = None
    """with --siglip: a text file of class names, one a line; default: the checkpoint's names, else
    the 21 classes of the class table."""
    size: str = "default"
    """'default' (the checkpoint's training size), an integer long side such as 512, or 'native'."""
    keyframes: str = "auto"
    """'auto' (all up to 50, else 50), 'all', or a number K."""
    keyframe_selection: Literal["linspace", "farthest"] = "linspace"
    """how K keyframes are chosen: 'linspace' over the input order (official; videos,
    ordered captures) or 'farthest' (farthest-point sampling on image descriptors; unordered photo sets)."""
    merge: Optional[MergeName] = None
    """merging method; default: the checkpoint's postprocess_default (else qubo)."""
    split: str = "train"
    """split of a Panoptic Lifting scene to read."""
    device: DeviceName = "auto"
    """where to run the model."""
    batch_size: int = 1
    """views per encoder/render call (1 as the official demo; larger is faster on a GPU)."""
    max_video_frames: int = 100
    """frames sampled evenly from a video input."""
    seed: int = 0
    """seed of the QUBO solver (results are deterministic given it)."""
    cameras: CameraSourceName = "auto"
    """where the cameras come from: 'head' (PanSt3R's global pointmaps, as the paper), 'matches' (the
    model's dense descriptors, matched and solved classically; needs a checkpoint with a descriptor head),
    'sfm' (COLMAP through pycolmap on the photos at their resolution, the model's local depth placed by
    its cameras; views it cannot register get none), or 'auto' (the checkpoint's camera_source metadata, else 'matches'
    when the model has a descriptor head, else 'head')."""


def predict(args: PredictArgs) -> None:
    """`panst3r-splat predict`: run the model and the merge on the images, write the predictions folder."""
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.stages.predict import PredictOptions, run_predict

    options = PredictOptions(checkpoint=args.checkpoint, classes=args.classes, siglip=args.siglip,
                             class_names=args.class_names, size=args.size, keyframes=args.keyframes,
                             keyframe_selection=args.keyframe_selection, merge=args.merge, split=args.split,
                             device=resolve_device(args.device), batch_size=args.batch_size,
                             max_video_frames=args.max_video_frames, seed=args.seed, cameras=args.cameras)
    run_predict(args.images, args.out, options)


@dataclass(frozen=True)
class ClassesArgs:
    """Write a class-set file (for `predict --classes`) with SigLIP text embeddings from a local SigLIP folder.

    Each class embedding is the normalised SigLIP text pooler output of the prompt, as the official PanSt3R
    checkpoints expect. Dataset ids and thing flags come from the class table when every name is one of its
    classes, else ids 1..K and every class a thing.
    """

    siglip: Path
    """local SigLIP model folder (config.json, model.safetensors, spiece.model), e.g. a download of
    google/siglip-base-patch16-224; nothing is fetched from the network."""
    out: Path
    """class-set file to write (.npz with class_names, class_embeddings, class_ids, isthing)."""
    names: Optional[Path] = None
    """text file of class names, one a line (blank and '#' lines skipped); default: the 21 classes of the
    class table."""
    prompt: str = "This is a photo of {}."
    """prompt template, '{}' is replaced by the class name (the official one is the default; another
    shifts the official checkpoints' class scores)."""
    device: DeviceName = "auto"
    """where to run the text model."""
    batch_size: int = 32
    """texts per model call."""


def classes(args: ClassesArgs) -> None:
    """`panst3r-splat classes`: embed the class names with SigLIP and write the class-set file."""
    import logging

    from panst3r_splat.core import class_table
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.stages.classes import (
        check_class_set_out,
        read_names_file,
        siglip_class_set,
        write_class_set_file,
    )

    check_class_set_out(args.out)
    class_names = read_names_file(args.names) if args.names is not None else tuple(class_table.class_names())
    class_set = siglip_class_set(args.siglip, class_names, prompt=args.prompt, device=resolve_device(args.device),
                                 batch_size=args.batch_size)
    path = write_class_set_file(class_set, args.out)
    logging.getLogger(__name__).info("classes: %d classes -> %s", len(class_set), path)


@dataclass(frozen=True)
class MergeArgs:
    """Re-merge an existing predictions folder without re-running the model.

    Rewrites panoptic (in predictions.npz), segments.json and the label PNGs, atomically.
    """

    predictions: Path
    """predictions folder written by `predict`."""
    merge: MergeName = "qubo"
    """merging method."""
    out: Optional[Path] = None
    """write a new predictions folder here instead of updating in place."""
    device: DeviceName = "auto"
    """where to merge."""
    seed: int = 0
    """seed of the QUBO solver."""


def merge(args: MergeArgs) -> None:
    """`panst3r-splat merge`: re-merge a predictions folder."""
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.stages.merge import run_merge

    run_merge(args.predictions, args.merge, args.out, device=resolve_device(args.device), seed=args.seed)


@dataclass(frozen=True)
class FitArgs:
    """Fit a labelled 3DGS scene from predictions (or, with --oracle, from a dataset's ground truth).

    An interrupted fit resumes from the checkpoint beside --out (.OUT.train.ckpt) when run again.
    """

    out: Path
    """fitted scene folder to write."""
    predictions: Optional[Path] = None
    """predictions folder written by `predict`."""
    dataset: Optional[Path] = None
    """Panoptic Lifting scene (with --oracle)."""
    oracle: bool = False
    """use ground-truth cameras, depth and labels of --dataset."""
    steps: int = 1500
    """optimisation steps."""
    device: DeviceName = "auto"
    """where to train."""
    seed: int = 0
    """random seed."""
    budget: int = 20000
    """initial number of Gaussians (the point cloud is voxel-downsampled to it)."""
    sh_degree: int = 1
    """spherical-harmonic degree of the colours (0..3)."""
    conf_threshold: float = 3.0
    """predicted points with a lower confidence are not used to initialise the Gaussians."""
    split: str = "train"
    """split of --dataset whose frames are the input views (--oracle)."""
    ignore_void: bool = False
    """lifting: unlabelled pixels do not vote (holes in the masks are filled from other views)."""
    camera_refine: bool = False
    """also optimise a small pose correction per input camera (for predicted cameras)."""
    background: Literal["mean", "black", "white"] = "mean"
    """colour behind the Gaussians in training and renders (mean: the input images' mean colour,
    what parts of the scene no input view saw render in)."""
    overwrite: bool = False
    """replace a fitted scene already in --out."""
    stop_after: Optional[int] = None
    """stop after this many steps (checkpointed) without writing the scene; run again to continue."""
    poses: Optional[str] = None
    """dataset:SCENE: fit --predictions under the cameras of a Panoptic Lifting scene (pose/, intrinsic/,
    frames matched by file stem), each view's local pointmap scaled by multi-view consistency; the scene is
    then in the dataset's frame (the paper's novel-view protocol)."""
    fit_size: int = 512
    """--predictions: train on the input photos (recorded by predict) with their long side at most this
    many pixels (never enlarged), labels mapped from the model's crop (pixels outside it do not vote);
    0 = the model's resolution."""


def fit(args: FitArgs) -> None:
    """`panst3r-splat fit`: check the options, read the fit's inputs, fit and write the scene."""
    import dataclasses

    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.stages.fit import FitOptions, check_output_folder, fit_scene
    from panst3r_splat.splat.train import TrainConfig

    _check_fit_args(args)
    check_output_folder(args.out, args.overwrite)
    torch_device = resolve_device(args.device)
    inputs = _fit_inputs(args)
    train = dataclasses.replace(TrainConfig(), steps=args.steps, seed=args.seed, camera_refine=args.camera_refine)
    options = FitOptions(train=train, budget=args.budget, sh_degree=args.sh_degree, ignore_void=args.ignore_void,
                         background=args.background, stop_after=args.stop_after)
    fit_scene(inputs, args.out, options, torch_device)


def _check_fit_args(args: FitArgs) -> None:
    """One-line errors for contradictory or out-of-range `fit` options, before anything is read."""
    from panst3r_splat.pipeline.errors import UserError

    if (args.predictions is None) == (args.dataset is None):
        raise UserError("give exactly one of --predictions PRED or --dataset PANLI_SCENE --oracle")
    if args.dataset is not None and not args.oracle:
        raise UserError("--dataset fits from ground truth and needs --oracle; to fit from predictions, run "
                        "`panst3r-splat predict --images SCENE` and pass --predictions")
    if args.oracle and args.dataset is None:
        raise UserError("--oracle needs --dataset PANLI_SCENE")
    if args.poses is not None and args.predictions is None:
        raise UserError("--poses places predictions under known cameras and needs --predictions PRED")
    if args.steps < 1 or args.budget < 1:
        raise UserError(f"--steps and --budget must be positive, got {args.steps} and {args.budget}")
    if not 0 <= args.sh_degree <= 3:
        raise UserError(f"--sh-degree must be in 0..3, got {args.sh_degree}")
    if args.stop_after is not None and args.stop_after < 1:
        raise UserError(f"--stop-after must be positive, got {args.stop_after}")
    if args.predictions is not None and args.fit_size < 0:
        raise UserError(f"--fit-size must be 0 (the model's resolution) or a long side in pixels, got "
                        f"{args.fit_size}")


def _fit_inputs(args: FitArgs) -> FitInputs:
    """The fit's views, cameras and initial points: from --dataset's ground truth, or from --predictions (under
    --poses' cameras if given) at the photos' resolution (--fit-size)."""
    from panst3r_splat.pipeline.stages.fit import inputs_from_dataset, inputs_from_predictions

    if args.dataset is not None:
        return inputs_from_dataset(args.dataset, split=args.split, seed=args.seed)
    from panst3r_splat.pipeline.stages.fit_resolution import at_photo_resolution
    from panst3r_splat.pipeline.stages.known_poses import parse_poses

    inputs = inputs_from_predictions(args.predictions, conf_threshold=args.conf_threshold,
                                     poses=None if args.poses is None else parse_poses(args.poses))
    return at_photo_resolution(inputs, args.predictions, args.fit_size)


@dataclass(frozen=True)
class RenderArgs:
    """Render RGB and panoptic labels of a fitted scene.

    Writes rgb/, semantic/, instance/, panoptic/, overlay/ (colour PNGs), pred_semantics/ + pred_surrogateid/
    (the evaluation format), legend.json, render.json and, for an orbit, video.mp4.
    """

    scene: Path
    """fitted scene folder."""
    out: Path
    """output folder."""
    cameras: str = "orbit"
    """'orbit', 'train' or 'dataset:PANLI_SCENE[:SPLIT]' (default split test; the scene is aligned to
    the dataset frame through the cameras of its input views)."""
    device: DeviceName = "auto"
    """where to render."""
    orbit_frames: int = 120
    """number of views of the orbit."""
    min_alpha: float = 0.5
    """pixels whose accumulated alpha is below this render as void."""
    keep_void: bool = False
    """keep void pixels void in pred_semantics/ and pred_surrogateid/ too (by default they take the
    nearest labelled pixel's label there, as the reference protocol scores void as a wrong class)."""
    video: bool = True
    """write video.mp4 for the orbit."""
    fps: int = 24
    """frame rate of video.mp4."""


def render(args: RenderArgs) -> None:
    """`panst3r-splat render`: render the scene (a fitted scene folder or an ns-train run) at the cameras."""
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.frontends.nerfstudio_io import read_scene_or_run
    from panst3r_splat.pipeline.stages.render import RenderOptions, parse_cameras, render_scene

    spec = parse_cameras(args.cameras, orbit_frames=args.orbit_frames)
    options = RenderOptions(min_alpha=args.min_alpha, video=args.video, fps=args.fps, fill_void=not args.keep_void)
    render_scene(args.scene, args.out, spec, options, device=resolve_device(args.device),
                 read_scene=read_scene_or_run)


@dataclass(frozen=True)
class RenderPredictArgs:
    """Render-then-predict: RGB of a fitted scene at the given cameras, then PanSt3R (and the merge) on the renders.

    The paper's other novel-view strategy (the "PanSt3R" row of its Table 2, next to the lifted labels, "+LUDVIG").
    Writes OUT/renders/ (as `render`) and OUT/predictions/ (as `predict`, label PNGs named after the rendered
    frames); score them with `panst3r-splat eval --gt PANLI_SCENE --pred OUT/predictions`.
    """

    scene: Path
    """fitted scene folder."""
    cameras: str
    """'dataset:PANLI_SCENE[:SPLIT]' (default split test), 'train' or 'orbit'."""
    out: Path
    """output folder (renders/, predictions/)."""
    checkpoint: Optional[Path] = None
    """model checkpoint; default: the built-in model."""
    merge: Optional[MergeName] = None
    """merging method; default: the checkpoint's default."""
    size: str = "default"
    """model input size (as `predict --size`)."""
    predict_cameras: CameraSourceName = "auto"
    """camera source of the predict step (as `predict --cameras`)."""
    device: DeviceName = "auto"
    """where to render and run the model."""


def render_predict(args: RenderPredictArgs) -> None:
    """`panst3r-splat render-predict`: render RGB at the cameras (no video), then predict on the renders."""
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.frontends.nerfstudio_io import read_scene_or_run
    from panst3r_splat.pipeline.stages.predict import PredictOptions
    from panst3r_splat.pipeline.stages.render import RenderOptions, parse_cameras, render_scene
    from panst3r_splat.pipeline.stages.render_predict import render_then_predict

    torch_device = resolve_device(args.device)
    spec = parse_cameras(args.cameras)
    predict_options = PredictOptions(checkpoint=args.checkpoint, size=args.size, merge=args.merge,
                                     device=torch_device, cameras=args.predict_cameras)
    render_scene(args.scene, args.out / "renders", spec, RenderOptions(video=False), device=torch_device,
                 read_scene=read_scene_or_run)
    render_then_predict(args.out / "renders", args.out / "predictions", predict_options)


@dataclass(frozen=True)
class EvalArgs:
    """Score predictions against a Panoptic Lifting scene: PQ^scene, SQ, RQ, mIoU, per-view PQ.

    The default reproduces Panoptic Lifting's evaluation code exactly (the numbers papers report).
    """

    gt: Path
    """Panoptic Lifting scene with rs_semantics/ and rs_instance/."""
    pred: Path
    """folder with pred_semantics/ and pred_surrogateid/."""
    split: str = "test"
    """split of the scene to score."""
    json: Optional[Path] = None
    """also write the scores to this JSON file."""
    clean: bool = False
    """treat predicted class 0 as void (the reference protocol scores it as a class)."""
    size: str = "512"
    """resize every label map to this square side with nearest neighbour ('512', the reference), or 'native'."""


def evaluate(args: EvalArgs) -> None:
    """`panst3r-splat eval`: score the label folders, print the table, write the JSON if asked."""
    import json
    import sys

    from panst3r_splat.pipeline.errors import UserError
    from panst3r_splat.pipeline.evaluation import Protocol, evaluate_folders, format_table, report_to_json

    if args.size == "native":
        side = None
    elif args.size.isdigit() and int(args.size) > 0:
        side = int(args.size)
    else:
        raise UserError(f"--size must be a positive integer (e.g. 512) or 'native', got {args.size!r}")
    protocol = Protocol.CLEAN if args.clean else Protocol.REFERENCE
    report = evaluate_folders(args.gt, args.pred, split=args.split, size=side, protocol=protocol)
    sys.stdout.write(format_table(report))
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report_to_json(report), indent=2) + "\n")
        except OSError as err:
            raise UserError(f"cannot write {args.json} ({err.strerror}); choose a writable path for --json") from None
        sys.stdout.write(f"scores written to {args.json}\n")


@dataclass(frozen=True)
class ViewArgs:
    """Browse a fitted scene, a predictions folder or an ns-train run in the browser (viser); Ctrl-C or `kill` stops it.

    A scene's Gaussians are drawn by the browser as splats (WebGL); modes and edits change their colours and
    opacities. This machine renders only the segment map under a click (exact labels) and the depth mode.
    A predictions folder is shown as its fused point cloud.
    """

    path: tyro.conf.Positional[Path]
    """SCENE, predictions folder, or `ns-train panst3r-splat` run folder (its config.yml)."""
    host: str = "127.0.0.1"
    """interface to bind (localhost by default; any other exposes the viewer to the network)."""
    port: int = 8080
    """port to serve on."""
    mode: Literal["rgb", "semantic", "instance", "panoptic", "depth"] = "rgb"
    """render mode to start in."""
    device: DeviceName = "auto"
    """where to render a scene."""
    preview_size: int = 0
    """depth mode: longer side of the renders while the camera moves (0: 192 on CPU, 480 on CUDA)."""
    still_size: int = 0
    """longer side of the depth mode's render once the camera stops and of a click's segment map
    (0: 640 on CPU, 1280 on CUDA)."""
    max_splats: int = 20_000
    """Gaussians sent to the browser at most, the most visible ones (0: all); the default keeps a
    software-WebGL browser at about 2 frames per second (README). The scene itself stays whole."""


def view(args: ViewArgs) -> None:
    """`panst3r-splat view`: serve the viewer until Ctrl-C or SIGTERM."""
    import sys

    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.errors import UserError
    from panst3r_splat.pipeline.frontends.viewer.app import ViewerOptions, serve
    from panst3r_splat.pipeline.frontends.viewer.state import RenderMode

    for name, value in (("--preview-size", args.preview_size), ("--still-size", args.still_size)):
        if value < 0:
            raise UserError(f"{name} must be >= 0 (0 picks a default), got {value}")
    if args.max_splats < 0:
        raise UserError(f"--max-splats must be >= 0 (0: all), got {args.max_splats}")
    options = ViewerOptions(host=args.host, port=args.port, mode=RenderMode(args.mode),
                            device=resolve_device(args.device), preview_size=args.preview_size,
                            still_size=args.still_size, max_splats=args.max_splats)

    def ready(url: str) -> None:
        sys.stdout.write(f"panst3r-splat view: serving {args.path} at {url} (Ctrl-C to stop)\n")
        sys.stdout.flush()

    serve(args.path, options, ready=ready)
    sys.stdout.write("panst3r-splat view: stopped\n")


@dataclass(frozen=True)
class ExportArgs:
    """Export the labelled Gaussians as a standard 3DGS PLY (plus semantic_id, instance_id), or a predictions
    folder's cameras as nerfstudio transforms.json + a COLMAP text model (--predictions PRED --cameras-out DIR).
    """

    scene: Optional[Path] = None
    """fitted scene folder."""
    out: Optional[Path] = None
    """PLY file to write."""
    per_instance: Optional[Path] = None
    """also write one PLY per instance into this folder."""
    predictions: Optional[Path] = None
    """predictions folder whose solved cameras to export (with --cameras-out)."""
    cameras_out: Optional[Path] = None
    """new folder for transforms.json, images/, sparse_pc.ply and colmap/sparse/0/*.txt."""


def export(args: ExportArgs) -> None:
    """`panst3r-splat export`: the scene's PLY (--scene --out) or the predictions' cameras (--predictions
    --cameras-out)."""
    from panst3r_splat.pipeline.errors import UserError

    if args.predictions is not None or args.cameras_out is not None:
        if args.predictions is None or args.cameras_out is None or args.scene is not None or args.out is not None:
            raise UserError("export the cameras with --predictions PRED --cameras-out DIR (without --scene/--out)")
        from panst3r_splat.pipeline.stages.camera_export import export_cameras

        export_cameras(args.predictions, args.cameras_out)
        return
    if args.scene is None or args.out is None:
        raise UserError("give --scene SCENE --out FILE.ply (or --predictions PRED --cameras-out DIR for the cameras)")
    from panst3r_splat.pipeline.frontends.nerfstudio_io import read_scene_or_run
    from panst3r_splat.pipeline.stages.export import export_scene

    export_scene(args.scene, args.out, per_instance=args.per_instance, read_scene=read_scene_or_run)


@dataclass(frozen=True)
class TrainModelArgs:
    """Train a small PanSt3R on synthetic scenes (resumable; see README "Our own model")."""

    preset: str = "tiny"
    """training preset name (configs/training.py: tiny for CPU, gpu for a CUDA machine, smoke)."""
    out: Path = Path("train_out/model.safetensors")
    """model checkpoint to write (.safetensors); the resume file and CSV logs sit next to it."""
    resume: bool = False
    """continue from the resume file next to --out, in the same data order."""
    device: DeviceName = "auto"
    """where to train."""
    max_steps: Optional[int] = None
    """stop after this many steps of this run (checkpointed; continue with --resume)."""
    max_minutes: Optional[float] = None
    """stop after this much wall time (checkpointed; continue with --resume)."""
    init_from: Optional[Path] = None
    """start from the weights (and step) of a saved model with a fresh optimiser."""


def train_model(args: TrainModelArgs) -> None:
    """`panst3r-splat train-model`: check the preset and the resume file, then train."""
    from panst3r_splat.configs.training import get_preset
    from panst3r_splat.pipeline.devices import resolve_device
    from panst3r_splat.pipeline.errors import UserError
    from panst3r_splat.pipeline.training.loop import train_model as run

    try:
        recipe = get_preset(args.preset)
    except ValueError as err:
        raise UserError(str(err)) from None
    out, resume_file = args.out, args.out.with_suffix(".resume.pt")
    if out.suffix != ".safetensors":
        raise UserError(f"--out must end in .safetensors, got {out}")
    if args.resume and not resume_file.exists():
        raise UserError(f"--resume: no resume file {resume_file}; run once without --resume")
    if not args.resume and resume_file.exists():
        raise UserError(f"{resume_file} exists: continue it with --resume, or choose another --out")
    run(recipe, out, resume=args.resume, device=resolve_device(args.device), max_steps=args.max_steps,
        max_minutes=args.max_minutes, init_from=args.init_from)


@dataclass(frozen=True)
class BatchArgs:
    """Many scenes on Ray: predict -> fit -> render the test split -> eval, per sub-folder of --scenes.

    Each sub-folder that is a Panoptic Lifting scene (or a folder of images) is one Ray task; results go to
    OUT/<scene>/ (the stage folders and scores.json), then OUT/summary.json and OUT/summary.md (the paper's table:
    direct, render-then-predict and lifted PQ^scene). A scene finished earlier with the same settings is not redone.
    Exits with 1 after the summary when a scene failed.
    """

    scenes: Path
    """folder whose sub-folders are the scenes."""
    out: Path
    """output folder (one sub-folder per scene, summary.json, summary.md)."""
    address: Optional[str] = None
    """Ray cluster address (`ray start --head` prints it); default: a local Ray on this machine's cores.
    A cluster's nodes must see --scenes and --out at the same paths and run the same panst3r-splat version."""
    cameras: CameraSourceName = "auto"
    """camera source of predict (see `predict --cameras`)."""
    poses: Literal["predicted", "dataset"] = "predicted"
    """'predicted' (fit on the predicted cameras and points) or 'dataset' (the paper's protocol: the
    predictions placed under the scene's own cameras, as `fit --poses dataset:SCENE`)."""
    checkpoint: Optional[Path] = None
    """model checkpoint; default: the built-in model."""
    merge: Optional[MergeName] = None
    """merging method; default: the checkpoint's default."""
    size: str = "default"
    """model input size (see `predict --size`)."""
    fit_steps: int = 1500
    """3DGS optimisation steps per scene."""
    budget: int = 20000
    """initial number of Gaussians per scene."""
    render_predict: bool = True
    """also score render-then-predict (PanSt3R on RGB rendered at the test cameras)."""
    num_cpus: int = 1
    """CPU cores per task (torch and BLAS threads are pinned to them)."""
    max_retries: int = 1
    """extra attempts after a worker crash or an unexpected error (bad input is not retried)."""
    timeout: Optional[float] = None
    """seconds a scene may run (per attempt) before it is cancelled and recorded as failed."""


def batch(args: BatchArgs) -> None:
    """`panst3r-splat batch`: run every scene on Ray; raise `ScenesFailed` after the summary if one failed."""
    from panst3r_splat.pipeline.errors import ScenesFailed
    from panst3r_splat.pipeline.jobs.batch import BatchOptions, run_batch

    options = BatchOptions(checkpoint=args.checkpoint, merge=args.merge, cameras=args.cameras, poses=args.poses,
                           size=args.size, fit_steps=args.fit_steps, budget=args.budget,
                           render_predict=args.render_predict, num_cpus=args.num_cpus, max_retries=args.max_retries,
                           timeout=args.timeout, address=args.address)
    result = run_batch(args.scenes, args.out, options)
    if result.failed:
        names = ", ".join(f"{s.name} ({s.reason})" for s in result.failed[:3])
        raise ScenesFailed(f"{len(result.failed)} of {len(result.scenes)} scenes failed: {names}; see "
                           f"{args.out / 'summary.md'}")


COMMANDS = {
    "demo": (DemoArgs, demo),
    "synth": (SynthArgs, synth),
    "classes": (ClassesArgs, classes),
    "predict": (PredictArgs, predict),
    "merge": (MergeArgs, merge),
    "fit": (FitArgs, fit),
    "render": (RenderArgs, render),
    "render-predict": (RenderPredictArgs, render_predict),
    "eval": (EvalArgs, evaluate),
    "view": (ViewArgs, view),
    "export": (ExportArgs, export),
    "train-model": (TrainModelArgs, train_model),
    "batch": (BatchArgs, batch),
}
"""Each subcommand's name: its options dataclass (what tyro parses) and the function that runs it."""
