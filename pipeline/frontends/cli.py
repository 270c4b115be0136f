"""The `panst3r-splat` console command: one subcommand per stage (see README.md, "Command line").

Every subcommand is a frozen dataclass of options (`commands.py`) that tyro turns into flat flags and `--help`, and a
function that takes it. Bad input raises `UserError`, printed as one line with a non-zero exit code.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

from panst3r_splat.pipeline.errors import NotImplementedYet, ScenesFailed, UserError

EXIT_USER_ERROR = 2
EXIT_NOT_IMPLEMENTED = 3
EXIT_SCENES_FAILED = 1


def _commands() -> dict[str, tuple[type, Callable[[Any], None]]]:
    """Each subcommand's options dataclass and the function that runs it (`commands.COMMANDS`)."""
    # Imported lazily so that importing this module stays cheap; `commands` itself imports no torch.
    from panst3r_splat.pipeline.frontends import commands

    return commands.COMMANDS


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the subcommand, return the exit code."""
    import tyro

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        commands = _commands()
        options = tyro.extras.subcommand_cli_from_dict({name: cls for name, (cls, _) in commands.items()},
                                                       args=args, prog="panst3r-splat")
        run = {cls: fn for cls, fn in commands.values()}[type(options)]
        run(options)
    except ScenesFailed as err:
        print(f"panst3r-splat: {err}", file=sys.stderr)
        return EXIT_SCENES_FAILED
    except NotImplementedYet as err:
        print(f"panst3r-splat: {err}", file=sys.stderr)
        return EXIT_NOT_IMPLEMENTED
    except UserError as err:
        print(f"panst3r-splat: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("panst3r-splat: interrupted", file=sys.stderr)
        return 130
    return 0


def entrypoint() -> None:
    """Console-script entry point (`panst3r-splat`, `python -m panst3r_splat.pipeline`)."""
    from panst3r_splat.pipeline.openmp import quiet_openmp_waits

    quiet_openmp_waits()  # before anything imports torch
    sys.exit(main())
