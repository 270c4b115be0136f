"""The stages import in one direction only: core <- splat <- pipeline (STYLE.md principle 1); the presets in
`configs/` are plain dataclasses that `pipeline/` reads, so they import nothing from it.

Checked statically on the source (every `import` / `from` statement, including lazy ones inside functions), so
a forbidden import is caught even where it only runs on some code path.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "panst3r_core": ("nerfstudio", "viser", "panst3r_splat.splat", "panst3r_splat.pipeline"),
    "splat": ("nerfstudio", "panst3r_splat.pipeline"),
    "configs": ("nerfstudio", "viser", "panst3r_splat.pipeline"),
}


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_stage_imports_only_downstream(folder: str) -> None:
    offenders = []
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    for path in files:
        for name in _imported_modules(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[folder]):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_checker_sees_lazy_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    import viser.transforms\n    from nerfstudio.models import base\n")
    assert _imported_modules(source) == ["viser.transforms", "nerfstudio.models"]
