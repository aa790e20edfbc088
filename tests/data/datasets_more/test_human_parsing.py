"""LIP, CIHP and ATR: layouts, ids, labels as stored, flip pairs and pipeline outputs."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.data.datasets.atr import ATRDataset
from segkit.data.datasets.cihp import CIHPDataset
from segkit.data.datasets.lip import LIPDataset
from segkit.errors import DataError

from .layouts import assert_pipeline_outputs, blocks, make_atr, make_cihp, make_lip


def test_lip_reads_each_split_folder_with_labels_as_stored(tmp_path):
    train = {
        "100034_483681": blocks(12, 20, range(20), seed=1),
        "10005_205677": blocks(18, 14, range(20), seed=2),
    }
    make_lip(tmp_path, "train", train)
    make_lip(tmp_path, "test", {"99_1": blocks(10, 10, range(20), seed=3)})
    dataset = LIPDataset(str(tmp_path), set="train")
    assert dataset.imageids == list(train) and dataset.num_classes == 20
    for i, (imageid, mask) in enumerate(train.items()):
        sample = dataset[i]
        assert sample["id"] == imageid and sample["image"].shape == mask.shape + (3,)
        np.testing.assert_array_equal(sample["seg_target"], mask.astype(np.int64))
    test = LIPDataset(str(tmp_path), set="test")  # "test" lives in testing_images / testing_segmentations
    assert test.image_dir.endswith("testing_images") and test[0]["id"] == "99_1"


def test_lip_label_outside_the_classes_is_an_error_naming_the_file(tmp_path):
    make_lip(tmp_path, "val", {"a": np.array([[0, 19], [20, 255]], np.uint8)})
    with pytest.raises(DataError, match=r"val_segmentations/a\.png.*\[20, 255\]"):
        LIPDataset(str(tmp_path), set="val")[0]
    with pytest.raises(DataError, match="no set 'training'"):
        LIPDataset(str(tmp_path), set="training")


def test_cihp_pads_listed_numbers_to_seven_digits(tmp_path):
    masks = {6: blocks(12, 16, range(20), seed=4), 1234: blocks(16, 12, range(20), seed=5)}
    make_cihp(tmp_path, "val", masks)
    dataset = CIHPDataset(str(tmp_path), set="val")
    assert dataset.imageids == ["0000006", "0001234"]
    assert dataset.classnames[10] == "torsoSkin" and len(dataset.classnames) == 20
    np.testing.assert_array_equal(dataset[1]["seg_target"], masks[1234].astype(np.int64))


def test_atr_layout_and_eighteen_classes(tmp_path):
    mask = blocks(12, 12, range(18), seed=6)
    make_atr(tmp_path, "train", {"997_1": mask})
    dataset = ATRDataset(str(tmp_path), set="train")
    assert dataset.num_classes == 18 and dataset.classnames[9:11] == ["leftShoe", "rightShoe"]
    np.testing.assert_array_equal(dataset[0]["seg_target"], mask.astype(np.int64))
    make_atr(tmp_path, "val", {"bad": np.full((4, 4), 18, np.uint8)})
    with pytest.raises(DataError, match=r"SegmentationClassAug/bad\.png.*\[18\]"):
        ATRDataset(str(tmp_path), set="val")[0]


@pytest.mark.parametrize(
    ("dataset_cls", "pairs"),
    [(LIPDataset, [(15, 14), (17, 16), (19, 18)]), (CIHPDataset, [(15, 14), (17, 16), (19, 18)]),
     (ATRDataset, [(9, 10), (12, 13), (14, 15)])],
)  # fmt: skip
def test_flip_pairs_swap_left_and_right_labels(tmp_path, dataset_cls, pairs):
    assert dataset_cls.fixed_seg_target_pairs == pairs
    right, left = pairs[0]
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :4] = right  # a "right" part on the left half
    {LIPDataset: make_lip, ATRDataset: make_atr}.get(dataset_cls, make_cihp)(
        tmp_path, "train", {7 if dataset_cls is CIHPDataset else "x": mask}
    )
    flip = [{"type": "RandomFlip", "prob": 1.0, "fixed_seg_target_pairs": dataset_cls.fixed_seg_target_pairs}]
    flipped = dataset_cls(str(tmp_path), data_pipelines=flip)[0]["seg_target"]
    expected = np.zeros((8, 8), np.int64)
    expected[:, 4:] = left  # mirrored, and now the left part
    np.testing.assert_array_equal(flipped, expected)


def test_pipeline_outputs(tmp_path):
    make_lip(tmp_path / "lip", "train", {"a": blocks(30, 22, range(20), seed=7)})
    assert_pipeline_outputs(LIPDataset, tmp_path / "lip")
    make_cihp(tmp_path / "cihp", "train", {3: blocks(22, 30, range(20), seed=8)})
    assert_pipeline_outputs(CIHPDataset, tmp_path / "cihp")
    make_atr(tmp_path / "atr", "train", {"b": blocks(26, 26, range(18), seed=9)})
    assert_pipeline_outputs(ATRDataset, tmp_path / "atr")
