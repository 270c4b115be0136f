"""The `panst3r-splat` console command: one subcommand per stage (see README.md, "Command line").

Every subcommand is a function with keyword-only typed options; tyro turns its docstring and signature into
`--help`. Bad input raises `UserError`, printed as one line with a non-zero exit code.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from panst3r_splat.pipeline.errors import NotImplementedYet, ScenesFailed, UserError

EXIT_USER_ERROR = 2
EXIT_NOT_IMPLEMENTED = 3
EXIT_SCENES_FAILED = 1


def _commands() -> dict[str, Callable[..., object]]:
    # Imported lazily so that `panst3r-splat --help` does not import torch.
    from panst3r_splat.pipeline.frontends import commands

    return {
        "demo": commands.demo,
        "synth": commands.synth,
        "classes": commands.classes,
        "predict": commands.predict,
        "merge": commands.merge,
        "fit": commands.fit,
        "render": commands.render,
        "render-predict": commands.render_predict,
        "eval": commands.evaluate,
        "view": commands.view,
        "export": commands.export,
        "train-model": commands.train_model,
        "batch": commands.batch,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the subcommand, return the exit code."""
    import tyro

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        tyro.extras.subcommand_cli_from_dict(_commands(), args=args, prog="panst3r-splat")
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
    """Console-script entry point."""
    sys.exit(main())
