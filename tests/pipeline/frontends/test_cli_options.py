"""Every command's `--help` option names stay as documented (docs/formats.md: extend freely, never rename).

The snapshot `tests/data/cli_options.json` holds each subcommand's flags as `--help` prints them. A renamed or
removed flag fails here; a new flag fails too until the snapshot is extended on purpose:

    .venv/bin/python tests/pipeline/frontends/test_cli_options.py     # rewrites the snapshot from today's --help
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest

from panst3r_splat.pipeline.frontends import cli

SNAPSHOT = Path(__file__).resolve().parents[2] / "data" / "cli_options.json"
_OPTION = re.compile(r"^(?:│ |  )((?:-\w, )?--[a-z0-9-]+(?:, --[a-z0-9-]+)*)")
"""An option entry: its names right after the frame (a terminal) or two spaces (plain text); wrapped description
lines are indented further."""


def option_names(command: str) -> list[str]:
    """The flags `panst3r-splat COMMAND --help` lists (each entry's names, e.g. `--video, --no-video`)."""
    out = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "250"  # no wrapping inside an option's names
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            cli.main([command, "--help"])
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    names = []
    for line in out.getvalue().splitlines():
        match = _OPTION.match(line)
        if match:
            names.extend(n.strip() for n in match.group(1).split(","))
    return sorted(names)


def all_options() -> dict[str, list[str]]:
    return {command: option_names(command) for command in sorted(cli._commands())}


def test_every_command_keeps_its_option_names() -> None:
    expected = json.loads(SNAPSHOT.read_text())
    actual = all_options()
    assert sorted(actual) == sorted(expected), "the set of subcommands changed"
    for command, names in expected.items():
        assert "--help" in actual[command], f"{command}: --help was not parsed"
        removed = sorted(set(names) - set(actual[command]))
        added = sorted(set(actual[command]) - set(names))
        assert not removed, f"{command}: options removed or renamed: {removed} (keep the old spelling working)"
        assert not added, f"{command}: new options {added}: document them and extend {SNAPSHOT.name}"


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(all_options(), indent=1) + "\n")
    print(f"wrote {SNAPSHOT}")
