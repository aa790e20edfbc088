"""MultipleDataset: parts with their own train/test tables and seg_target_remapper, built by build_dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit import DATASETS
from segkit.data import build_dataset
from segkit.data.datasets.voc import VOCDataset
from segkit.errors import RecipeError

from .layouts import write_ade20k, write_coco_instances, write_voc

CROP = [
    {"type": "Resize", "output_size": [64, 16], "keep_ratio": True, "scale_range": [0.75, 1.25]},
    {"type": "RandomCrop", "crop_size": [16, 16]},
    {"type": "ToTensor"},
    {"type": "Padding", "output_size": [16, 16], "data_type": "tensor"},
]


@pytest.fixture
def roots(tmp_path):
    voc_root, coco_root = tmp_path / "VOCdevkit" / "VOC2012", tmp_path / "COCO"
    voc_raws = write_voc(voc_root, VOCDataset.palette)
    coco_expected = write_coco_instances(coco_root)
    return voc_root, coco_root, voc_raws, coco_expected


def voc_coco_cfg(voc_root, coco_root, remapper=None) -> dict:
    """SSSegmentation's deeplabv3 mobilevit "voc-cocosubvoc" dataset table, in miniature."""
    identity = remapper or {i: i for i in range(21)}
    voc = {
        "type": "VOCDataset",
        "rootdir": str(voc_root),
        "seg_target_remapper": identity,
        "train": {"set": "trainaug", "data_pipelines": CROP},
        "test": {"set": "val", "data_pipelines": []},
    }
    coco = {"type": "COCOVOCSUBDataset", "rootdir": str(coco_root), "seg_target_remapper": identity,
            "train": {"set": "train", "data_pipelines": CROP}}  # fmt: skip
    return {"type": "MultipleDataset", "train": {"VOCDataset": voc, "COCOVOCSUBDataset": coco},
            "test": {"VOCDataset": voc}}  # fmt: skip


def test_voc_plus_coco_subset_through_build_dataset(roots):
    voc_root, coco_root, voc_raws, coco_expected = roots
    train = build_dataset(voc_coco_cfg(voc_root, coco_root), "TRAIN", seed=1)
    assert len(train) == 3 + 1 and train.num_classes == 21 and train.ignore_index == -100
    assert train.classnames[15] == "person" and len(train.palette) == 21
    for index in range(len(train)):
        sample = train[index]
        assert sample["image"].shape == (3, 16, 16) and sample["seg_target"].dtype == torch.int64
    assert train[3]["id"] == "1"  # the COCO image comes after the three VOC trainaug images
    test = build_dataset(voc_coco_cfg(voc_root, coco_root), "TEST")
    assert len(test) == 1 and test.mode == "TEST"
    raw = voc_raws["2007_000033"]
    np.testing.assert_array_equal(test[0]["seg_target"].numpy(), np.where(raw == 255, -100, raw))


def test_remapper_moves_labels_and_voids_unlisted_ones(roots, tmp_path):
    voc_root, coco_root, voc_raws, coco_expected = roots
    write_ade20k(tmp_path / "ADE20k")
    voc = {
        "type": "VOCDataset",
        "rootdir": str(voc_root),
        "set": "val",
        "seg_target_remapper": {"0": 0, "15": 1, "7": 2},
    }  # TOML keys are strings
    ade = {
        "type": "ADE20kDataset",
        "rootdir": str(tmp_path / "ADE20k"),
        "set": "val",
        "seg_target_remapper": {12: 1, 20: 3},
    }  # person, car; joint 3 = ADE's car
    cfg = {"type": "MultipleDataset", "train": {"voc": voc, "ade": ade}}  # fmt: skip
    dataset = build_dataset(cfg, "TRAIN")
    assert dataset.num_classes == 4
    assert dataset.classnames == ["__background__", "person, individual, someone, somebody, mortal, soul", "car",
                                  "car, auto, automobile, machine, motorcar"]  # fmt: skip
    raw = voc_raws["2007_000033"]
    expected = np.select([raw == 0, raw == 15, raw == 7], [0, 1, 2], default=-100)
    seg = dataset[0]["seg_target"]
    assert isinstance(seg, np.ndarray) and seg.dtype == np.int64
    np.testing.assert_array_equal(seg, expected)
    assert set(dataset[1]["seg_target"].ravel().tolist()) <= {-100, 1, 3}


def test_registry_build_takes_parts_directly_and_passes_epochs_on(roots):
    voc_root, coco_root, _, _ = roots
    part = {"type": "VOCDataset", "rootdir": str(voc_root), "set": "train", "data_pipelines": CROP,
            "seg_target_remapper": {i: i for i in range(21)}}  # fmt: skip
    dataset = DATASETS.build({"type": "MultipleDataset", "VOCDataset": part})
    assert len(dataset) == 2 and dataset.datasets[0].set == "train"
    first = dataset[0]["seg_target"]
    changed = False
    for epoch in range(1, 6):
        dataset.set_epoch(epoch)
        assert dataset.datasets[0].epoch == epoch
        changed |= not torch.equal(dataset[0]["seg_target"], first)
    assert changed
    with pytest.raises(IndexError):
        dataset[2]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"seg_target_remapper": None},
            r"dataset\.train\.VOCDataset\.seg_target_remapper: each part .* needs one",
        ),
        ({"seg_target_remapper": {}}, r"dataset\.train\.VOCDataset\.seg_target_remapper: expected a table"),
        ({"seg_target_remapper": {"a": 1}}, r"labels must be integers, got 'a' = 1"),
        (
            {"seg_target_remapper": {0: 0, 2: 2}},
            r"dataset\.train: no part maps a class to joint label\(s\) \[1\]",
        ),
        ({"seg_target_remapper": {0: 0, 21: 1}}, r"VOCDataset has no class 21"),
        ({"sett": "val"}, r"dataset\.train\.VOCDataset\.sett: VOCDataset takes no 'sett'"),
        ({"type": None}, r"dataset\.train\.VOCDataset: expected a dataset table with 'type'"),
    ],
)
def test_errors_name_the_part(roots, change, message):
    voc_root, coco_root, _, _ = roots
    cfg = voc_coco_cfg(voc_root, coco_root)
    part = {k: v for k, v in {**cfg["train"]["VOCDataset"], **change}.items() if v is not None}
    cfg["train"] = {"VOCDataset": part}
    with pytest.raises(RecipeError, match=message):
        build_dataset(cfg, "TRAIN")


def test_top_level_pipelines_are_refused(roots):
    voc_root, coco_root, _, _ = roots
    cfg = voc_coco_cfg(voc_root, coco_root)
    cfg["train"]["data_pipelines"] = CROP
    with pytest.raises(RecipeError, match="data_pipelines in each part"):
        build_dataset(cfg, "TRAIN")


def test_relative_part_rootdirs_resolve_against_the_top_level_rootdir(roots, tmp_path):
    part = {"type": "VOCDataset", "rootdir": "VOCdevkit/VOC2012", "set": "val", "seg_target_remapper": {0: 0}}
    dataset = build_dataset(
        {"type": "MultipleDataset", "rootdir": str(tmp_path), "test": {"voc": part}}, "TEST"
    )
    assert dataset.datasets[0].rootdir == str(tmp_path / "VOCdevkit" / "VOC2012") and len(dataset) == 1
    assert dataset.num_classes == 1 and set(dataset[0]["seg_target"].unique().tolist()) <= {-100, 0}
