"""COCOStuff10kDataset (.mat), COCOStuffDataset (164k PNGs) and COCOVOCSUBDataset (instance JSON)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from segkit import DATASETS
from segkit.data.datasets.coco import (
    COCOStuff10kDataset,
    COCOStuffDataset,
    COCOVOCSUBDataset,
    decode_rle,
    rle_counts,
)
from segkit.errors import DataError

from .layouts import (
    box_mask,
    rle_runs,
    rle_string,
    write_coco_instances,
    write_cocostuff10k,
    write_cocostuff164k,
)


# --------------------------------------------------------------------------- COCO-Stuff 10k
def test_cocostuff10k_reads_mat_labels_one_based(tmp_path):
    raws = write_cocostuff10k(tmp_path)
    dataset = DATASETS.build({"type": "COCOStuff10kDataset", "rootdir": str(tmp_path), "set": "train"})
    assert dataset.num_classes == 182 and len(dataset.classnames) == 182 == len(set(dataset.classnames))
    assert dataset.classnames[0] == "person" and dataset.classnames[181] == "wood"
    sample = dataset[0]
    raw = raws["COCO_train2014_000000000077"]
    assert sample["id"] == "COCO_train2014_000000000077" and sample["seg_target"].dtype == np.int64
    np.testing.assert_array_equal(sample["seg_target"], np.where(raw == 0, -100, raw - 1))
    assert {-100, 0, 181} <= set(sample["seg_target"].ravel().tolist())


def test_cocostuff10k_test_split_through_a_pipeline(tmp_path):
    write_cocostuff10k(tmp_path)
    pipeline = [{"type": "Resize", "output_size": [12, 12], "keep_ratio": False, "scale_range": None},
                {"type": "ToTensor"}]  # fmt: skip
    sample = COCOStuff10kDataset(str(tmp_path), set="test", data_pipelines=pipeline)[0]
    assert sample["image"].shape == (3, 12, 12) and sample["image"].dtype == torch.float32
    assert sample["seg_target"].shape == (12, 12) and sample["seg_target"].dtype == torch.int64


def test_cocostuff10k_without_scipy_says_what_to_install(tmp_path, monkeypatch):
    write_cocostuff10k(tmp_path)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # makes `from scipy.io import ...` fail
    with pytest.raises(DataError, match="with scipy, which is not installed: pip install scipy"):
        COCOStuff10kDataset(str(tmp_path))


def test_cocostuff10k_mat_without_s_is_reported(tmp_path):
    from scipy.io import savemat

    write_cocostuff10k(tmp_path)
    savemat(str(tmp_path / "annotations" / "COCO_train2014_000000000077.mat"), {"L": np.zeros((2, 2))})
    with pytest.raises(DataError, match=r"000077\.mat: no label map 'S' .*L"):
        COCOStuff10kDataset(str(tmp_path))[0]


# --------------------------------------------------------------------------- COCO-Stuff 164k
@pytest.mark.parametrize("json_file", [True, False])
def test_cocostuff164k_keeps_zero_based_ids_and_voids_255(tmp_path, json_file):
    raws = write_cocostuff164k(tmp_path, json_file=json_file)
    dataset = COCOStuffDataset(str(tmp_path), set="val")
    assert dataset.num_classes == 182 and dataset.imageids == ["000000000139", "000000000285"]
    for index, stem in enumerate(dataset.imageids):
        raw = raws[stem]
        seg = dataset[index]["seg_target"]
        np.testing.assert_array_equal(seg, np.where(raw == 255, -100, raw))
    assert 0 in seg and 181 in seg  # class 0 (person) is a class, not void


# --------------------------------------------------------------------------- COCO instances -> VOC
def test_rle_strings_decode_like_pycocotools():
    assert rle_counts("123") == [1, 2, 3]
    assert rle_counts("5:5I") == [5, 10, 5, 3]  # the 4th run is stored as a difference to the 2nd: -7 -> "I"
    assert rle_counts("X1") == [40]  # two 5-bit groups
    runs = [3, 40, 1, 70, 6]
    assert rle_counts(rle_string(runs)) == runs
    mask = decode_rle([1, 2, 3], 2, 3, "x")  # column-major: 0 | 1 1 | 0 0 0
    np.testing.assert_array_equal(mask, [[False, True, False], [True, False, False]])
    random_mask = np.random.default_rng(0).random((7, 5)) < 0.4
    np.testing.assert_array_equal(decode_rle(rle_string(rle_runs(random_mask)), 7, 5, "x"), random_mask)
    with pytest.raises(DataError, match="cover 5 pixels"):
        decode_rle([2, 3], 2, 3, "x")


def test_coco_voc_subset_rasterises_polygons_and_rles_first_come(tmp_path):
    expected = write_coco_instances(tmp_path)
    dataset = DATASETS.build({"type": "COCOVOCSUBDataset", "rootdir": str(tmp_path), "set": "train"})
    assert dataset.imageids == ["1"]  # images 2 (100 px of person), 3 (non-VOC only), 4 (empty) are skipped
    assert dataset.num_classes == 21 and dataset.classnames[15] == "person" and dataset.classnames[20] == "tv"
    sample = dataset[0]
    assert sample["id"] == "1" and sample["image"].shape == (48, 64, 3)
    np.testing.assert_array_equal(sample["seg_target"], expected["1"])
    seg = sample["seg_target"]
    assert seg[30, 25] == 15 and seg[30, 45] == 12  # the person (first) keeps the overlap with the dog
    assert seg[45, 5] == 0  # the traffic light is not a VOC class


def test_coco_voc_subset_threshold_counts_foreground_pixels(tmp_path):
    write_coco_instances(tmp_path)

    class Lenient(COCOVOCSUBDataset):
        min_foreground_pixels = 99

    assert Lenient(str(tmp_path)).imageids == ["1", "2"]
    np.testing.assert_array_equal(
        Lenient(str(tmp_path))[1]["seg_target"], np.where(box_mask(48, 64, 5, 5, 14, 14), 15, 0)
    )


def test_coco_missing_annotation_file_is_named(tmp_path):
    (tmp_path / "train2017").mkdir()
    with pytest.raises(DataError, match=r"annotation file not found: .*instances_train2017\.json"):
        COCOVOCSUBDataset(str(tmp_path))
