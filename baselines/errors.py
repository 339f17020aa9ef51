"""The two kinds of failure `amp` reports in one line (`amp: error: ...`) instead of a traceback."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: an option, a config value, a file given on the command line.
    `amp` exits with status 2."""


class RunError(RuntimeError):
    """A run that cannot go on: its loss or weights became non-finite, its checkpoint is corrupt,
    or another process holds it. `amp` exits with status 1."""
