"""Shared helpers of the merging tests: merge results checked, partition comparison, small instances (argument shapes
are checked by the suite-wide checker of tests/conftest.py)."""

from __future__ import annotations

import functools

import torch

from panst3r_splat.core import merging
from panst3r_splat.core.merging import MergedPanoptic


def _check_result(out) -> None:
    if isinstance(out, MergedPanoptic):  # the result's own fields share V, H, W
        check_merged(out)


def checked(fn):
    """``fn`` with its merge results checked as well."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        out = fn(*args, **kwargs)
        _check_result(out)
        return out

    return wrapper


def check_merged(result: MergedPanoptic) -> None:
    """Field types and shapes of a merge result."""
    assert result.panoptic.dtype == torch.int32
    assert result.panoptic.shape == result.confidence.shape and result.panoptic.ndim == 3


merge_qubo = checked(merging.merge_qubo)
merge_standard_v1 = checked(merging.merge_standard_v1)
merge_standard_v2 = checked(merging.merge_standard_v2)
merge_panoptic = checked(merging.merge_panoptic)
qubo_weights = checked(merging.qubo_weights)
solve_qubo = checked(merging.solve_qubo)
qubo_energy = checked(merging.qubo_energy)
panoptic_from_selection = checked(merging.panoptic_from_selection)

MERGES = {"qubo": merge_qubo, "standard_v2": merge_standard_v2, "standard_v1": merge_standard_v1}


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two id maps are equal up to renumbering of the non-zero ids (void stays void)."""
    a, b = a.flatten().long(), b.flatten().long()
    if not torch.equal(a == 0, b == 0):
        return False
    pairs = torch.unique(torch.stack([a, b]), dim=1)
    return len(torch.unique(pairs[0])) == pairs.shape[1] == len(torch.unique(pairs[1]))
