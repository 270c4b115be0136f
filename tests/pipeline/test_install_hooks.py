"""The install's torchvision start-up hook: lazy at start-up, and torchvision plus nerfstudio import with it."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_hook_is_installed_and_lazy() -> None:
    result = _run(
        "import sys; "
        "assert '_panst3r_splat_torchvision_hook' in sys.modules, 'hook not installed: run scripts/install.sh'; "
        "assert 'torch' not in sys.modules, 'the hook imported torch at start-up'; print('lazy')"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lazy"


def test_torchvision_and_nerfstudio_import() -> None:
    result = _run("import torchvision, torchvision.transforms; import nerfstudio.models.base_model; print('ok')")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_hook_defines_operators_only_when_the_extension_fails(tmp_path) -> None:
    from panst3r_splat.pipeline import torchvision_hook

    # A folder with no compiled extension: the operators must be defined (or already exist in this process).
    code = (
        "import pathlib, torch\n"
        "from panst3r_splat.pipeline import torchvision_hook as h\n"
        f"defined = h.define_missing_operators(pathlib.Path({str(tmp_path)!r}))\n"
        "print(defined, hasattr(torch.ops.torchvision, 'nms'))\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    defined, has_nms = result.stdout.split()
    assert has_nms == "True"
    assert torchvision_hook._SCHEMAS[0].startswith("nms(")
    if defined == "False":
        pytest.skip("torchvision's own extension already provides the operators here")
