"""Import a script of the repository (not an installed module) by its path, for the tests of that script."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""


def load_script(relative_path: str, name: str) -> ModuleType:
    """Execute `ROOT / relative_path` as the module `name` (registered in `sys.modules`) and return it."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
