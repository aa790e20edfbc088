"""Safe extraction of dataset archives (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .zip).

Every entry is checked *before* anything is written: absolute paths, ``..`` components, links pointing outside
the destination and special files (devices, FIFOs) are refused with a :class:`DownloadError` naming the entry.
The archive is then extracted into a temporary sibling of ``dest`` and renamed into place only when everything
succeeded, so an interrupted or refused extraction leaves nothing half-written.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from ...errors import DownloadError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)


def archive_kind(archive: Path) -> str:
    """``"tar"`` or ``"zip"`` from the file name; anything else raises :class:`DownloadError`."""
    name = archive.name.lower()
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    known = ", ".join(TAR_SUFFIXES + ZIP_SUFFIXES)
    raise DownloadError(
        f"{archive}: unsupported archive type (known: {known}); multi-part 7z/zip archives must be joined "
        "and extracted by hand"
    )


def safe_extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    strip_single_dir: bool = False,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Extract ``archive`` into the directory ``dest`` (which must not exist or be empty) and return ``dest``.

    With ``strip_single_dir``, an archive whose entries all sit in one top-level directory (``name/...``) has
    that directory's *contents* placed in ``dest``, like ``tar --strip-components=1``. ``check`` is called on
    the extracted tree before it is moved into place; if it raises, nothing is left behind.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DownloadError(f"archive not found: {archive}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} already exists and is not empty; remove it or choose another root")
    kind = archive_kind(archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        if kind == "tar":
            _extract_tar(archive, tmp)
        else:
            _extract_zip(archive, tmp)
        source = _single_dir(tmp) if strip_single_dir else tmp
        if check is not None:
            check(source)
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        os.replace(source, dest)
    finally:  # after success only an emptied wrapper directory can be left; after a failure, everything
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _single_dir(directory: Path) -> Path:
    entries = list(directory.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() else directory


def check_member_name(name: str, archive: Path) -> str:
    """The normalised relative path of an entry; absolute paths and ``..`` escapes raise :class:`DownloadError`."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":") or os.path.isabs(name):
        raise DownloadError(f"{archive}: refusing entry '{name}' with an absolute path")
    normalised = posixpath.normpath(unified)
    if normalised == ".." or normalised.startswith("../") or ".." in unified.split("/"):
        raise DownloadError(f"{archive}: refusing entry '{name}' that escapes the destination ('..')")
    return normalised


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = check_member_name(member.name, archive)
    if member.issym():
        target = member.linkname.replace("\\", "/")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise DownloadError(f"{archive}: refusing symlink '{member.name}' -> '{member.linkname}' outside dest")
    elif member.islnk():
        check_member_name(member.linkname, archive)
    elif not (member.isfile() or member.isdir()):
        raise DownloadError(f"{archive}: refusing special file '{member.name}' (device, FIFO or unknown type)")


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_tar_member(member, archive)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: the standard library checks too
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - older Pythons rely on the checks above
                tar.extractall(dest, members=members)
    except tarfile.FilterError as exc:
        member = getattr(exc, "tarinfo", None)
        entry = member.name if member is not None else "?"
        raise DownloadError(f"{archive}: refusing entry '{entry}': {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"{archive}: cannot extract ({exc}); the file may be truncated or corrupt") from None


def _extract_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                check_member_name(info.filename, archive)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise DownloadError(f"{archive}: refusing symlink entry '{info.filename}'")
            zf.extractall(dest, members=infos)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{archive}: cannot extract ({exc}); the file may be truncated or corrupt") from None
