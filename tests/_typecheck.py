"""The run-time type checker of the test suite (installed by tests/conftest.py): beartype with PEP 484's numeric
tower (an ``int`` passes where a ``float`` is declared, as Python's typing rules say), and `rejects` for tests of a
function's own input validation, which the checker may pre-empt.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest
from beartype import BeartypeConf, beartype
from jaxtyping import TypeCheckError

checker = beartype(conf=BeartypeConf(is_pep484_tower=True))


@contextlib.contextmanager
def rejects(error: type[Exception], match: str) -> Iterator[None]:
    """Expect ``error`` whose message matches ``match`` -- or the shape checker's `TypeCheckError`, which refuses the
    same bad input first when the function's annotations already rule it out (checking is on in the tests)."""
    with pytest.raises((error, TypeCheckError)) as info:
        yield
    if not isinstance(info.value, TypeCheckError):
        assert re.search(match, str(info.value)), f"{str(info.value)!r} does not match {match!r}"
