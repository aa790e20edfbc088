"""ADE20kDataset on the ADEChallengeData2016 layout: 0 is void, 1..150 become 0..149."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit import DATASETS
from segkit.data.datasets.ade20k import ADE20kDataset
from segkit.errors import DataError, RecipeError

from .layouts import write_ade20k


def expected(raw: np.ndarray) -> np.ndarray:
    return np.where(raw == 0, -100, raw - 1)


def test_labels_are_shifted_and_zero_is_void(tmp_path):
    raws = write_ade20k(tmp_path)
    dataset = DATASETS.build({"type": "ADE20kDataset", "rootdir": str(tmp_path), "set": "train"})
    assert dataset.imageids == ["ADE_train_00000001", "ADE_train_00000002"]
    assert dataset.num_classes == 150 and len(dataset.classnames) == 150 and len(dataset.palette) == 150
    assert dataset.classnames[0] == "wall" and dataset.classnames[149] == "flag"
    assert dataset.palette[0] == (120, 120, 120) and dataset.palette[149] == (92, 0, 255)
    for index, imageid in enumerate(dataset.imageids):
        seg = dataset[index]["seg_target"]
        assert seg.dtype == np.int64
        np.testing.assert_array_equal(seg, expected(raws[imageid]))
    assert -100 in seg and 149 in seg and 0 in seg


def test_val_reads_validation_folders_and_test_mode_keeps_full_resolution(tmp_path):
    raws = write_ade20k(tmp_path)
    pipeline = [{"type": "Resize", "output_size": [10, 10], "keep_ratio": False, "scale_range": None},
                {"type": "ToTensor"}]  # fmt: skip
    dataset = ADE20kDataset(str(tmp_path), set="val", mode="TEST", data_pipelines=pipeline)
    sample = dataset[0]
    assert sample["id"] == "ADE_val_00000001" and sample["image"].shape == (3, 10, 10)
    assert sample["seg_target"].dtype == torch.int64 and sample["seg_target"].shape == (24, 20)
    np.testing.assert_array_equal(sample["seg_target"].numpy(), expected(raws["ADE_val_00000001"]))


def test_without_split_files_the_image_folder_is_listed(tmp_path):
    write_ade20k(tmp_path, split_files=False)  # the official zip has no id lists
    assert ADE20kDataset(str(tmp_path), set="train").imageids == ["ADE_train_00000001", "ADE_train_00000002"]


def test_unknown_set_and_missing_data_are_reported(tmp_path):
    with pytest.raises(RecipeError, match=r"set: .*'train', 'val' or 'test'"):
        DATASETS.build({"type": "ADE20kDataset", "rootdir": str(tmp_path), "set": "training"})
    with pytest.raises(DataError, match="image directory not found: .*ADEChallengeData2016/images/training"):
        ADE20kDataset(str(tmp_path))
