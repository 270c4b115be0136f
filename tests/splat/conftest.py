"""Shared set-up of the splat tests.

When `panst3r_splat.splat.rasterize` is not importable, a dense test stand-in with the same signature is registered
under that module name so the training code can be tested on its own.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

_MODULE = "panst3r_splat.splat.rasterize"

try:
    importlib.import_module(_MODULE)
except ModuleNotFoundError:
    _spec = importlib.util.spec_from_file_location(_MODULE, Path(__file__).with_name("_rasterize_standin.py"))
    _standin = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_standin)
    sys.modules[_MODULE] = _standin
