"""`benchmarks/readme.py`: a hand-made benchmark report rendered into markdown tables that hold its numbers, put
between the README markers with the text around them untouched; a README without proper markers is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _script_modules import load_script

from panst3r_splat.pipeline.errors import UserError



readme = load_script("benchmarks/readme.py", "benchmarks_readme")


def _usage(seconds: float, cpu: float, peak: float) -> dict[str, Any]:
    return {"seconds": seconds, "user_seconds": cpu - 0.01, "system_seconds": 0.01, "peak_rss_mb": peak,
            "rss_rise_mb": 10.0, "cuda_peak_mb": None}


def _report() -> dict[str, Any]:
    """A small report in the layout of `benchmarks/run.py --json`, with recognisable numbers."""
    pipeline = [{"views": v, "width": 192, "height": 144, "device": "cpu", "synth": _usage(0.1, 0.1, 400),
                 "predict_merge": _usage(p, p + 0.5, mb) | {"merge": "standard_v2", "segments": 7, "keyframes": v},
                 "merge_standard_v2": _usage(0.061, 0.05, 410), "merge_qubo": _usage(q, q, 420),
                 "fit": _usage(20.0, 19.0, 700) | {"steps": 100, "train_seconds": 17.3, "lift_seconds": lift,
                                                   "gaussians": 5000},
                 "render": _usage(4.2, 4.0, 600) | {"views": v, "seconds_per_view": 4.2 / v}}
                for v, p, mb, q, lift in ((8, 0.842, 504, 0.183, 3.14), (16, 1.98, 623, 0.364, 6.31))]
    merge = [{"views": 8, "queries": 200, "image_hw": [384, 512],
              "weights_ours": {"seconds": 9.1, "peak_mb": 300.0}, "weights_official": {"seconds": 77.1,
                                                                                        "peak_mb": 3595.0},
              "weights_speedup": 77.1 / 9.1, "weights_mask_res": {"seconds": 1.0, "peak_mb": 50.0},
              "weights_mask_res_rel_error": 0.02,
              "solver_ours": {"seconds": 0.22, "peak_mb": 1.0, "energy": -0.9331, "selected": 20},
              "solver_official": {"seconds": 4.17, "peak_mb": 2.0, "energy": -0.9068, "selected": 22},
              "solver_speedup": 4.17 / 0.22, "mask_res_solution_energy_on_exact": -0.93,
              "end_to_end_ours": {"seconds": 4.16, "peak_mb": 310.0, "seconds_per_view": 0.52}},
             {"views": 32, "queries": 200, "image_hw": [384, 512],
              "weights_ours": {"seconds": 17.6, "peak_mb": 321.0},
              "weights_mask_res": {"seconds": 2.0, "peak_mb": 60.0}, "weights_mask_res_rel_error": 0.02,
              "solver_ours": {"seconds": 0.19, "peak_mb": 1.0, "energy": -0.9219, "selected": 20},
              "solver_official": {"seconds": 6.9, "peak_mb": 2.0, "energy": -0.9024, "selected": 22},
              "solver_speedup": 6.9 / 0.19, "mask_res_solution_energy_on_exact": -0.92,
              "end_to_end_ours": {"seconds": 13.4, "peak_mb": 330.0, "seconds_per_view": 0.42}}]
    return {
        "machine": {"cpu": "Test CPU 9000", "cores": 2, "torch": "2.13.0+cpu", "torch_threads": 1, "device": "cpu",
                    "python": "3.11.0", "cuda": False},
        "settings": {"threads": 1, "fit_steps": 100, "seed": 1_000_001},
        "date": "2026-01-02T03:04:05+00:00",
        "load_average": {"start": [3.25, 2.5, 2.0], "end": [2.75, 2.5, 2.0]},
        "note": "A model was training on the same machine",
        "pipeline_vs_views": pipeline,
        "predict_vs_resolution": [{"views": 8, "width": 256, "height": 192, "device": "cpu",
                                   "predict_merge": _usage(1.375, 1.5, 555) | {"merge": "standard_v2",
                                                                                "segments": 9, "keyframes": 8}}],
        "merge_qubo_vs_official": merge,
        "lifting_vs_render": {"gaussians": 5000, "views": 16, "width": 128, "height": 96, "render_pass_seconds": 1.5,
                              "render_pass_cpu_seconds": 1.4,
                              "lifting": [{"segments": 20, "seconds": 1.05, "cpu_seconds": 1.0,
                                           "ratio_to_render_pass": 0.7}]},
        "rasteriser": [{"gaussians": 20000, "width": 128, "height": 96, "device": "cpu", "threads": 1,
                        "backend": "torch", "seconds": 0.1, "cpu_seconds": 0.09, "steps_per_second": 10.0}],
        "compiled_vs_reference": {
            "threads": 1, "cold_compile": {"cold_first_call_seconds": 21.5, "cached_first_call_seconds": 0.75},
            "steps": [{"gaussians": 20000, "width": 256, "height": 192, "torch_seconds": 0.6, "torch_cpu": 0.5,
                       "numba_seconds": 0.04, "numba_cpu": 0.025, "ratio": 15.0, "ratio_cpu": 20.0, "threads": 1},
                      {"gaussians": 20000, "width": 256, "height": 192, "torch_seconds": 0.5, "torch_cpu": 0.9,
                       "numba_seconds": 0.025, "numba_cpu": 0.045, "ratio": 20.0, "ratio_cpu": 20.0, "threads": 2}],
            "fit": {"steps": 100, "reference_seconds": 30.0, "numba_seconds": 5.0, "ratio": 6.0},
            "demo_fit": {"steps": 1500, "seconds": 90.0, "seconds_per_step": 0.06}},
        "seconds": 600.0,
    }


def _tables(markdown: str) -> list[list[list[str]]]:
    """The markdown tables of a text: rows of stripped cells, header first, separator dropped."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables.append([row for row in current if not all(set(c) <= {"-"} and c for c in row)])
            current = []
    return tables


def test_tables_hold_the_reports_numbers() -> None:
    markdown = readme.render_markdown(_report(), plot="docs/bench.png", source="docs/bench.json")
    tables = _tables(markdown)
    assert len(tables) == 6  # pipeline, resolution, QUBO, lifting, rasteriser, compiled vs reference
    for table in tables:  # every row as wide as its header
        assert {len(row) for row in table} == {len(table[0])}
    pipeline = {row[0]: row for row in tables[0][1:]}
    assert set(pipeline) == {"8", "16"}
    assert pipeline["8"][2] == "0.842 s (1.34) / 504 MB"  # wall (CPU) / peak RSS
    assert pipeline["16"][4] == "0.364 s (0.364)"  # the QUBO merge alone
    assert pipeline["8"][5] == "17.3 s / 3.14 s"  # fit training / lifting
    assert "0.525 s/view" in pipeline["8"][6]  # 4.2 s over 8 views
    assert tables[1][1][:2] == ["256x192", "8"] and "1.38 s" in tables[1][1][3] and "555 MB" in tables[1][1][3]
    qubo = tables[2]
    assert ["8", "exact weight matrix", "77.1 s", "9.10 s", "8.5x", "3595 / 300", ""] in qubo
    assert ["8", "solver", "4.17 s", "0.220 s", "19.0x", "", "-0.9068 / -0.9331"] in qubo
    assert ["32", "exact weight matrix", "-", "17.6 s", "-", "- / 321", ""] in qubo  # official skipped
    assert tables[3][1] == ["20", "1.05 s", "1.50 s", "0.70x"]
    assert tables[4][1] == ["20000", "128x96", "cpu (torch)", "1", "10.00", "0.100 s", "0.090"]
    assert tables[5][1] == ["20000", "256x192", "1", "0.600 s", "0.040 s", "15.0x", "20.0x"]
    assert tables[5][2] == ["20000", "256x192", "2", "0.500 s", "0.025 s", "20.0x", "20.0x"]
    assert "empty cache): 21.5 s" in markdown and "numba 5.00 s, 6.0x" in markdown
    assert "default of 1500 steps: 90.0 s (60 ms a step)" in markdown
    # The machine, date, load and note head the section; the plot is shown.
    assert "Test CPU 9000, 2 cores, torch 2.13.0+cpu, no CUDA" in markdown and "2026-01-02" in markdown
    assert "load average 3.25 at the start and 2.75 at the end" in markdown
    assert "A model was training on the same machine." in markdown
    assert "![stage times vs views](docs/bench.png)" in markdown and "`docs/bench.json`" in markdown


def test_markers_replaced_and_the_rest_untouched() -> None:
    before = "# Title\n\nProse before.\n\n"
    after = "\n\nProse after, with a figure that is not generated: 14 s.\n"
    text = before + readme.BEGIN + "\nold table | 1 |\n" + readme.END + after
    block = readme.render_markdown(_report())
    new = readme.replace_section(text, block)
    assert new.startswith(before + readme.BEGIN + "\n") and new.endswith("\n" + readme.END + after)
    assert "old table" not in new and block.strip() in new
    assert readme.replace_section(new, block) == new  # regenerating from the same figures changes nothing


@pytest.mark.parametrize("text, found", [
    ("no markers at all\n", "found 0 and 0"),
    (f"{readme.BEGIN}\nonly the start\n", "found 1 and 0"),
    (f"{readme.BEGIN}\n{readme.END}\n{readme.BEGIN}\n{readme.END}\n", "found 2 and 2"),
    (f"{readme.END}\nswapped\n{readme.BEGIN}\n", "swap them"),
])
def test_bad_markers_are_refused(text: str, found: str) -> None:
    with pytest.raises(UserError, match=found) as error:
        readme.replace_section(text, "table")
    assert readme.BEGIN in str(error.value) and readme.END in str(error.value)


def test_command_rewrites_the_readme_or_leaves_it_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "docs").mkdir()
    figures, plot, target = tmp_path / "docs" / "bench.json", tmp_path / "docs" / "bench.png", tmp_path / "README.md"
    figures.write_text(json.dumps(_report()))
    plot.write_bytes(b"\x89PNG\r\n\x1a\n")
    target.write_text(f"intro\n{readme.BEGIN}\n{readme.END}\noutro\n")
    assert readme.main([str(figures), str(target), "--plot", str(plot)]) == 0
    text = target.read_text()
    assert text.startswith(f"intro\n{readme.BEGIN}\n") and text.endswith(f"{readme.END}\noutro\n")
    assert "(docs/bench.png)" in text and "`docs/bench.json`" in text  # paths relative to the README
    target.write_text("no markers\n")
    assert readme.main([str(figures), str(target)]) == 2
    assert target.read_text() == "no markers\n"
    assert "benchmark:begin" in capsys.readouterr().err
