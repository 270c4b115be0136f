"""The `panst3r-splat` command: every subcommand of the contract exists and has --help."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from panst3r_splat.pipeline.frontends.cli import _commands

CONTRACT = ["demo", "synth", "predict", "merge", "fit", "render", "eval", "view", "export", "train-model"]
EXTENSIONS = ["classes", "render-predict", "batch"]  # beyond CLI.md's table (the contract allows extensions)


def test_every_contract_subcommand_exists() -> None:
    assert sorted(_commands()) == sorted(CONTRACT + EXTENSIONS)


@pytest.mark.parametrize("name", CONTRACT + EXTENSIONS)
def test_help(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "panst3r_splat.pipeline", name, "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


_PRINT_POLICY_AT_EXIT = (
    "import atexit, os, sys; sys.argv = ['panst3r-splat', '--help']; "
    "atexit.register(lambda: print('policy', os.environ.get('OMP_WAIT_POLICY'))); "
    "from panst3r_splat.pipeline.frontends.cli import entrypoint; entrypoint()"
)


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_command_sets_a_passive_openmp_wait_policy_unless_given(given: str | None, expected: str) -> None:
    """The console command sets OMP_WAIT_POLICY before torch loads (spinning OpenMP workers took the second core
    from the compiled rasteriser's threads, `pipeline/openmp.py`); a user's own value is kept."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", _PRINT_POLICY_AT_EXIT], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"policy {expected}", out.stdout[-300:]
