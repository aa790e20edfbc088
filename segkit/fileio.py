"""Writing files: atomically (a temporary file beside the target, renamed into place) and with the user's umask.

``tempfile.mkstemp``/``mkdtemp`` create private files (0600) and folders (0700); everything segkit writes for the
user (checkpoints, recipes, metrics, predictions, exports, prepared datasets) gets the mode a plain ``open`` or
``mkdir`` would give instead (0666 / 0777 less the umask). A write that fails because the disk is full raises
:class:`~segkit.errors.DiskFullError` (exit 2) naming the file; the file that was there before is left intact.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import DiskFullError

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
FAULT_ENV = "SEGKIT_TEST_CRASH_WRITING"
"""Tests only: ``NAME:STAGE[:N]`` makes the process ``os._exit(137)`` during its N-th (default first) write of a
file called NAME, at STAGE (``open``: temporary file created, nothing written; ``half``: part of the data written;
``written``: all data written and synced, not yet renamed; ``renamed``: renamed into place). Simulates kill -9 at
a chosen point deterministically."""
_WRITES: dict[str, int] = {}


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file or folder: 0666 / 0777 less the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def make_temp_dir(parent: Path, prefix: str, suffix: str = "") -> Path:
    """A new folder in ``parent`` (a unique name, as ``mkdtemp``) with the umask's mode, not 0700."""
    path = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(path, default_mode(directory=True))
    return path


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` for a full disk or quota, or the ``RuntimeError`` torch's zip writer raises for a failed write."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("file write failed" in text or "PytorchStreamWriter failed" in text)


class RecordingFile:
    """A binary file object that remembers the ``OSError`` its ``write`` raised (torch turns it into a
    ``RuntimeError`` that no longer says why)."""

    def __init__(self, fh: IO[bytes], path: Path) -> None:
        self.fh, self.path, self.error, self.written = fh, path, None, 0

    def write(self, data) -> int:
        try:
            count = self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise
        self.written += len(data)
        if self.written > 0 and _crash_point(self.path) == "half":
            self.fh.flush()
            os._exit(137)
        return count

    def flush(self) -> None:
        self.fh.flush()

    def tell(self) -> int:
        return self.fh.tell()

    def seek(self, *args) -> int:
        return self.fh.seek(*args)

    def fileno(self) -> int:
        return self.fh.fileno()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.fh.seekable()


def _crash_point(path: Path) -> str | None:
    spec = os.environ.get(FAULT_ENV)
    if not spec or ":" not in spec:
        return None
    name, stage, *count = spec.split(":")
    if name != path.name or _WRITES.get(name, 0) != int(count[0] if count else 1):
        return None
    return stage


def _maybe_crash(path: Path, stage: str) -> None:
    if _crash_point(path) == stage:
        os._exit(137)


def atomic_write_bytes(path: str | os.PathLike, writer: Callable[[RecordingFile], object], what: str = "") -> None:
    """Call ``writer(file_object)`` on a temporary file next to ``path``, sync it, then rename it onto ``path``.

    The file gets the umask's mode. Whatever happens, ``path`` is either its old content or the complete new one;
    the temporary file is removed on failure. A full disk raises :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    had_previous = path.exists()
    _WRITES[path.name] = _WRITES.get(path.name, 0) + 1
    recorder = None
    try:
        os.fchmod(fd, default_mode())
        with os.fdopen(fd, "wb") as fh:
            _maybe_crash(path, "open")
            recorder = RecordingFile(fh, path)
            writer(recorder)
            fh.flush()
            os.fsync(fh.fileno())
        _maybe_crash(path, "written")
        os.replace(tmp, path)
        _maybe_crash(path, "renamed")
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = recorder.error if recorder is not None and recorder.error is not None else exc
        if isinstance(exc, (OSError, RuntimeError)) and is_disk_full(cause):
            kept = (f"the previous {what or path.name} is intact" if had_previous
                    else "nothing was written")
            raise DiskFullError(f"disk full while writing {path}; {kept}. Free some space "
                                f"(or write elsewhere) and run again") from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")))
