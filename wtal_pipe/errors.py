"""Typed user-facing errors.

Library code raises these; only the CLI turns them into one line and an exit code, so the
functions stay usable from Python without ``sys.exit`` surprises.
"""

from __future__ import annotations

from pathlib import Path


class WtalError(Exception):
    """An error caused by the user's input, with what went wrong and how to fix it."""

    def __init__(self, what: str, fix: str = "", path: str | Path | None = None):
        self.what = what
        self.fix = fix
        self.path = None if path is None else str(path)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        fix = f" ({self.fix})" if self.fix else ""
        return f"{where}{self.what}{fix}"


class VideoError(WtalError):
    """A video that cannot be decoded (missing, corrupt, empty, not a video)."""


class DataError(WtalError):
    """A dataset, annotation, feature or checkpoint file that does not fit."""
