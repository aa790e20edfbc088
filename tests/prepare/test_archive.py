"""safe_extract(): good archives land in place; escaping entries are refused before anything is written."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from segkit.data.prepare.archive import safe_extract
from segkit.errors import DownloadError

GOOD = {"images/train/a.png": b"image", "annotations/train/a.png": b"mask", "train.txt": b"a\n"}


def make_tar(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """A tar (gzip-compressed for .tar.gz/.tgz) with entries named exactly as given, links included."""
    mode = "w:gz" if path.name.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["ds.tar.gz", "ds.tgz", "ds.tar", "ds.zip"])
def test_good_archive_is_extracted_in_place(tmp_path, name):
    maker = make_zip if name.endswith(".zip") else make_tar
    archive = maker(tmp_path / name, GOOD)
    dest = safe_extract(archive, tmp_path / "out" / "ds")
    assert tree(dest) == GOOD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["ds"]  # no temporary sibling left


def test_single_top_level_directory_is_stripped_on_request(tmp_path):
    archive = make_tar(tmp_path / "wrapped.tar.gz", {f"Wrapped/{k}": v for k, v in GOOD.items()})
    assert tree(safe_extract(archive, tmp_path / "a")) == {f"Wrapped/{k}": v for k, v in GOOD.items()}
    assert tree(safe_extract(archive, tmp_path / "b", strip_single_dir=True)) == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "wrapped.tar.gz"]


ESCAPES = {
    "traversal": ("../evil", "escapes the destination"),
    "nested traversal": ("images/../../evil", "escapes the destination"),
    "absolute": ("/tmp/segkit-evil-absolute", "absolute path"),
}


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
@pytest.mark.parametrize("case", list(ESCAPES))
def test_escaping_entries_are_refused_and_nothing_is_written(tmp_path, kind, case):
    entry, reason = ESCAPES[case]
    work = tmp_path / "work"
    work.mkdir()
    maker = make_zip if kind == "zip" else make_tar
    archive = maker(tmp_path / f"bad.{kind}", {**GOOD, entry: b"gotcha"})
    with pytest.raises(DownloadError, match=reason) as info:
        safe_extract(archive, work / "out")
    assert entry in str(info.value)
    assert list(work.iterdir()) == []
    assert not (tmp_path / "evil").exists() and not Path("/tmp/segkit-evil-absolute").exists()


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd", "train/../../../x"])
def test_symlink_pointing_outside_is_refused(tmp_path, target):
    archive = make_tar(tmp_path / "link.tar.gz", GOOD, symlinks={"images/link": target})
    with pytest.raises(DownloadError, match="refusing symlink 'images/link'"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_symlink_inside_is_allowed(tmp_path):
    archive = make_tar(tmp_path / "link.tar", GOOD, symlinks={"images/latest": "train/a.png"})
    dest = safe_extract(archive, tmp_path / "out")
    assert (dest / "images" / "latest").read_bytes() == b"image"


def test_failed_check_and_corrupt_archive_leave_nothing(tmp_path):
    archive = make_tar(tmp_path / "ds.tar.gz", GOOD)

    def reject(root: Path) -> None:
        assert (root / "train.txt").is_file()
        raise DownloadError("layout check failed")

    work = tmp_path / "work"
    with pytest.raises(DownloadError, match="layout check failed"):
        safe_extract(archive, work / "out", check=reject)
    assert list(work.iterdir()) == []
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:60])
    with pytest.raises(DownloadError, match="truncated or corrupt"):
        safe_extract(truncated, work / "out")
    assert list(work.iterdir()) == []


def test_refuses_non_empty_destination_and_unknown_types(tmp_path):
    archive = make_zip(tmp_path / "ds.zip", GOOD)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(DownloadError, match="not empty"):
        safe_extract(archive, tmp_path / "taken")
    assert tree(tmp_path / "taken") == {"keep.txt": b"mine"}
    (tmp_path / "empty").mkdir()
    assert tree(safe_extract(archive, tmp_path / "empty")) == GOOD  # an empty directory is fine
    (tmp_path / "ds.7z").write_bytes(b"7z")
    with pytest.raises(DownloadError, match="unsupported archive type"):
        safe_extract(tmp_path / "ds.7z", tmp_path / "x")
