"""User-facing errors: anything raised as a ``SegkitError`` is printed without a traceback and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SegkitError(Exception):
    """Bad usage, recipe or input. The message is shown to the user as is (exit code 2)."""


class RecipeError(SegkitError):
    """A recipe value is wrong; ``path`` is its dotted TOML path (``backbone.depth``)."""

    def __init__(self, path: str, message: str, source: str | None = None) -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {message}" if path else f"{where}{message}")


class DataError(SegkitError):
    """A data file is missing, unreadable or inconsistent."""


class CheckpointError(SegkitError):
    """A checkpoint file cannot be read or does not fit the model."""


class DownloadError(SegkitError):
    """A download failed (offline, bad checksum, refused archive)."""


class DiskFullError(SegkitError):
    """A file could not be written because its disk (or quota) is full; what was there before is intact."""


class TrainingStopped(SegkitError):
    """Training cannot go on (a non-finite loss); the message says where and what the last good checkpoint is."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
