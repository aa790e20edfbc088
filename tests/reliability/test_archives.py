"""Archives that try to escape their destination, or to fill the disk, are refused before anything is written.

Each case checks the message (names the archive and the entry), that the destination and its parent hold nothing
new, and that a file planted outside the destination is unchanged.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from segkit.data.prepare import archive as archive_mod
from segkit.data.prepare.archive import safe_extract
from segkit.errors import DownloadError


def add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, symlink: str | None = None,
        hardlink: str | None = None, kind: bytes | None = None) -> None:
    info = tarfile.TarInfo(name)
    if symlink is not None:
        info.type, info.linkname = tarfile.SYMTYPE, symlink
    elif hardlink is not None:
        info.type, info.linkname = tarfile.LNKTYPE, hardlink
    elif kind is not None:
        info.type = kind
    elif data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o777
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def cve_2025_4517(tar: tarfile.TarFile, dest: Path, links_only: bool = False) -> None:
    """CPython's own reproducer: symlinks to long folder names whose expansion exceeds PATH_MAX, so that
    ``os.path.realpath`` stops resolving; then a link up out of the destination, a hard link through it to a file
    outside, and a write through the hard link."""
    steps = "abcdefghijklmnop"
    component = "d" * ((4096 - len(str(dest)) - 1) // (len(steps) + 1))
    path = ""
    for step in steps:
        add(tar, os.path.join(path, component))
        add(tar, os.path.join(path, step), symlink=component)
        path = os.path.join(path, component)
    linkpath = os.path.join(*steps, "l" * 254)
    if links_only:  # the same escape without writing through a link: "escape" resolves above the destination
        add(tar, os.path.join(path, "l" * 254), symlink=os.path.join(*[".."] * len(steps)))
        add(tar, "escape", symlink=os.path.join(linkpath, ".."))
        return
    add(tar, linkpath, symlink=os.path.join(*[".."] * len(steps)))
    add(tar, "escape", symlink=os.path.join(linkpath, ".."))
    add(tar, "flaglink", hardlink=os.path.join("escape", "flag"))
    add(tar, "flaglink", data=b"overwrite")
    add(tar, "escape/newfile", data=b"new")


TAR_CASES = {
    # name: (builder(tar, dest), expected words in the message)
    "cve-2025-4517 symlink chain past PATH_MAX": (cve_2025_4517, "refusing entry"),
    "cve-2025-4517 links only": (lambda t, d: cve_2025_4517(t, d, links_only=True), "outside the destination"),
    "absolute path": (lambda t, d: add(t, "/tmp/segkit-abs-evil", data=b"x"), "absolute path"),
    "dot-dot path": (lambda t, d: add(t, "../flag", data=b"x"), "escapes the destination"),
    "nested dot-dot path": (lambda t, d: add(t, "images/../../flag", data=b"x"), "escapes the destination"),
    "symlink out (relative)": (lambda t, d: add(t, "images/up", symlink="../../flag"), "outside the destination"),
    "symlink out (absolute)": (lambda t, d: add(t, "passwd", symlink="/etc/passwd"), "absolute"),
    "symlink to a folder then a file through it": (
        lambda t, d: (add(t, "images"), add(t, "images/out", symlink=".."), add(t, "images/out/x", data=b"x")),
        "written through the symlink 'images/out'"),
    "write through an inside symlink": (
        lambda t, d: (add(t, "sub"), add(t, "link", symlink="sub"), add(t, "link/file", data=b"x")),
        "written through the symlink 'link'"),
    "symlink chain that climbs out": (
        lambda t, d: (add(t, "a"), add(t, "a/b"), add(t, "a/b/up", symlink="../.."), add(t, "a/x", symlink="b/up/.."),),
        "outside the destination"),
    "symlink loop": (lambda t, d: (add(t, "p", symlink="q/x"), add(t, "q", symlink="p/y")), "more than 40 links"),
    "hard link to an absolute path": (lambda t, d: add(t, "h", hardlink="/etc/passwd"), "absolute path"),
    "hard link out with dot-dot": (lambda t, d: add(t, "h", hardlink="../flag"), "escapes the destination"),
    "hard link to a name not in the archive": (lambda t, d: add(t, "h", hardlink="missing.txt"),
                                               "not a regular file that comes earlier"),
    "hard link to a symlink": (lambda t, d: (add(t, "s", symlink="train.txt"), add(t, "h", hardlink="s")),
                               "not a regular file that comes earlier"),
    "symlink replaced by a file of the same name": (
        lambda t, d: (add(t, "x", symlink="train.txt"), add(t, "x", data=b"x")), "the name appears twice"),
    "file used as a folder": (lambda t, d: (add(t, "f", data=b"x"), add(t, "f/g", data=b"y")), "is a file"),
    "fifo": (lambda t, d: add(t, "pipe", kind=tarfile.FIFOTYPE), "special file"),
    "character device": (lambda t, d: add(t, "null", kind=tarfile.CHRTYPE), "special file"),
}


@pytest.fixture
def layout(tmp_path):
    """``work/`` (the --root) beside a ``flag`` file that an escaping archive would overwrite."""
    work = tmp_path / "work"
    work.mkdir()
    flag = tmp_path / "flag"
    flag.write_bytes(b"original")
    (work / "flag").write_bytes(b"original")
    return tmp_path, work


def assert_nothing_written(tmp_path: Path, work: Path) -> None:
    assert sorted(p.name for p in work.iterdir()) == ["flag"]
    assert (tmp_path / "flag").read_bytes() == b"original" and (work / "flag").read_bytes() == b"original"
    assert not Path("/tmp/segkit-abs-evil").exists()


@pytest.mark.parametrize("case", list(TAR_CASES))
def test_escaping_tar_is_refused_before_writing(layout, case):
    tmp_path, work = layout
    build, words = TAR_CASES[case]
    dest = work / "data" / "ds"
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "train.txt", data=b"a\n")
        build(tar, dest)
    with pytest.raises(DownloadError) as info:
        safe_extract(archive, dest)
    assert words in str(info.value) and str(archive) in str(info.value)
    assert "refusing" in str(info.value)
    assert not (work / "data").exists()
    assert_nothing_written(tmp_path, work)


def test_symlink_out_only_after_stripping_the_top_folder(layout):
    """``Top/link -> ../flag`` stays inside the archive but points out of ``dest`` once ``Top/`` is stripped."""
    tmp_path, work = layout
    archive = tmp_path / "wrapped.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add(tar, "Top")
        add(tar, "Top/train.txt", data=b"a\n")
        add(tar, "Top/link", symlink="../flag")
    with pytest.raises(DownloadError, match="refusing symlink 'Top/link'.*outside the destination"):
        safe_extract(archive, work / "ds", strip_single_dir=True)
    assert_nothing_written(tmp_path, work)
    # unstripped, the same link stays inside the destination and is kept
    dest = safe_extract(archive, work / "kept")
    assert os.readlink(dest / "Top" / "link") == "../flag"


@pytest.mark.parametrize("entry, words", [("../flag", "escapes the destination"), ("/tmp/segkit-abs-evil",
                                          "absolute path"), ("a/../../flag", "escapes the destination"),
                                          ("C:/windows/evil", "absolute path")])
def test_escaping_zip_is_refused(layout, entry, words):
    tmp_path, work = layout
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.txt", b"a\n")
        zf.writestr(zipfile.ZipInfo(entry), b"gotcha")
    with pytest.raises(DownloadError, match=words):
        safe_extract(archive, work / "ds")
    assert_nothing_written(tmp_path, work)


def test_zip_symlink_entry_is_refused(layout):
    tmp_path, work = layout
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("passwd")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="refusing symlink entry 'passwd'"):
        safe_extract(archive, work / "ds")
    assert_nothing_written(tmp_path, work)


@pytest.fixture
def no_writing(monkeypatch):
    """Extraction must be refused before its temporary folder is even made."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the archive was opened for writing before it was refused")

    monkeypatch.setattr(archive_mod, "make_temp_dir", forbidden)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_decompression_bomb_is_refused_from_declared_sizes(layout, monkeypatch, no_writing, kind):
    tmp_path, work = layout
    monkeypatch.setattr(archive_mod, "BOMB_MIN_BYTES", 1 << 20)
    zeros = bytes(8 << 20)  # 8 MB of zeros pack into a few kB
    archive = tmp_path / f"bomb.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros.bin", zeros)
    else:
        with tarfile.open(archive, "w:gz") as tar:
            add(tar, "zeros.bin", data=zeros)
    assert archive.stat().st_size < len(zeros) / 200
    with pytest.raises(DownloadError, match="decompression bomb.*8.4 MB.*nothing was written"):
        safe_extract(archive, work / "ds")
    assert_nothing_written(tmp_path, work)


def test_archive_larger_than_the_free_space_is_refused(layout, monkeypatch, no_writing):
    tmp_path, work = layout
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.bin", bytes(1000))
    usage = archive_mod.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(archive_mod.shutil, "disk_usage", lambda p: usage._replace(free=10 << 20))
    with pytest.raises(DownloadError, match="need 0.0 MB but only 10.5 MB is free"):
        safe_extract(archive, work / "ds")
    assert_nothing_written(tmp_path, work)


def test_zip_member_larger_than_declared_is_cut_and_refused(layout):
    """A forged central directory (declared 10 bytes, 1 MB inside): never inflated past 10 bytes; CRC fails."""
    tmp_path, work = layout
    archive = tmp_path / "forged.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(1 << 20))
    raw = bytearray(archive.read_bytes())
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24:central + 28] = (10).to_bytes(4, "little")  # uncompressed size in the central directory
    archive.write_bytes(bytes(raw))
    with pytest.raises(DownloadError, match="cannot extract .*CRC"):
        safe_extract(archive, work / "ds")
    assert_nothing_written(tmp_path, work)


def test_extracted_tree_has_the_umask_modes(tmp_path):
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images/a.png", b"img")
    old = os.umask(0o022)
    try:
        dest = safe_extract(archive, tmp_path / "ds")
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "images").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "images" / "a.png").stat().st_mode) == 0o644


def test_inside_links_and_hard_links_still_work(tmp_path):
    archive = tmp_path / "ok.tar"
    with tarfile.open(archive, "w") as tar:
        add(tar, "Top")
        add(tar, "Top/images")
        add(tar, "Top/images/a.png", data=b"img")
        add(tar, "Top/latest", symlink="images/a.png")
        add(tar, "Top/copy.png", hardlink="Top/images/a.png")
    dest = safe_extract(archive, tmp_path / "ds", strip_single_dir=True)
    assert (dest / "latest").read_bytes() == b"img" and (dest / "copy.png").read_bytes() == b"img"
    assert os.readlink(dest / "latest") == "images/a.png"
