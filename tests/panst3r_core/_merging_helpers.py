"""Shared helpers of the merging tests: run-time shape checking, partition comparison, small instances."""

from __future__ import annotations

import functools
import inspect
import types
import typing

import torch
from jaxtyping import AbstractArray, jaxtyped

from panst3r_splat.core import merging
from panst3r_splat.core.merging import MergedPanoptic


def _annotation_checker(fn):
    """jaxtyping shape checks of arguments and return value (typeguard 4 cannot parse the shape strings)."""
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn)

    def check(value, hint, what: str) -> None:
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        arrays = [h for h in options if isinstance(h, type) and issubclass(h, AbstractArray)]
        if arrays and not any(isinstance(value, h) for h in arrays) and not (value is None and type(None) in options):
            raise TypeError(f"{fn.__name__}: {what} does not match {hint}: shape {getattr(value, 'shape', None)}")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for name, value in signature.bind(*args, **kwargs).arguments.items():
            if name in hints:
                check(value, hints[name], f"argument {name!r}")
        out = fn(*args, **kwargs)
        if "return" in hints:
            check(out, hints["return"], "return value")
        if isinstance(out, MergedPanoptic):  # the result's own fields share V, H, W
            check_merged(out)
        return out

    return wrapper


def checked(fn):
    """``fn`` with jaxtyping shape checking at run time."""
    return jaxtyped(typechecker=_annotation_checker)(fn)


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
