"""Run-time checking of the jaxtyping shape annotations of public functions, for the tests.

typeguard 4 parses jaxtyping's shape strings as Python expressions and fails, and beartype is not installed;
jaxtyping array types support ``isinstance`` inside a ``jaxtyped`` call, which is all that is needed here.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable

from jaxtyping import AbstractArray, jaxtyped


def _annotation_checker(fn, after: Callable[[object], None] | None = None):
    """Checks arguments and return value against their annotations; `after` checks the result further (jaxtyping
    also routes its parameter check through here, so `after` sees that call's None as well)."""
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn)

    def check(value, hint, what: str) -> None:
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if typing.get_origin(hint) is tuple:
            for item, item_hint in zip(value, typing.get_args(hint)):
                check(item, item_hint, what)
            return
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
        if after is not None:
            after(out)
        return out

    return wrapper


def checked(fn, after: Callable[[object], None] | None = None):
    """``fn`` with jaxtyping shape checking at run time (and `after` applied to each result)."""
    return jaxtyped(typechecker=functools.partial(_annotation_checker, after=after))(fn)
