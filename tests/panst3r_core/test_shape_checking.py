"""The tests' run-time shape checker rejects what the annotations rule out (so the checked tests check something)."""

from __future__ import annotations

import pytest
import torch
from _shape_checking import checked
from jaxtyping import Float
from torch import Tensor


def _add(a: Float[Tensor, "N 3"], b: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
    return a + b


def test_matching_shapes_pass_and_mismatches_fail() -> None:
    add = checked(_add)
    assert add(torch.ones(4, 3), torch.ones(4, 3)).shape == (4, 3)
    with pytest.raises(TypeError, match="does not match|Type-check error"):
        add(torch.ones(4, 3), torch.ones(5, 3))  # N differs between the arguments
    with pytest.raises(TypeError, match="does not match|Type-check error"):
        add(torch.ones(4, 2), torch.ones(4, 2))  # the last axis must be 3


def test_after_hook_sees_the_result() -> None:
    seen = []
    checked(_add, after=seen.append)(torch.zeros(1, 3), torch.zeros(1, 3))
    # jaxtyping also routes its parameter check (which returns None) through the checker, hence the filter.
    results = [r for r in seen if r is not None]
    assert len(results) == 1 and results[0].shape == (1, 3)
