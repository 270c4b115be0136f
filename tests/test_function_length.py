"""No library function is longer than 60 lines (STYLE.md principle 13: small functions, options grouped in a dataclass).

Counted statically on the source of the library packages, from the `def` line to the function's last line, its
docstring included (decorators not). Nested functions and methods count on their own, and inside their enclosing
function too. A function that must stay longer is named in `EXCEPTIONS` with the reason; nothing else may be.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("panst3r_core", "splat", "pipeline", "configs")
MAX_LINES = 60

EXCEPTIONS: dict[str, str] = {}
"""`path::function` -> why it stays longer than MAX_LINES."""


def function_lengths() -> dict[str, int]:
    """`path::qualified name` -> lines from `def` to the end, for every function of the library packages."""
    lengths = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            _visit(tree, f"{path.relative_to(ROOT).as_posix()}::", lengths)
    return lengths


def _visit(node: ast.AST, prefix: str, lengths: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lengths[prefix + child.name] = child.end_lineno - child.lineno + 1
            _visit(child, f"{prefix}{child.name}.", lengths)
        elif isinstance(child, ast.ClassDef):
            _visit(child, f"{prefix}{child.name}.", lengths)
        else:
            _visit(child, prefix, lengths)


def test_no_library_function_is_longer_than_60_lines() -> None:
    lengths = function_lengths()
    assert len(lengths) > 100, "no functions found: PACKAGES or ROOT is wrong"
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES and name not in EXCEPTIONS}
    assert not too_long, "\n".join(
        f"{name}: {n} lines (at most {MAX_LINES}; split it, or group its options into a dataclass)"
        for name, n in sorted(too_long.items()))


def test_every_exception_is_still_needed() -> None:
    lengths = function_lengths()
    stale = [name for name in EXCEPTIONS if lengths.get(name, 0) <= MAX_LINES]
    assert not stale, f"no longer too long (or gone); drop them from EXCEPTIONS: {stale}"
