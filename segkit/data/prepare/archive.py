"""Safe extraction of dataset archives (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .zip).

Every entry is checked *before* anything is written, on the names as they will land (after the optional
stripping of a single top folder):

* absolute paths, drive letters and ``..`` components are refused;
* links are resolved against the archive's own tree, following symlinks inside it one by one (as the kernel
  would, but without touching the disk), and refused when they lead outside the destination, loop, or chain
  more than :data:`MAX_LINK_HOPS` links or :data:`PATH_MAX` bytes (the CVE-2025-4517 pattern, a chain whose
  resolved length exceeds ``PATH_MAX`` so that ``os.path.realpath`` gives up, is refused here, whatever the
  Python version);
* no entry may be written *through* a symlink of the archive, and a name may not be both a folder and a file;
* hard links must point at a regular file of the archive that comes before them;
* devices, FIFOs and other special files are refused;
* the declared sizes (tar headers, zip central directory) are added up before extraction: an archive that
  would need more than the free disk space, or that expands more than :data:`MAX_RATIO` times its own size past
  :data:`BOMB_MIN_BYTES` (a decompression bomb), is refused. Zip members are never inflated past their
  declared size (``zipfile`` stops there and the CRC check fails).

Tar members are then extracted with Python's ``filter="data"``; zip members are written with ``O_EXCL``. All of
it goes to a temporary sibling of ``dest`` that is renamed into place only when everything succeeded, so an
interrupted or refused extraction leaves nothing half-written. Folders and files get the user's umask.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...errors import DownloadError
from ...fileio import default_mode, make_temp_dir

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
MAX_LINK_HOPS = 40  # Linux's MAXSYMLINKS
PATH_MAX = 4096
MAX_RATIO = 200
BOMB_MIN_BYTES = 1 << 30
FREE_SPACE_MARGIN = 64 << 20


@dataclass
class Entry:
    """One archive member as it will land: ``name`` relative to the destination, after stripping."""

    name: str
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    size: int = 0
    link: str = ""
    original: str = ""


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
    that directory's *contents* placed in ``dest``, like ``tar --strip-components=1``; links are checked against
    ``dest`` after that stripping. ``check`` is called on the extracted tree before it is moved into place; if it
    raises, nothing is left behind.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DownloadError(f"archive not found: {archive}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} already exists and is not empty; remove it or choose another root")
    kind = archive_kind(archive)
    try:
        opened = tarfile.open(archive, "r:*") if kind == "tar" else zipfile.ZipFile(archive)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DownloadError(f"{archive}: cannot read it ({exc}); the file may be truncated or corrupt") from None
    with opened:
        try:
            members = opened.getmembers() if kind == "tar" else opened.infolist()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DownloadError(f"{archive}: cannot read it ({exc}); the file may be truncated or corrupt") from None
        entries = [_tar_entry(m, archive) if kind == "tar" else _zip_entry(m, archive) for m in members]
        if strip_single_dir:
            entries = _strip_top(entries, archive)
        check_entries(entries, archive)
        check_sizes(entries, archive, dest.parent)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(dest.parent, prefix=f".{dest.name}.", suffix=".partial")
        try:
            if kind == "tar":
                _extract_tar(opened, members, entries, archive, tmp)
            else:
                _extract_zip(opened, members, entries, archive, tmp)
            if check is not None:
                check(tmp)
            if dest.exists():
                dest.rmdir()  # empty (checked above)
            os.replace(tmp, dest)
        finally:  # after a failure, everything goes
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ---------------------------------------------------------------------- names
def check_member_name(name: str, archive: Path) -> str:
    """The normalised relative path of an entry; absolute paths and ``..`` escapes raise :class:`DownloadError`."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":") or os.path.isabs(name):
        raise DownloadError(f"{archive}: refusing entry '{name}' with an absolute path")
    if ".." in unified.split("/"):
        raise DownloadError(f"{archive}: refusing entry '{name}' that escapes the destination ('..')")
    if "\x00" in unified:
        raise DownloadError(f"{archive}: refusing entry {name!r} with a NUL byte in its name")
    return posixpath.normpath(unified) if unified.strip("/.") else "."


def _tar_entry(member: tarfile.TarInfo, archive: Path) -> Entry:
    name = check_member_name(member.name, archive)
    if member.issym():
        return Entry(name, "symlink", link=member.linkname, original=member.name)
    if member.islnk():
        return Entry(name, "hardlink", link=check_member_name(member.linkname, archive), original=member.name)
    if member.isdir():
        return Entry(name, "dir", original=member.name)
    if member.isfile():
        return Entry(name, "file", size=member.size, original=member.name)
    raise DownloadError(f"{archive}: refusing special file '{member.name}' (device, FIFO or unknown type)")


def _zip_entry(info: zipfile.ZipInfo, archive: Path) -> Entry:
    name = check_member_name(info.filename, archive)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DownloadError(f"{archive}: refusing symlink entry '{info.filename}' (zip archives may not hold links)")
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise DownloadError(f"{archive}: refusing special file '{info.filename}' (device, FIFO or unknown type)")
    if info.is_dir():
        return Entry(name, "dir", original=info.filename)
    return Entry(name, "file", size=info.file_size, original=info.filename)


def _strip_top(entries: list[Entry], archive: Path) -> list[Entry]:
    """Drop a single top folder from every name (and hard-link target) when all entries sit inside it."""
    named = [e for e in entries if e.name != "."]
    tops = {e.name.split("/", 1)[0] for e in named}
    if len(tops) != 1:
        return entries
    top = tops.pop()
    if any(e.name == top and e.kind != "dir" for e in named) or not any("/" in e.name for e in named):
        return entries
    out = []
    for e in named:
        if e.name == top:
            continue
        link = e.link
        if e.kind == "hardlink":
            if not link.startswith(top + "/"):
                raise DownloadError(f"{archive}: refusing hard link '{e.original}' -> '{e.link}': its target is outside "
                                    f"the top folder '{top}' that is stripped")
            link = link[len(top) + 1:]
        out.append(Entry(e.name[len(top) + 1:], e.kind, e.size, link, e.original))
    return out


# ---------------------------------------------------------------------- the tree check
def check_entries(entries: list[Entry], archive: Path) -> None:
    """Refuse the archive unless every entry and link stays inside the destination (see the module docstring)."""
    tree: dict[str, Entry] = {}
    hardlinks_bad: list[Entry] = []  # reported after the tree checks, which name the cause more precisely
    for e in entries:
        if e.name == ".":
            if e.kind != "dir":
                raise DownloadError(f"{archive}: refusing entry '{e.original}' that would replace the destination")
            continue
        if len(e.name.encode()) > PATH_MAX:
            raise DownloadError(f"{archive}: refusing entry '{e.original[:80]}...': its name is longer than "
                                f"PATH_MAX ({PATH_MAX} bytes)")
        old = tree.get(e.name)
        if old is not None and (old.kind != e.kind or e.kind in ("symlink", "hardlink")):
            raise DownloadError(f"{archive}: refusing entry '{e.original}': the name appears twice "
                                f"(as a {old.kind} and a {e.kind}); a later entry must not replace a link")
        if e.kind == "hardlink" and (e.link not in tree or tree[e.link].kind != "file"):
            hardlinks_bad.append(e)
        tree[e.name] = e
    for e in entries:
        if e.name == ".":
            continue
        parts = e.name.split("/")
        for cut in range(1, len(parts)):
            parent = tree.get("/".join(parts[:cut]))
            if parent is not None and parent.kind == "symlink":
                raise DownloadError(f"{archive}: refusing entry '{e.original}' written through the symlink "
                                    f"'{parent.original}'")
            if parent is not None and parent.kind != "dir":
                raise DownloadError(f"{archive}: refusing entry '{e.original}': '{parent.original}' is a file, "
                                    "not a folder")
        if e.kind == "symlink":
            resolve_link(e, tree, archive)
        if e in hardlinks_bad:
            raise DownloadError(f"{archive}: refusing hard link '{e.original}' -> '{e.link}': its target is not a "
                                "regular file that comes earlier in the archive")


def resolve_link(link: Entry, tree: dict[str, Entry], archive: Path) -> list[str]:
    """Resolve a symlink entry inside the archive's own tree; return the components of where it leads.

    Raises :class:`DownloadError` when the link is absolute, leaves the destination at any step, loops, or needs
    more than :data:`MAX_LINK_HOPS` links or more than :data:`PATH_MAX` bytes of path.
    """

    def refuse(why: str) -> DownloadError:
        return DownloadError(f"{archive}: refusing symlink '{link.original}' -> '{link.link}': {why}")

    hops = 0

    def walk(base: list[str], target: str) -> list[str]:
        nonlocal hops
        target = target.replace("\\", "/")
        if not target or target.startswith("/") or (len(target) > 1 and target[1] == ":"):
            raise refuse("an absolute or empty target points outside the destination")
        current = list(base)
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not current:
                    raise refuse("it points outside the destination")
                current.pop()
                continue
            current.append(part)
            if len("/".join(current).encode()) > PATH_MAX:
                raise refuse(f"its resolved path is longer than PATH_MAX ({PATH_MAX} bytes)")
            hit = tree.get("/".join(current))
            if hit is not None and hit.kind == "symlink":
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise refuse(f"it follows more than {MAX_LINK_HOPS} links (a loop or a chain)")
                current = walk(current[:-1], hit.link)
        return current

    return walk(link.name.split("/")[:-1], link.link)


def check_sizes(entries: list[Entry], archive: Path, parent: Path) -> None:
    """Refuse from the declared sizes: more than the free disk space, or a decompression bomb."""
    total = sum(e.size for e in entries if e.kind == "file")
    packed = max(archive.stat().st_size, 1)
    if total > BOMB_MIN_BYTES and total > MAX_RATIO * packed:
        raise DownloadError(f"{archive}: refusing a decompression bomb: its entries declare {_gb(total)} from "
                            f"{_gb(packed)} of archive (more than {MAX_RATIO} times); nothing was written")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if total + FREE_SPACE_MARGIN > free:
        raise DownloadError(f"{archive}: its entries need {_gb(total)} but only {_gb(free)} is free under {probe}; "
                            "free some space or choose another --root; nothing was written")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


# ---------------------------------------------------------------------- writing
def _extract_tar(tar: tarfile.TarFile, members: list, entries: list[Entry], archive: Path, dest: Path) -> None:
    by_original = {e.original: e for e in entries}
    renamed = []
    for member in members:
        e = by_original.get(member.name)
        if e is None or e.name == ".":
            continue  # the stripped top folder itself
        renamed.append(member.replace(name=e.name, linkname=e.link if e.kind == "hardlink" else member.linkname,
                                      deep=False))
    try:
        tar.extractall(dest, members=renamed, filter="data")
    except tarfile.FilterError as exc:
        member = getattr(exc, "tarinfo", None)
        entry = member.name if member is not None else "?"
        raise DownloadError(f"{archive}: refusing entry '{entry}': {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"{archive}: cannot extract ({exc}); the file may be truncated or corrupt") from None


def _extract_zip(zf: zipfile.ZipFile, members: list, entries: list[Entry], archive: Path, dest: Path) -> None:
    by_original = {e.original: e for e in entries}
    file_mode, dir_mode = default_mode(), default_mode(directory=True)
    try:
        for info in members:
            e = by_original.get(info.filename)
            if e is None or e.name == ".":
                continue
            target = dest.joinpath(*e.name.split("/"))
            if e.kind == "dir":
                target.mkdir(mode=dir_mode, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), file_mode)
            with zf.open(info) as src, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise DownloadError(f"{archive}: cannot extract ({exc}); the file may be truncated or corrupt") from None
