"""The `panst3r-splat` command: every subcommand of the contract exists and has --help."""

from __future__ import annotations

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
