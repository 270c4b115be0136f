"""The stages import in one direction only: core <- splat <- pipeline (STYLE.md principle 1); the presets in
`configs/` are plain dataclasses that `pipeline/` reads, so they import nothing from it.

Inside `pipeline/` the rooms follow the data flow too (pipeline/design.md):

    errors, devices, fingerprints, openmp  <-  datasets  <-  evaluation, training, stages  <-  jobs  <-  frontends

`datasets` (scene formats, the synthetic generator) imports no other room; `evaluation` and `training` read
datasets only; `stages` (one step each) import no job, front end or training code; `jobs` (demo, batch) chain
stages and import no front end; only `frontends` (CLI, nerfstudio, viewer) import nerfstudio or viser. The
shared helpers at the top of `pipeline/` import no room.

Checked statically on the source (every `import` / `from` statement, including lazy ones inside functions), so
a forbidden import is caught even where it only runs on some code path.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PIPELINE = "panst3r_splat.pipeline"
ROOMS = ("datasets", "evaluation", "training", "stages", "jobs", "frontends")
"""The sub-packages of `pipeline/`, in data-flow order."""
HELPERS = ("errors.py", "devices.py", "fingerprints.py", "openmp.py", "torchvision_hook.py")
"""The shared helpers at the top of `pipeline/` (every room may import them)."""
FRAMEWORKS = ("nerfstudio", "viser")


def _rooms(*names: str) -> tuple[str, ...]:
    return tuple(f"{PIPELINE}.{name}" for name in names)


FORBIDDEN = {
    "panst3r_core": (*FRAMEWORKS, "panst3r_splat.splat", PIPELINE),
    "splat": ("nerfstudio", PIPELINE),
    "configs": (*FRAMEWORKS, PIPELINE),
    "pipeline/datasets": (*FRAMEWORKS, *_rooms("evaluation", "training", "stages", "jobs", "frontends")),
    "pipeline/evaluation": (*FRAMEWORKS, *_rooms("training", "stages", "jobs", "frontends")),
    "pipeline/training": (*FRAMEWORKS, *_rooms("evaluation", "stages", "jobs", "frontends")),
    "pipeline/stages": (*FRAMEWORKS, *_rooms("training", "jobs", "frontends")),
    "pipeline/jobs": (*FRAMEWORKS, *_rooms("training", "frontends")),
    **{f"pipeline/{helper}": (*FRAMEWORKS, *_rooms(*ROOMS)) for helper in HELPERS},
}
"""Path under the repository (a folder: every file below it) -> module prefixes its files must not import."""

ALLOWED = {
    "pipeline/datasets/conventions.py": ("nerfstudio",),
}
"""Exceptions, each with its reason. conventions.py is the one module of every OpenCV <-> nerfstudio conversion
(STYLE.md principle 4); `to_nerfstudio_cameras` builds a nerfstudio `Cameras` with a lazy import, used only by
the front ends."""


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _files(where: str) -> list[Path]:
    path = ROOT / where
    return [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


@pytest.mark.parametrize("where", sorted(FORBIDDEN))
def test_stage_imports_only_downstream(where: str) -> None:
    offenders = []
    files = _files(where)
    assert files and all(path.is_file() for path in files), f"no Python files at {where}"
    for path in files:
        allowed = ALLOWED.get(str(path.relative_to(ROOT)), ())
        for name in _imported_modules(path):
            if _matches(name, FORBIDDEN[where]) and not _matches(name, allowed):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_every_pipeline_module_is_in_a_checked_room() -> None:
    """A new room or top-level module of `pipeline/` must be placed in the layering above."""
    top = sorted(p.name for p in (ROOT / "pipeline").iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file())
    known = {*ROOMS, *HELPERS, "__init__.py", "__main__.py"}
    assert set(top) <= known, f"not in the import-direction layering: {sorted(set(top) - known)}"
    assert {f"pipeline/{room}" for room in ROOMS if room != "frontends"} <= set(FORBIDDEN)


def test_checker_sees_lazy_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    import viser.transforms\n    from nerfstudio.models import base\n")
    assert _imported_modules(source) == ["viser.transforms", "nerfstudio.models"]


def test_checker_catches_a_room_importing_upstream(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from panst3r_splat.pipeline.frontends.cli import main\n")
    names = _imported_modules(source)
    assert _matches(names[0], FORBIDDEN["pipeline/stages"])
    assert not _matches("panst3r_splat.pipeline.stagesx", _rooms("stages"))

