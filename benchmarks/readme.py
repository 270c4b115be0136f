"""Render the figures of `benchmarks/run.py --json` into the README's performance section.

    python benchmarks/run.py --json docs/benchmark.json --plot docs/benchmark_views.png
    python benchmarks/readme.py docs/benchmark.json README.md --plot docs/benchmark_views.png

Everything between the two marker lines of the README

    <!-- benchmark:begin -->
    <!-- benchmark:end -->

is replaced by markdown tables of the measured figures (pipeline stages vs views, predict + merge vs resolution, our
QUBO merge vs the official-style one, lifting vs a render pass, rasteriser steps per second, the compiled CPU
rasteriser vs the reference and the demo fit), headed by the machine, the date and the load average the JSON
records; the text outside the markers is left as it is. A README without the markers (or with them twice, or in the
wrong order) is refused with a message saying what to add.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from panst3r_splat.pipeline.errors import UserError

BEGIN = "<!-- benchmark:begin -->"
END = "<!-- benchmark:end -->"


# ------------------------------------------------------------------------------------------------------ markdown


def _num(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _sig(value: float) -> str:
    """About three significant figures (one decimal from 10 up)."""
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{_sig(value)} s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _usage_cell(usage: Optional[dict[str, Any]], memory: bool = False) -> str:
    """Wall seconds (CPU seconds) [/ peak resident MB] of one measured stage."""
    if usage is None:
        return "-"
    cpu = usage["user_seconds"] + usage["system_seconds"]
    cell = f"{_seconds(usage['seconds'])} ({_sig(cpu)})"
    if memory:
        cell += f" / {usage['peak_rss_mb']:.0f} MB"
        if usage.get("cuda_peak_mb") is not None:
            cell += f" (GPU {usage['cuda_peak_mb']:.0f} MB)"
    return cell


def machine_lines(report: dict[str, Any]) -> list[str]:
    """Where and when the figures were measured, and how busy the machine was."""
    m = report["machine"]
    cuda = m.get("cuda", str(m.get("device", "cpu")).startswith("cuda"))
    gpu = f"CUDA ({m['gpu']})" if m.get("gpu") else "CUDA" if cuda else "no CUDA"
    date = report.get("date", "date not recorded")[:10]
    lines = [f"Measured by `benchmarks/run.py` on {date}: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {gpu}; "
             f"torch threads in the pipeline sections: {report['settings']['threads']}"
             + (f", OpenMP wait policy {m['omp_wait_policy']}" if m.get("omp_wait_policy") else "") + "; "
             + f"the whole run took {report['seconds'] / 60:.1f} min."]
    load = report.get("load_average") or {}
    start, end = load.get("start"), load.get("end")
    if start is not None:
        # The run keeps one core busy itself, and the start figure still holds the minute before it began: the end
        # figure above 1 + half the cores says that other work shared the machine.
        busy = (end or start)[0] >= 1 + 0.5 * m["cores"]
        lines.append(f"1-minute load average {start[0]:.2f} at the start" +
                     (f" and {end[0]:.2f} at the end" if end is not None else "") + f" on {m['cores']} cores" +
                     (": other work shared the machine, so wall times are inflated and CPU seconds are the steadier "
                      "figure." if busy else "."))
    if report.get("note"):
        lines.append(report["note"].rstrip(".") + ".")
    return [" ".join(lines)]


def pipeline_lines(report: dict[str, Any]) -> list[str]:
    """Stage times vs the number of input views."""
    rows = report["pipeline_vs_views"]
    if not rows:
        return []
    first = rows[0]
    default_merge = next((k[len("merge_"):] for r in rows for k in r if k.startswith("merge_") and k != "merge_qubo"),
                         None)
    header = ["views", "device", "predict + merge", f"{default_merge} merge alone" if default_merge else None,
              "QUBO merge alone", f"fit ({report['settings']['fit_steps']} steps): training / lifting",
              "render every view"]
    header = [h for h in header if h is not None]
    body = []
    for r in rows:
        fit = r.get("fit")
        cells = [str(r["views"]), r["device"], _usage_cell(r["predict_merge"], memory=True)]
        if default_merge:
            cells.append(_usage_cell(r.get(f"merge_{default_merge}")))
        cells.append(_usage_cell(r.get("merge_qubo")))
        cells.append("-" if fit is None else f"{_seconds(fit['train_seconds'])} / {_seconds(fit['lift_seconds'])}")
        render = r.get("render")
        cells.append("-" if render is None else
                     f"{_usage_cell(render)}, {render['seconds_per_view']:.3f} s/view")
        body.append(cells)
    return ([f"**Pipeline stages vs input views** (a synthetic room at {first['width']}x{first['height']}, the "
             "built-in model; wall time with CPU seconds in brackets, and the peak resident memory of the process "
             "during predict + merge):", ""] + _table(header, body))


def resolution_lines(report: dict[str, Any]) -> list[str]:
    rows = report.get("predict_vs_resolution") or []
    if not rows:
        return []
    body = [[f"{r['width']}x{r['height']}", str(r["views"]), r["device"], _usage_cell(r["predict_merge"], memory=True),
             str(r["predict_merge"]["segments"])] for r in rows]
    return (["**Predict + merge vs image size** (wall time, CPU seconds in brackets, peak resident memory):", ""]
            + _table(["image", "views", "device", "predict + merge", "segments"], body))


def merge_lines(report: dict[str, Any]) -> list[str]:
    """Our QUBO weights and solver vs the official-style loop and annealing, on the same synthetic masks."""
    rows = report.get("merge_qubo_vs_official") or []
    if not rows:
        return []
    body = []
    for r in rows:
        off_w, our_w = r.get("weights_official"), r["weights_ours"]
        body.append([str(r["views"]), "exact weight matrix", _seconds(off_w and off_w["seconds"]),
                     _seconds(our_w["seconds"]), _num(r.get("weights_speedup"), ".1f") + "x" if off_w else "-",
                     f"{_num(off_w and off_w['peak_mb'], '.0f')} / {our_w['peak_mb']:.0f}", ""])
        off_s, our_s = r.get("solver_official"), r["solver_ours"]
        body.append([str(r["views"]), "solver", _seconds(off_s and off_s["seconds"]), _seconds(our_s["seconds"]),
                     _num(r.get("solver_speedup"), ".1f") + "x" if off_s else "-", "",
                     f"{_num(off_s and off_s['energy'], '.4f')} / {our_s['energy']:.4f}"])
        e2e = r["end_to_end_ours"]
        body.append([str(r["views"]), "our merge end to end", "", _seconds(e2e["seconds"]) +
                     f" ({e2e['seconds_per_view']:.3f} s/view)", "", f"- / {e2e['peak_mb']:.0f}", ""])
    first = rows[0]
    (h, w) = first["image_hw"]
    skipped = [str(r["views"]) for r in rows if "weights_official" not in r]
    note = (f" The official-style weights are skipped at {', '.join(skipped)} views (their memory grows with "
            "queries x views x pixels)." if skipped else "")
    return ([f"**QUBO merge, ours vs the official-style implementation** ({first['queries']} queries, images "
             f"{w}x{h}, CPU; peak MB above the starting level; lower energy is better).{note}", ""]
            + _table(["views", "stage", "official", "ours", "speed-up", "peak MB official / ours",
                      "energy official / ours"], body))


def lifting_lines(report: dict[str, Any]) -> list[str]:
    lift = report.get("lifting_vs_render")
    if not lift:
        return []
    body = [[str(x["segments"]), _seconds(x["seconds"]), _seconds(lift["render_pass_seconds"]),
             f"{x['ratio_to_render_pass']:.2f}x"] for x in lift["lifting"]]
    return ([f"**Label lifting vs one render pass** ({lift['views']} views at {lift['width']}x{lift['height']}, "
             f"{lift['gaussians']} Gaussians; the render pass is one forward + backward RGB render of every view):",
             ""] + _table(["segments", "lifting", "render pass", "lifting / render pass"], body))


def rasteriser_lines(report: dict[str, Any]) -> list[str]:
    rows = report.get("rasteriser") or []
    if not rows:
        return []
    body = [[str(r["gaussians"]), f"{r['width']}x{r['height']}", f"{r['device']} ({r['backend']})",
             str(r["threads"]) if r["threads"] is not None else "-", f"{r['steps_per_second']:.2f}",
             _seconds(r["seconds"]), "-" if r["cpu_seconds"] is None else _sig(r["cpu_seconds"])] for r in rows]
    return (["**Rasteriser training steps** (forward + backward of an L1 loss on one view):", ""]
            + _table(["Gaussians", "image", "device", "threads", "steps/s", "wall per step", "CPU s per step"], body))


def compiled_lines(report: dict[str, Any]) -> list[str]:
    """Section 6: the compiled CPU rasteriser against the plain-torch reference, and the demo fit."""
    comp = report.get("compiled_vs_reference")
    if not comp:
        return []
    body = [[str(r["gaussians"]), f"{r['width']}x{r['height']}", str(r.get("threads", comp["threads"])),
             _seconds(r["torch_seconds"]), _seconds(r["numba_seconds"]), f"{r['ratio']:.1f}x", f"{r['ratio_cpu']:.1f}x"]
            for r in comp["steps"]]
    cold = comp["cold_compile"]
    fit, demo = comp["fit"], comp["demo_fit"]
    return ([f"**Compiled CPU rasteriser (numba, the CPU default) vs the plain-torch reference** (forward + backward "
             "of an L1 loss on one view, with the pipeline's torch threads and with one per core, the two timed "
             "alternately; speed-up = reference / numba):", ""]
            + _table(["Gaussians", "image", "threads", "reference", "numba", "speed-up (wall)", "speed-up (CPU)"],
                     body)
            + ["", f"Cold compile of the Numba kernels (first forward + backward in a fresh process, empty cache): "
               f"{_seconds(cold['cold_first_call_seconds'])}; from the cache: "
               f"{_seconds(cold['cached_first_call_seconds'])}. Whole fits of the demo's scene at its settings "
               f"({fit['steps']} steps, one view a step): reference {_seconds(fit['reference_seconds'])}, numba "
               f"{_seconds(fit['numba_seconds'])}, {fit['ratio']:.1f}x. A demo fit at the demo's default of "
               f"{demo['steps']} steps: {_seconds(demo['seconds'])} ({1e3 * demo['seconds_per_step']:.0f} ms a "
               "step)."])


def render_markdown(report: dict[str, Any], *, plot: Optional[str] = None, source: Optional[str] = None) -> str:
    """The generated section: the machine line, the plot (a path relative to the README) and one table per
    benchmark section."""
    lines = [f"<!-- generated by benchmarks/readme.py from {source or 'the benchmark JSON'}: regenerate, do not "
             "edit -->", ""] + machine_lines(report)
    if source:
        lines[-1] += f" Figures: `{source}`."
    if plot:
        lines += ["", f"![stage times vs views]({plot})"]
    for section in (pipeline_lines, resolution_lines, merge_lines, lifting_lines, rasteriser_lines, compiled_lines):
        part = section(report)
        if part:
            lines += [""] + part
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ README


def replace_section(text: str, block: str, *, name: str = "README") -> str:
    """`text` with everything between the BEGIN and END marker lines replaced by `block`."""
    begins, ends = text.count(BEGIN), text.count(END)
    if begins != 1 or ends != 1:
        raise UserError(f"{name} must hold the lines {BEGIN!r} and {END!r} exactly once each (found {begins} and "
                        f"{ends}): add them where the generated performance figures belong")
    start, stop = text.index(BEGIN), text.index(END)
    if stop < start:
        raise UserError(f"{name}: {END!r} comes before {BEGIN!r}: swap them")
    return text[:start + len(BEGIN)] + "\n" + block.strip("\n") + "\n" + text[stop:]


def _relative(path: Path, readme: Path) -> str:
    return Path(os.path.relpath(path.resolve(), readme.resolve().parent)).as_posix()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, help="figures written by `benchmarks/run.py --json`")
    parser.add_argument("readme", type=Path, help="markdown file with the two marker lines")
    parser.add_argument("--plot", type=Path, default=None, help="the PNG of `benchmarks/run.py --plot`, to show")
    args = parser.parse_args(argv)
    try:
        if not args.json.is_file():
            raise UserError(f"no benchmark figures at {args.json}: run `benchmarks/run.py --json {args.json}` first")
        if args.plot is not None and not args.plot.is_file():
            raise UserError(f"no plot at {args.plot}: run `benchmarks/run.py --plot {args.plot}` or drop --plot")
        report = json.loads(args.json.read_text())
        block = render_markdown(report, plot=args.plot and _relative(args.plot, args.readme),
                                source=_relative(args.json, args.readme))
        text = replace_section(args.readme.read_text(), block, name=str(args.readme))
    except KeyError as error:
        sys.stderr.write(f"error: {args.json} has no {error} entry: it is not a full `benchmarks/run.py --json` "
                         "report; run the benchmark again\n")
        return 2
    except (UserError, OSError, ValueError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    tmp = args.readme.parent / f".{args.readme.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, args.readme)
    sys.stdout.write(f"performance section of {args.readme} regenerated from {args.json}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
