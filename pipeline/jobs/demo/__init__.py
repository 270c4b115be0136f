"""`panst3r-splat demo`: the main job end to end on the built-in defaults, every stage measured.

    result = run_demo(DemoOptions(out=Path("demo_out")))
    print(format_summary(result))

Synthetic mode (the default) chains the public stage functions:

    synth (generate_scene, write_scene)          -> OUT/data/              Panoptic Lifting scene, 8 input + 4 held-out
    predict + merge (run_predict)                -> OUT/predictions/       PanSt3R on the input views, merged panoptic
    fit (inputs_from_predictions, fit_scene)     -> OUT/scene/             labelled 3DGS (the `view` target)
    render held-out (render_scene, dataset:...)  -> OUT/renders/test/      novel views at the held-out cameras (*)
    render orbit (render_scene, orbit)           -> OUT/renders/orbit/     orbit frames + video.mp4
    fit + render under the scene's poses         -> OUT/posed/scene/, OUT/posed/renders/   the paper's protocol (**)
    eval (evaluate_folders)                      -> OUT/scores/            direct (predictions, train split) and
                                                                           lifted (renders, test split) scores, pose-
                                                                           free ("lifted") and posed ("lifted_posed")
    with --oracle: fit + render from ground truth -> OUT/oracle/scene/, OUT/oracle/renders/ (scored in OUT/scores/)

(*) A scene fitted from predictions is placed in the dataset's frame through the similarity between its predicted
input cameras and the dataset's; when the model's cameras admit none (a weak model), the input views are rendered
and scored instead, and the summary says so.
(**) The same predictions fitted under the scene's own cameras (`fit --poses dataset:OUT/data`: each view's local
pointmap scaled by image matches under those cameras, never from the scene's depth), so the held-out views are
rendered in the dataset's frame without any alignment: PanSt3R + LUDVIG as the paper evaluates it, a real novel-view
result while the model's own cameras improve.

`--images DIR` (a user's photos) runs predict + merge -> fit -> render orbit, with no ground truth and no scores.

Every stage writes a hidden partial folder next to its final one and renames it into place when it is complete, so
an interrupted run never leaves a half-written stage. Each finished stage folder holds `.stage.json`: a digest of
its settings and of the stages it read, and its measurements. A re-run reuses every stage whose digest is
unchanged (reporting the measurements of the run that made it), redoes the rest (a changed `--fit-steps` redoes
the fit and what follows), and `--overwrite` redoes everything. An interrupted fit resumes from its training
checkpoint (kept beside the partial folder, whose name carries the digest).

Measurements per stage: wall time, CPU time (user and system; the machine may be shared, CPU time is the steadier
figure), the process's peak resident set during the stage (`VmHWM` of /proc/self/status, reset before each stage
through /proc/self/clear_refs after freed heap memory is handed back to the OS; tracemalloc would miss torch's
allocations) and, on CUDA, the peak allocated GPU
memory (`torch.cuda.max_memory_allocated`). The demo runs with one torch CPU thread unless told otherwise
(`DEFAULT_THREADS` says why).

The package by job: `options.py` (the defaults, `DemoOptions` and their checks, the synthetic resolution and the
fit's confidence threshold), `wiring.py` (the stages of a run, built on the public stage functions, and `run_demo`),
`cache.py` (the stage cache: digests, partial folders, `.stage.json`, `run_stage`), `measure.py` (wall and CPU time,
peak memory, the machine) and `report.py` (`DemoResult`, the notes, the summary table and summary.json).
"""

from panst3r_splat.pipeline.jobs.demo.options import DemoOptions
from panst3r_splat.pipeline.jobs.demo.report import DemoResult, format_summary, result_to_json
from panst3r_splat.pipeline.jobs.demo.wiring import run_demo

__all__ = ["DemoOptions", "DemoResult", "format_summary", "result_to_json", "run_demo"]
