"""Errors a user can cause and fix: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (missing folder, unreadable image, wrong checkpoint, ...).

    The message names the offending value and what to do about it; the CLI prints it as one line.
    """


class NotImplementedYet(UserError):
    """A stage of the command-line contract that is not built yet (exit code 3)."""

    def __init__(self, command: str, missing: str) -> None:
        super().__init__(f"`panst3r-splat {command}` is not implemented yet ({missing})")


class ScenesFailed(UserError):
    """Some scenes of a batch failed; the summary is written (exit code 1)."""
