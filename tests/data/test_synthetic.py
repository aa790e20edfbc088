"""The synthetic dataset: deterministic bytes, layout, classes, regeneration rules."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from segkit.data import SyntheticDataset, build_dataset, write_synthetic_dataset
from segkit.errors import DataError

SMALL = {"num_train": 12, "num_val": 4, "image_size": 64}


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("syn") / "synthetic", **SMALL)


def test_layout(synthetic_root):
    root = synthetic_root
    for split, count in (("train", 12), ("val", 4)):
        ids = (root / f"{split}.txt").read_text().split()
        assert len(ids) == count and len(set(ids)) == count
        for imageid in ids:
            image = cv2.imread(str(root / "images" / split / f"{imageid}.png"), cv2.IMREAD_UNCHANGED)
            label = cv2.imread(str(root / "annotations" / split / f"{imageid}.png"), cv2.IMREAD_UNCHANGED)
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8
            assert label.shape == (64, 64) and label.dtype == np.uint8 and label.max() <= 4
    meta = json.loads((root / "meta.json").read_text())
    assert meta["num_train"] == 12 and meta["image_size"] == 64 and "version" in meta
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind


def test_same_bytes_twice(synthetic_root, tmp_path):
    again = write_synthetic_dataset(tmp_path / "again", **SMALL)
    assert files(again) == files(synthetic_root)
    other_seed = write_synthetic_dataset(tmp_path / "other", **SMALL, seed=1)
    assert files(other_seed)["images/train/train_00000.png"] != files(again)["images/train/train_00000.png"]


def test_classes_present_and_not_one_colour_per_class(synthetic_root):
    dataset = SyntheticDataset(str(synthetic_root), **SMALL)
    assert dataset.num_classes == 5 and dataset.classnames[0] == "background" and len(dataset.palette) == 5
    labels = np.concatenate([dataset[i]["seg_target"].ravel() for i in range(len(dataset))])
    images = np.concatenate([dataset[i]["image"].reshape(-1, 3) for i in range(len(dataset))])
    counts = np.bincount(labels, minlength=5)
    assert (counts > 0).all() and counts[0] < 0.9 * labels.size  # every class, shapes cover >10%
    for label in range(5):
        assert len(np.unique(images[labels == label], axis=0)) > 50  # textured, not a flat colour
    means = np.stack([images[labels == label].mean(0) for label in range(5)])
    distances = np.abs(means[:, None] - means[None]).sum(-1)
    assert distances[~np.eye(5, dtype=bool)].min() > 30  # classes differ in colour


def test_reuses_complete_data_and_regenerates_on_change(tmp_path):
    root = write_synthetic_dataset(tmp_path / "s", num_train=3, num_val=2, image_size=32)
    stamp = (root / "meta.json").stat().st_mtime_ns
    write_synthetic_dataset(root, num_train=3, num_val=2, image_size=32)
    assert (root / "meta.json").stat().st_mtime_ns == stamp
    write_synthetic_dataset(root, num_train=5, num_val=2, image_size=32)
    assert len((root / "train.txt").read_text().split()) == 5
    assert len(list((root / "images" / "train").iterdir())) == 5


def test_never_replaces_foreign_directories(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    with pytest.raises(DataError, match="not a segkit synthetic dataset"):
        write_synthetic_dataset(tmp_path / "mine", num_train=2, num_val=1, image_size=32)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"


def test_dataset_uses_prepared_data_without_meta_as_is(synthetic_root, tmp_path):
    import shutil

    copy = tmp_path / "extracted"
    shutil.copytree(synthetic_root, copy)
    (copy / "meta.json").unlink()
    dataset = SyntheticDataset(str(copy), num_train=99)  # other parameters, but not ours to replace
    assert len(dataset) == 12 and not (copy / "meta.json").exists()


def test_unwritable_root_is_a_data_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="cannot write the synthetic dataset to .*file/sub"):
        SyntheticDataset(str(tmp_path / "file" / "sub"))


def test_missing_without_auto_generate_says_how_to_prepare(tmp_path):
    with pytest.raises(DataError, match=r"not found: .*absent.*segkit prepare-data synthetic"):
        SyntheticDataset(str(tmp_path / "absent"), auto_generate=False)


def test_built_from_a_recipe_table_generates_on_first_use(tmp_path):
    cfg = {
        "type": "SyntheticDataset",
        "rootdir": str(tmp_path / "auto"),
        "num_train": 4,
        "num_val": 2,
        "image_size": 32,
        "train": {"set": "train", "data_pipelines": [{"type": "RandomFlip", "prob": 0.5}]},
        "test": {"set": "val", "data_pipelines": []},
    }
    train, test = build_dataset(cfg, "TRAIN"), build_dataset(cfg, "TEST")
    assert (len(train), len(test)) == (4, 2) and train[0]["image"].shape == (32, 32, 3)
    assert test[1]["seg_target"].shape == (32, 32)
