"""Lets the registry's torchvision import next to a CPU-only torch, lazily.

The only torchvision build on the package registries is a CUDA build. Next to a CPU torch its compiled extension
cannot load, and `torchvision/_meta_registrations.py` then registers fake kernels for `torchvision::nms` and
`torchvision::qnms` without checking that the operators exist: `import torchvision` raises
`RuntimeError: operator torchvision::nms does not exist`, and every `ns-*` command of nerfstudio dies on it.

`scripts/install.sh` copies this file into site-packages as `_panst3r_splat_torchvision_hook.py` and adds a `.pth`
line that imports it at interpreter start. Importing it costs nothing: it only appends a finder to `sys.meta_path`.
The first time anything imports `torchvision`, the finder removes itself, tries to load torchvision's own compiled
extension, and only if that fails defines the two operator schemas (no kernels) with `torch.library`, so the fake
kernel registration succeeds. Where the extension loads (a matching CUDA torch), nothing is defined.
This module must stay free of third-party imports at module level (it runs at every Python start).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARIES: list = []  # keeps the torch.library.Library alive for the whole process


def _extension_loads(package_dir: Path) -> bool:
    """Whether torchvision's compiled extension loads with the installed torch."""
    import torch

    for candidate in sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(candidate))
            return True
        except (OSError, RuntimeError):
            return False
    return False


def define_missing_operators(package_dir: Path) -> bool:
    """Define `torchvision::nms`/`qnms` schemas if the extension cannot load. Returns True if it defined them."""
    if _extension_loads(package_dir):
        return False
    import torch

    if hasattr(torch.ops.torchvision, "nms"):
        return False
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        library.define(schema)
    _LIBRARIES.append(library)
    return True


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Runs `define_missing_operators` right before the first import of torchvision, then gets out of the way."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 (MetaPathFinder protocol)
        if fullname != "torchvision":
            return None
        uninstall()
        spec = importlib.util.find_spec("torchvision")
        if spec is not None and spec.submodule_search_locations:
            try:
                define_missing_operators(Path(list(spec.submodule_search_locations)[0]))
            except Exception as err:  # never break an unrelated program at import time
                print(f"panst3r-splat torchvision hook: {err}", file=sys.stderr)
        return spec


def install() -> None:
    """Append the finder to `sys.meta_path` unless torchvision is already imported or the finder is present."""
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())


def uninstall() -> None:
    """Remove the finder (it acts once)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionFinder)]


install()
