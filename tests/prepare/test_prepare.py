"""prepare_dataset() and the ``synthetic`` preparer: generated, from an archive, and refused layouts."""

from __future__ import annotations

import functools
import tarfile
import zipfile
from pathlib import Path

import pytest

import segkit.data.datasets.synthetic as synthetic_data
from segkit.data.prepare import DatasetPreparer, get_preparer, prepare_dataset
from segkit.errors import DataError, DownloadError, SegkitError
from segkit.registry import PREPARERS

SMALL = {"num_train": 5, "num_val": 2, "image_size": 32}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    return synthetic_data.write_synthetic_dataset(tmp_path_factory.mktemp("src") / "synthetic", **SMALL)


def pack(source: Path, archive: Path, wrap: str | None = None, skip: str | None = None) -> Path:
    """Archive the files of ``source`` (optionally under one directory ``wrap``, leaving out ``skip``)."""
    files = [p for p in sorted(source.rglob("*")) if p.is_file() and p.relative_to(source).as_posix() != skip]
    names = [(p, f"{wrap}/{p.relative_to(source).as_posix()}" if wrap else p.relative_to(source).as_posix())
             for p in files]
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for path, name in names:
                zf.write(path, name)
    else:
        with tarfile.open(archive, "w:gz") as tar:
            for path, name in names:
                tar.add(path, name)
    return archive


def test_synthetic_preparer_is_registered():
    preparer = get_preparer("Synthetic")  # case-insensitive, as SSSegmentation's script
    assert isinstance(preparer, DatasetPreparer)
    assert "synthetic" in PREPARERS.names() and preparer.sources == []
    assert preparer.size and preparer.license and preparer.description


def test_unknown_dataset_suggests_the_closest_name():
    with pytest.raises(SegkitError, match="unknown dataset 'synthetc'; did you mean 'synthetic'"):
        prepare_dataset("synthetc", "data")


def test_generates_the_dataset_under_root(tmp_path, monkeypatch):
    small_writer = functools.partial(synthetic_data.write_synthetic_dataset, **SMALL)
    monkeypatch.setattr(synthetic_data, "write_synthetic_dataset", small_writer)
    summary = prepare_dataset("synthetic", tmp_path)
    assert summary == {"name": "synthetic", "root": str(tmp_path / "synthetic"), "source": "generated",
                       "images": 7, "masks": 7, "train": 5, "val": 2}
    assert prepare_dataset("synthetic", tmp_path) == summary  # already there: nothing rewritten


@pytest.mark.parametrize("name,wrap", [("synthetic.tar.gz", "synthetic"), ("synthetic.zip", None)])
def test_from_archive(tmp_path, small_dataset, name, wrap):
    archive = pack(small_dataset, tmp_path / name, wrap=wrap)
    summary = prepare_dataset("synthetic", tmp_path / "data", from_archive=archive)
    root = tmp_path / "data" / "synthetic"
    assert summary["root"] == str(root) and summary["source"] == str(archive)
    assert (summary["train"], summary["val"], summary["images"], summary["masks"]) == (5, 2, 7, 7)
    assert (root / "images" / "train" / "train_00000.png").is_file()


@pytest.mark.parametrize("skip,message", [
    ("annotations/train/train_00003.png", "5 images but 4 masks; without a mask: train_00003"),
    ("val.txt", "missing val.txt"),
    ("images/train/train_00001.png", "4 images but 5 masks"),
])
def test_bad_archive_layout_is_refused_and_leaves_nothing(tmp_path, small_dataset, skip, message):
    archive = pack(small_dataset, tmp_path / "synthetic.tar.gz", wrap="synthetic", skip=skip)
    with pytest.raises(DataError, match=message):
        prepare_dataset("synthetic", tmp_path / "data", from_archive=archive)
    assert list((tmp_path / "data").iterdir()) == []


def test_missing_archive(tmp_path):
    with pytest.raises(DownloadError, match="no such file"):
        prepare_dataset("synthetic", tmp_path, from_archive=tmp_path / "nope.tar.gz")
