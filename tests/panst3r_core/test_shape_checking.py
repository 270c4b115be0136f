"""The suite's run-time type checker (tests/conftest.py) is on: core functions reject what their annotations rule
out, so every test that calls them checks shapes too."""

from __future__ import annotations

import pytest
import torch
from jaxtyping import TypeCheckError

from panst3r_splat.core import transforms
from panst3r_splat.core.geometry import rigid_procrustes


def test_core_functions_check_their_shapes() -> None:
    assert transforms.rigid_inverse(torch.eye(4)).shape == (4, 4)
    with pytest.raises(TypeCheckError):
        transforms.rigid_inverse(torch.eye(3))  # "*B 4 4"
    with pytest.raises(TypeCheckError):
        rigid_procrustes(torch.zeros(5, 3), torch.zeros(4, 3))  # P differs between the arguments


def test_the_numeric_tower_lets_an_int_be_a_float() -> None:
    R = transforms.Similarity.from_parts(2, torch.eye(3), [0.0, 0.0, 0.0]).R  # scale: float, given an int
    assert R.shape == (3, 3)
