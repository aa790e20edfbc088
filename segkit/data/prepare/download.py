"""Resumable, checksummed downloads with the standard library (``urllib``).

The file is written to ``<dest>.part``; an interrupted transfer is resumed with an HTTP ``Range`` request (and
restarted when the server ignores it); the finished file's SHA-256 is checked and only then renamed onto
``dest``. Offline machines fail within seconds: the TCP connect has its own short timeout, and a connection error
becomes a :class:`DownloadError` explaining how to supply the file by hand.
"""

from __future__ import annotations

import contextvars
import hashlib
import http.client
import os
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.error import HTTPError, URLError

from ...errors import DownloadError

CHUNK_SIZE = 1 << 20
USER_AGENT = "segkit-downloader"
Progress = Callable[[int, "int | None"], None]
"""``progress(bytes_done, total_bytes_or_None)``, called after every chunk."""
PROGRESS_HOOK: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("segkit_download_progress",
                                                                               default=None)
"""The ``progress`` of downloads that are given none (``segkit prepare-data`` sets it to draw a byte bar)."""


class _Retry(Exception):
    """A transient failure: the next attempt resumes from the ``.part`` file."""


class _FastConnectMixin:
    """An HTTP(S) connection whose TCP connect (and TLS handshake) uses ``connect_timeout``, reads ``timeout``."""

    def __init__(self, *args, connect_timeout: float = 3.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout

    def connect(self) -> None:
        read_timeout = self.timeout
        self.timeout = self.connect_timeout if read_timeout is None else min(self.connect_timeout, read_timeout)
        try:
            super().connect()
        finally:
            self.timeout = read_timeout
        self.sock.settimeout(read_timeout)


class _HTTPConnection(_FastConnectMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_FastConnectMixin, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, connect_timeout: float) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout

    def http_open(self, req):
        return self.do_open(_HTTPConnection, req, connect_timeout=self.connect_timeout)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, connect_timeout: float) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout

    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context, connect_timeout=self.connect_timeout)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    timeout: float = 10.0,
    retries: int = 3,
    connect_timeout: float = 3.0,
    dataset: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), check ``sha256`` and return ``dest``.

    An existing ``dest`` whose checksum matches (or any existing ``dest`` when ``sha256`` is None) is kept. A
    connection failure raises :class:`DownloadError` at once (no retries: the machine is probably offline); a
    transfer cut short, a read timeout or an HTTP 5xx is retried up to ``retries`` times, each resuming. ``dataset``
    names the dataset in the offline hint (``segkit prepare-data NAME --from-archive PATH``).
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or file_sha256(dest) == sha256.lower()):
        return dest
    progress = progress or PROGRESS_HOOK.get()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    opener = urllib.request.build_opener(_HTTPHandler(connect_timeout), _HTTPSHandler(connect_timeout))
    hint = dataset or "NAME"
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.5 * attempt, 5.0))
        try:
            if _attempt(opener, url, part, timeout, progress, hint):
                break
            last_error = "the connection closed before the end of the file"
        except _Retry as exc:
            last_error = str(exc)
    else:
        raise DownloadError(
            f"{url}: download failed after {retries + 1} attempts ({last_error}); {part} is kept and the next "
            f"run resumes it. To supply the file by hand: segkit prepare-data {hint} --from-archive PATH"
        )
    _verify(part, sha256, url)
    os.replace(part, dest)
    return dest


def _attempt(opener, url: str, part: Path, timeout: float, progress: Progress | None, hint: str) -> bool:
    """One request; appends to ``part`` when the server honours ``Range``. True when the file is complete."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        return _http_error(exc, url, part, offset)
    except URLError as exc:  # DNS failure, refused or timed-out connect: offline, fail fast
        raise DownloadError(
            f"cannot download {url}: {exc.reason}. If this machine is offline, fetch the file elsewhere and "
            f"run: segkit prepare-data {hint} --from-archive PATH"
        ) from None
    except (OSError, http.client.HTTPException) as exc:  # reset or timed out while waiting for the reply
        raise _Retry(f"no reply: {exc!r}") from None
    with response:
        if response.status == 206 and _range_start(response) != offset:
            part.unlink(missing_ok=True)
            raise _Retry("the server answered with another byte range; restarting from the beginning")
        resumed = offset > 0 and response.status == 206
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = start + expected if expected is not None else None
        received = 0
        with open(part, "ab" if resumed else "wb") as fh:
            try:
                while chunk := response.read(CHUNK_SIZE):
                    fh.write(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(start + received, total)
            except (OSError, http.client.HTTPException) as exc:
                raise _Retry(f"connection lost after {start + received} bytes: {exc!r}") from None
    return expected is None or received >= expected


def _http_error(exc: HTTPError, url: str, part: Path, offset: int) -> bool:
    """Handle an HTTP error status: complete (416 at the full size), retry (5xx, 429, bad range) or fail."""
    exc.close()
    if exc.code == 416 and offset:
        total = re.fullmatch(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") or "")
        if total and int(total.group(1)) == offset:
            return True  # the part file is already complete
        part.unlink(missing_ok=True)
        raise _Retry("the server refused the resume range; restarting from the beginning")
    if exc.code >= 500 or exc.code == 429:
        raise _Retry(f"HTTP {exc.code} {exc.reason}")
    raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}")


def _range_start(response) -> int | None:
    """The first byte of a ``206`` reply's ``Content-Range: bytes START-END/TOTAL``."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", "") or "")
    return int(match.group(1)) if match else None


def _verify(part: Path, sha256: str | None, url: str) -> None:
    """Check the finished file's checksum; a mismatch removes it (a resume would only repeat the error)."""
    if sha256 is None:
        return
    actual = file_sha256(part)
    if actual != sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: checksum mismatch: expected sha256 {sha256.lower()}, got {actual}")
