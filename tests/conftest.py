"""Suite-wide set-up: run-time checking of the type and shape annotations of every package.

jaxtyping's import hook wraps every function and dataclass of ``panst3r_splat.{core,splat,pipeline,configs}`` with
beartype (through ``_typecheck.checker``) as it is imported, so a value that contradicts an annotation fails the test
that passed it. It must run before anything imports the packages, hence here. Classes that coerce their inputs on
construction opt out with ``@no_type_check`` (they validate themselves).

Three modules are left out: ``splat._numba_kernels``, ``splat._composite_kernels`` and ``splat._ssim_kernels``, whose
functions Numba compiles or which emit LLVM code for it (a checking wrapper cannot be compiled); their callers
(`splat.rasterize_numba`, `splat.train`) are checked. The hook takes module names and includes everything under a
name, so ``splat`` is listed module by module (found by file, nothing imported).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from jaxtyping import install_import_hook

UNCHECKED = {"panst3r_splat.splat._numba_kernels", "panst3r_splat.splat._composite_kernels",
             "panst3r_splat.splat._ssim_kernels"}


def _modules_except(package: str, excluded: set[str]) -> list[str]:
    """The modules of ``package`` (its package ``__init__`` files left out) less ``excluded``."""
    folder = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    names = (".".join((package, *path.relative_to(folder).with_suffix("").parts)) for path in folder.rglob("*.py"))
    return sorted(name for name in names if name not in excluded and not name.endswith(".__init__"))


install_import_hook(
    ["panst3r_splat.core", *_modules_except("panst3r_splat.splat", UNCHECKED), "panst3r_splat.pipeline",
     "panst3r_splat.configs"],
    "_typecheck.checker",
)
