"""VOCDataset (incl. the SBD ``trainaug`` split), PascalContextDataset and PascalContext59Dataset on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segkit import DATASETS
from segkit.data.datasets.voc import PASCAL_CONTEXT_PALETTE, VOCDataset
from segkit.errors import DataError
from segkit.registry import PREPARERS

from .layouts import write_pascal_context, write_voc

TRAIN_PIPELINE = [
    {"type": "Resize", "output_size": [64, 16], "keep_ratio": True, "scale_range": [0.75, 1.25]},
    {"type": "RandomCrop", "crop_size": [16, 16], "one_category_max_ratio": 0.75},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "PhotoMetricDistortion"},
    {"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    {"type": "ToTensor"},
    {"type": "Padding", "output_size": [16, 16], "data_type": "tensor"},
]
TEST_PIPELINE = [
    {"type": "Resize", "output_size": [40, 12], "keep_ratio": True, "scale_range": None},
    {"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    {"type": "ToTensor"},
]


@pytest.fixture
def voc(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    return root, write_voc(root, VOCDataset.palette)


def test_voc_palette_pngs_with_void_borders(voc):
    root, raws = voc
    dataset = DATASETS.build({"type": "VOCDataset", "rootdir": str(root), "set": "val", "data_pipelines": []})
    assert len(dataset) == 1 and dataset.num_classes == 21 and len(dataset.palette) == 21
    assert dataset.classnames[0] == "__background__" and dataset.classnames[20] == "tvmonitor"
    assert dataset.palette[1] == (128, 0, 0) and dataset.palette[20] == (0, 64, 128)
    sample = dataset[0]
    raw = raws["2007_000033"]
    assert sample["id"] == "2007_000033" and sample["image"].shape == (24, 32, 3)
    assert sample["seg_target"].dtype == np.int64 and (raw == 255).any()
    np.testing.assert_array_equal(sample["seg_target"], np.where(raw == 255, -100, raw))


def test_voc_trainaug_reads_sbd_grayscale_masks_and_official_palette_masks(voc):
    root, raws = voc
    dataset = VOCDataset(str(root), set="trainaug")
    assert dataset.imageids == ["2007_000032", "2007_000039", "2008_000002"]
    for index, imageid in enumerate(dataset.imageids):
        expected = np.where(raws[imageid] == 255, -100, raws[imageid])
        np.testing.assert_array_equal(dataset[index]["seg_target"], expected)


def test_void_follows_the_dataset_ignore_index(voc):
    root, raws = voc
    dataset = VOCDataset(str(root), set="val", ignore_index=255)
    np.testing.assert_array_equal(dataset[0]["seg_target"], raws["2007_000033"])


def test_train_and_test_pipelines_give_tensors_of_the_right_shapes(voc):
    root, raws = voc
    train = VOCDataset(str(root), set="train", data_pipelines=TRAIN_PIPELINE, seed=3)
    sample = train[1]
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 16, 16)
    assert sample["seg_target"].dtype == torch.int64 and sample["seg_target"].shape == (16, 16)
    allowed = set(np.unique(raws["2007_000039"]).tolist()) - {255} | {-100}
    assert set(sample["seg_target"].unique().tolist()) <= allowed
    test = VOCDataset(str(root), set="val", mode="TEST", data_pipelines=TEST_PIPELINE)
    sample = test[0]
    assert sample["image"].shape == (3, 12, 16)  # 24x32 scaled by min(40 / 32, 12 / 24)
    assert sample["seg_target"].dtype == torch.int64 and sample["seg_target"].shape == (24, 32)


def test_missing_split_file_is_named_with_the_preparer(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    hint = "; run `segkit prepare-data voc`" if "voc" in PREPARERS else ""
    with pytest.raises(
        DataError, match=r"split file not found: .*ImageSets/Segmentation/trainaug\.txt"
    ) as info:
        VOCDataset(str(tmp_path), set="trainaug")
    assert str(info.value).endswith("trainaug.txt" + hint)


def test_pascal_context_60_keeps_background_and_voids_255(tmp_path):
    raws = write_pascal_context(tmp_path)
    dataset = DATASETS.build({"type": "PascalContextDataset", "rootdir": str(tmp_path), "set": "train"})
    assert dataset.num_classes == 60 and len(dataset) == 2 and dataset.palette == PASCAL_CONTEXT_PALETTE
    assert dataset.classnames[0] == "__background__" and dataset.classnames[59] == "wood"
    for index, imageid in enumerate(["2008_000008", "2008_000015"]):
        raw = raws[imageid]
        np.testing.assert_array_equal(dataset[index]["seg_target"], np.where(raw == 255, -100, raw))


def test_pascal_context_59_voids_background_and_shifts_classes(tmp_path):
    raws = write_pascal_context(tmp_path)
    dataset = DATASETS.build({"type": "PascalContext59Dataset", "rootdir": str(tmp_path), "set": "val"})
    assert (
        dataset.num_classes == 59
        and dataset.classnames[0] == "aeroplane"
        and dataset.classnames[58] == "wood"
    )
    assert dataset.palette == PASCAL_CONTEXT_PALETTE[1:]
    raw = raws["2008_000019"]
    expected = np.where((raw == 0) | (raw == 255), -100, raw - 1)
    seg = dataset[0]["seg_target"]
    np.testing.assert_array_equal(seg, expected)
    assert seg.max() == 58 and seg[raw == 1].tolist() == [0] * int((raw == 1).sum())
