"""The suite's run-time type checker (tests/conftest.py) is on for every package: functions and dataclasses reject
what their annotations rule out, so every test that calls them checks shapes too -- except the Numba kernels, which
the checker cannot wrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from jaxtyping import TypeCheckError

from panst3r_splat.configs.synth import SynthConfig
from panst3r_splat.core import transforms
from panst3r_splat.core.geometry import rigid_procrustes
from panst3r_splat.pipeline.evaluation import miou
from panst3r_splat.splat import _composite_kernels, _numba_kernels
from panst3r_splat.splat.gaussians import Cameras


def test_core_functions_check_their_shapes() -> None:
    assert transforms.rigid_inverse(torch.eye(4)).shape == (4, 4)
    with pytest.raises(TypeCheckError):
        transforms.rigid_inverse(torch.eye(3))  # "*B 4 4"
    with pytest.raises(TypeCheckError):
        rigid_procrustes(torch.zeros(5, 3), torch.zeros(4, 3))  # P differs between the arguments


def test_splat_pipeline_and_configs_are_checked() -> None:
    with pytest.raises(TypeCheckError):
        Cameras(K=torch.eye(3)[None], T_world_cam=torch.eye(4)[None].expand(2, 4, 4), width=8, height=8,
                names=("a",))  # C differs between the fields
    with pytest.raises(TypeCheckError):
        miou(np.zeros((2, 3)), np.zeros((2, 3), np.int64))  # float class ids
    with pytest.raises(TypeCheckError):
        SynthConfig(width="64")  # type: ignore[arg-type]


def test_the_numba_kernels_are_left_to_numba() -> None:
    assert type(_numba_kernels.bin_tiles).__name__ == "CPUDispatcher"
    assert type(_composite_kernels.composite_backward).__name__ == "CPUDispatcher"
    for module in (_numba_kernels, _composite_kernels):
        assert "jaxtyping" not in vars(module)  # the import hook adds `import jaxtyping` to what it rewrites


def test_the_numeric_tower_lets_an_int_be_a_float() -> None:
    R = transforms.Similarity.from_parts(2, torch.eye(3), [0.0, 0.0, 0.0]).R  # scale: float, given an int
    assert R.shape == (3, 3)
