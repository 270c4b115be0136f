"""`panst3r-splat demo` end to end at tiny settings (64x48, 3 input + 1 held-out views, a few hundred Gaussians,
a few fit steps) with the built-in model.

Checks: every documented output exists and the summary carries numbers; a re-run reuses finished stages and a
changed option redoes only the stages after it; a failing stage leaves no half-written folder and never damages a
finished one; `--images` mode; one-line errors; the memory meter sees a large allocation; the fit's confidence
fallback on a hand case; the command's defaults agree with the module's; `benchmarks/run.py --quick` writes its
figures and plot.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_images
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.frontends import commands
from panst3r_splat.pipeline.frontends.cli import EXIT_USER_ERROR, main
from panst3r_splat.pipeline.jobs.demo.cache import STAGE_FILE, Stage, run_stage
from panst3r_splat.pipeline.jobs.demo.measure import measure
from panst3r_splat.pipeline.jobs.demo.options import (
    DEFAULT_BUDGET, DEFAULT_FIT_STEPS, DEFAULT_ORBIT_FRAMES, DEFAULT_TEST_VIEWS, DEFAULT_THREADS, DEFAULT_VIEWS,
    DEMO_SEED, MARKER_FILE, DemoOptions, fit_conf_threshold, synth_resolution,
)

TINY = ["--views", "3", "--test-views", "1", "--size", "64", "--fit-steps", "2", "--budget", "200",
        "--orbit-frames", "2", "--device", "cpu"]
RENDER_DIRS = ("rgb", "semantic", "instance", "panoptic", "overlay", "pred_semantics", "pred_surrogateid")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(args: list[str]) -> tuple[int, str]:
    """Run the CLI; its exit code and standard output."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(args)
    return code, stdout.getvalue()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    code, text = _run(["demo", "--out", str(out), "--oracle", *TINY])
    assert code == 0, text
    return out, text


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# ------------------------------------------------------------------------------------------------- synthetic mode


def test_demo_writes_every_documented_output(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    assert (out / "data" / "splits.json").is_file()
    assert len(json.loads((out / "data" / "splits.json").read_text())["test"]) == 1
    assert (out / "predictions" / "predictions.npz").is_file()
    assert len(list((out / "predictions" / "pred_semantics").glob("*.png"))) == 3
    for scene in (out / "scene", out / "posed" / "scene", out / "oracle" / "scene"):
        assert (scene / "gaussians.ply").is_file() and (scene / "segments.json").is_file()
    for renders in (out / "renders" / "test", out / "renders" / "orbit", out / "posed" / "renders",
                    out / "oracle" / "renders"):
        for sub in RENDER_DIRS:
            assert any((renders / sub).glob("*.png")), (renders, sub)
    assert (out / "renders" / "orbit" / "video.mp4").stat().st_size > 0
    for name in ("direct", "lifted", "lifted_posed", "oracle"):
        assert json.loads((out / "scores" / f"{name}.json").read_text())["pq_scene"]["all"]["pq"] is not None
        assert "PQ^scene" in (out / "scores" / f"{name}.txt").read_text()
    assert (out / "summary.txt").read_text().endswith(f"next: panst3r-splat view {out / 'scene'}\n")
    assert not list(out.rglob(".partial-*")) and not list(out.rglob("*.old-*"))


def test_summary_has_numbers_for_every_stage_and_score(demo_run: tuple[Path, str]) -> None:
    out, text = demo_run
    summary = _summary(out)
    keys = [s["key"] for s in summary["stages"]]
    assert keys == ["synth", "predict", "fit", "render_test", "render_orbit", "posed_fit", "posed_render", "oracle_fit",
                    "oracle_render", "eval"]
    for stage in summary["stages"]:
        usage = stage["usage"]
        assert usage["seconds"] > 0 and usage["user_seconds"] >= 0 and usage["peak_rss_mb"] > 50, stage
        assert usage["cuda_peak_mb"] is None and not stage["reused"]
    assert summary["stages"][2]["details"]["steps"] == 2
    for name in ("direct", "lifted", "lifted_posed", "oracle"):
        scores = summary["scores"][name]
        assert 0.0 <= scores["pq_scene"] <= 1.0 and 0.0 <= scores["miou"] <= 1.0, name
    assert summary["scores"]["direct"]["split"] == "train" and summary["scores"]["oracle"]["split"] == "test"
    assert summary["scores"]["oracle"]["psnr"] > 5.0
    # The paper's protocol: the scene's own poses place the held-out views without any alignment.
    assert summary["scores"]["lifted_posed"]["split"] == "test" and summary["scores"]["lifted_posed"]["psnr"] > 5.0
    posed = json.loads((out / "posed" / "renders" / "render.json").read_text())["alignment"]
    assert posed["method"] == "stored" and posed["scale"] == 1.0
    scales = summary["stages"][keys.index("posed_fit")]["details"]["scales"]
    assert len(scales) == 3 and all(s > 0 for s in scales)
    assert summary["machine"]["cores"] >= 1 and summary["machine"]["torch"] == torch.__version__
    # The printed table is the one in summary.txt, with every stage row and the next command.
    assert (out / "summary.txt").read_text() in text
    for title in ("synth", "predict + merge", "fit (from the predictions)", "render orbit + video",
                  "fit (predictions, scene's poses)", "eval"):
        assert f"\n{title} " in text, title
    assert "lifted, scene's poses (paper)" in text and "lifted, pose-free (model cameras)" in text
    assert "direct (PanSt3R predictions)" in text and f"next: panst3r-splat view {out / 'scene'}" in text


def test_rerun_reuses_every_finished_stage(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    before = {p: p.stat().st_mtime_ns for p in (out / "scene" / "gaussians.ply", out / "data" / "splits.json")}
    code, text = _run(["demo", "--out", str(out), "--oracle", *TINY])
    assert code == 0
    summary = _summary(out)
    assert all(s["reused"] for s in summary["stages"])
    assert summary["seconds"] < 10.0
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert "reused" in text


def test_changed_option_redoes_only_the_stages_after_it(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    code, _ = _run(["demo", "--out", str(out), "--oracle", *TINY[:-4], "--orbit-frames", "3", "--device", "cpu"])
    assert code == 0
    redone = {s["key"] for s in _summary(out)["stages"] if not s["reused"]}
    assert redone == {"render_orbit"}
    assert len(list((out / "renders" / "orbit" / "rgb").glob("*.png"))) == 3


# -------------------------------------------------------------------------------------------------- stage runner


def _options(out: Path, **kw) -> DemoOptions:
    return DemoOptions(out=out, **kw)


def test_failing_stage_leaves_no_half_written_folder_and_keeps_the_finished_one(tmp_path: Path) -> None:
    def good(folder: Path) -> dict:
        folder.mkdir(parents=True)
        (folder / "result.txt").write_text("complete")
        return {"lines": 1}

    def crash(folder: Path) -> dict:
        folder.mkdir(parents=True)
        (folder / "result.txt").write_text("half")
        raise RuntimeError("interrupted")

    options = _options(tmp_path)
    first = run_stage(Stage("thing", "thing", "stage", {"v": 1}, good), options, 1, 1)
    assert (tmp_path / "stage" / "result.txt").read_text() == "complete" and not first.reused
    with pytest.raises(RuntimeError):
        run_stage(Stage("thing", "thing", "stage", {"v": 2}, crash), options, 1, 1)
    assert (tmp_path / "stage" / "result.txt").read_text() == "complete"
    assert json.loads((tmp_path / "stage" / STAGE_FILE).read_text())["digest"] == first.digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]  # the crashed partial folder is gone
    # A partial folder an earlier process left (killed) is cleared by the next run; whole folders only are reused.
    (tmp_path / ".partial-stage-0123").mkdir()
    again = run_stage(Stage("thing", "thing", "stage", {"v": 1}, crash), options, 1, 1)
    assert again.reused and again.digest == first.digest and again.details == {"lines": 1}
    assert not (tmp_path / ".partial-stage-0123").exists()
    replaced = run_stage(Stage("thing", "thing", "stage", {"v": 3}, good), options, 1, 1)
    assert not replaced.reused and replaced.digest != first.digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_an_interrupted_fit_keeps_only_its_own_checkpoint(tmp_path: Path) -> None:
    def fit_like(folder: Path) -> dict:  # what fit_scene leaves beside its output when it is interrupted
        (folder.parent / f".{folder.name}.train.ckpt").write_text("step 100")
        raise KeyboardInterrupt

    stage = Stage("fit", "fit", "scene", {"steps": 500}, fit_like)
    with pytest.raises(KeyboardInterrupt):
        run_stage(stage, _options(tmp_path), 1, 1)
    (checkpoint,) = tmp_path.glob("..partial-scene-*.train.ckpt")
    stale = tmp_path / "..partial-scene-0123.train.ckpt"
    stale.write_text("other settings")
    with pytest.raises(KeyboardInterrupt):  # the same settings again: the checkpoint is kept for resuming
        run_stage(stage, _options(tmp_path), 1, 1)
    assert checkpoint.is_file() and not stale.exists()
    with pytest.raises(KeyboardInterrupt):  # --overwrite starts afresh
        run_stage(Stage("fit", "fit", "scene", {"steps": 500}, lambda f: (_ for _ in ()).throw(KeyboardInterrupt)),
                  _options(tmp_path, overwrite=True), 1, 1)
    assert not checkpoint.exists()


def test_downstream_digest_follows_the_upstream_stage(tmp_path: Path) -> None:
    def make(folder: Path) -> dict:
        folder.mkdir(parents=True)
        return {}

    options = _options(tmp_path)
    a1 = run_stage(Stage("a", "a", "a", {"v": 1}, make), options, 1, 2)
    b1 = run_stage(Stage("b", "b", "b", {}, make, (a1,)), options, 2, 2)
    a2 = run_stage(Stage("a", "a", "a", {"v": 2}, make), options, 1, 2)
    b2 = run_stage(Stage("b", "b", "b", {}, make, (a2,)), options, 2, 2)
    assert b1.digest != b2.digest and not b2.reused
    forced = run_stage(Stage("b", "b", "b", {}, make, (a2,)), _options(tmp_path, overwrite=True), 2, 2)
    assert not forced.reused and forced.digest == b2.digest


# ----------------------------------------------------------------------------------------------------- images mode


def test_images_mode_predicts_fits_and_renders_an_orbit(tmp_path: Path) -> None:
    photos = write_images(generate_scene(SynthConfig(train_views=3, test_views=0, width=64, height=48), 7),
                          tmp_path / "photos")
    out = tmp_path / "out"
    code, text = _run(["demo", "--out", str(out), "--images", str(photos), "--size", "64", "--fit-steps", "2",
                       "--budget", "200", "--orbit-frames", "2", "--device", "cpu"])
    assert code == 0, text
    summary = _summary(out)
    assert [s["key"] for s in summary["stages"]] == ["predict", "fit", "render_orbit"]
    assert summary["mode"] == "images" and summary["scores"] == {}
    assert (out / "predictions" / "predictions.npz").is_file() and (out / "scene" / "gaussians.ply").is_file()
    assert (out / "renders" / "orbit" / "video.mp4").is_file()
    assert not (out / "data").exists() and not (out / "scores").exists()
    assert "scores" not in text.split("written:")[0] and f"panst3r-splat view {out / 'scene'}" in text


# ------------------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("extra, needle", [
    (["--images", "{tmp}/nowhere"], "does not exist"),
    (["--views", "2"], "--views must be at least 3"),
    (["--fit-steps", "0"], "--fit-steps must be at least 1"),
    (["--size", "native"], "'native' applies to --images only"),
    (["--size", "100"], "--size 100"),
    (["--oracle", "--images", "{tmp}"], "--oracle needs the synthetic scene"),
])
def test_errors_are_one_line(extra: list[str], needle: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    code = main(["demo", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USER_ERROR, err
    assert needle in err and "\n" not in err, err


def test_out_must_be_a_demo_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    (tmp_path / "file").write_text("")
    for out, needle in ((tmp_path / "mine", "is not a demo folder"), (tmp_path / "file", "is a file")):
        assert main(["demo", "--out", str(out)]) == EXIT_USER_ERROR
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "mine" / MARKER_FILE).exists()


# ---------------------------------------------------------------------------------------------------------- helpers


def test_measure_sees_a_large_allocation() -> None:
    def allocate() -> int:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        return int(block[::4096].sum())

    result, usage = measure(allocate, torch.device("cpu"))
    assert result == 200 * 2**20 // 8 // 4096
    assert usage.rss_rise_mb >= 150, usage
    assert usage.peak_rss_mb >= usage.rss_rise_mb and usage.seconds >= 0 and usage.cuda_peak_mb is None


def test_fit_conf_threshold_hand_cases() -> None:
    confident = np.array([1.0] * 8 + [5.0] * 2)  # 20 % reach 3: the default threshold
    assert fit_conf_threshold(confident) == (3.0, None)
    weak = np.array([1.0, 1.1, 1.2, 1.3])  # none reach 3: the median, with a note
    threshold, note = fit_conf_threshold(weak)
    assert threshold == pytest.approx(1.15) and "0.0 %" in note and "1.3" in note


def test_synth_resolution_follows_the_model_buckets() -> None:
    assert synth_resolution("default") == (192, 144)  # the built-in model's training size, 4:3, no crop
    assert synth_resolution("64") == (64, 48)
    with pytest.raises(UserError):
        synth_resolution("native")


def test_command_defaults_match_the_module() -> None:
    defaults = commands.DemoArgs()
    expected = {"views": DEFAULT_VIEWS, "test_views": DEFAULT_TEST_VIEWS, "seed": DEMO_SEED,
                "fit_steps": DEFAULT_FIT_STEPS, "budget": DEFAULT_BUDGET, "orbit_frames": DEFAULT_ORBIT_FRAMES,
                "threads": DEFAULT_THREADS}
    assert {k: getattr(defaults, k) for k in expected} == expected
    assert DEMO_SEED >= 1_000_000  # a held-out room


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_demo_on_cuda_reports_gpu_memory(tmp_path: Path) -> None:
    code, text = _run(["demo", "--out", str(tmp_path / "out"), *TINY[:-2], "--device", "cuda"])
    assert code == 0, text
    stages = _summary(tmp_path / "out")["stages"]
    assert all(s["usage"]["cuda_peak_mb"] is not None for s in stages)
    assert "GPU MB" in text


# ------------------------------------------------------------------------------------------------------ benchmark


def test_benchmark_quick_writes_json_and_plot(tmp_path: Path) -> None:
    """`benchmarks/run.py --quick` (about 15 s): every section measured, the figures and the plot written."""
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "run.py"), "--quick", "--json", str(tmp_path / "b.json"),
         "--plot", str(tmp_path / "b.png")], capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch"] == torch.__version__
    assert [r["views"] for r in report["pipeline_vs_views"]] == [3, 4]
    for row in report["pipeline_vs_views"]:
        for stage in ("synth", "predict_merge", "merge_qubo", "fit", "render"):
            assert row[stage]["seconds"] > 0 and row[stage]["peak_rss_mb"] > 0, (row["views"], stage)
    assert [(r["width"], r["height"]) for r in report["predict_vs_resolution"]] == [(64, 48), (96, 80)]
    merge = report["merge_qubo_vs_official"][0]
    ours, official = merge["solver_ours"]["energy"], merge["solver_official"]["energy"]
    assert np.isfinite(ours) and ours <= official + 0.01 * abs(official)  # our solver is not worse
    assert report["lifting_vs_render"]["lifting"][0]["ratio_to_render_pass"] > 0
    assert all(r["steps_per_second"] > 0 for r in report["rasteriser"])
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1. pipeline vs views" in result.stdout and "machine:" in result.stdout


def test_input_views_without_a_camera_are_scored_as_void(tmp_path: Path) -> None:
    """The fallback render (input views) has no image of a view the camera solver left unconnected: the demo writes
    all-void labels for it, so the lifted scores count it as unlabelled instead of failing on a missing frame."""
    from PIL import Image

    from panst3r_splat.pipeline.datasets.panoptic_lifting import read_panoptic_lifting
    from panst3r_splat.pipeline.datasets.synth import write_scene
    from panst3r_splat.pipeline.jobs.demo.wiring import _void_labels_for_unrendered

    folder = tmp_path / "data"
    write_scene(generate_scene(SynthConfig(train_views=3, test_views=1, width=32, height=24), 5), folder)
    train = json.loads((folder / "splits.json").read_text())["train"]
    data = read_panoptic_lifting(folder, split="train", parts=("color",))
    renders = tmp_path / "renders"
    for sub, dtype in (("pred_semantics", np.uint8), ("pred_surrogateid", np.uint16)):
        (renders / sub).mkdir(parents=True)
        for name in train[1:]:
            Image.fromarray(np.full((24, 32), 3, dtype)).save(renders / sub / f"{name}.png")
    assert _void_labels_for_unrendered(renders, data) == [train[0]]
    for sub in ("pred_semantics", "pred_surrogateid"):
        with Image.open(renders / sub / f"{train[0]}.png") as image:
            assert image.size == (32, 24) and not np.asarray(image).any()
        with Image.open(renders / sub / f"{train[1]}.png") as image:  # rendered views are left alone
            assert np.asarray(image).min() == 3
    assert _void_labels_for_unrendered(renders, data) == []
