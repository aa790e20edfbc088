"""Every dataset of this family is registered under SSSegmentation's name, with its classes, and builds from a recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit import DATASETS
from segkit.data import build_dataset
from segkit.data.datasets.base import voc_palette
from segkit.errors import RecipeError

from .layouts import TRAIN_PIPELINE, blocks, make_lip

CLASS_COUNTS = {
    "LIPDataset": 20, "CIHPDataset": 20, "ATRDataset": 18, "MHPv1Dataset": 19, "MHPv2Dataset": 59,
    "SuperviselyDataset": 2, "HRFDataset": 2, "DRIVEDataset": 2, "STAREDataset": 2, "ChaseDB1Dataset": 2,
    "SBUShadowDataset": 2, "VSPWDataset": 124, "DarkZurichDataset": 19, "NighttimeDrivingDataset": 19,
}  # fmt: skip
SSSEG_CFG_KEYS = {
    "rootdir", "set", "data_pipelines", "mode", "repeat_times", "ignore_index", "auto_correct_invalid_seg_target",
    "record_img2aug_pos_mapper", "eval_env", "seed",
}  # fmt: skip


@pytest.mark.parametrize(("name", "count"), CLASS_COUNTS.items())
def test_registered_with_classes_and_sssegmentation_cfg_keys(name, count):
    cls = DATASETS.get(name)
    assert cls.num_classes == count and len(cls.classnames) == count and len(cls.palette) == count
    assert len(set(cls.classnames)) == count
    assert set(DATASETS.parameters(name)) == SSSEG_CFG_KEYS


def test_palettes():
    human = DATASETS.get("LIPDataset").palette
    assert DATASETS.get("CIHPDataset").palette == human and human[:3] == [(0, 0, 0), (128, 0, 0), (255, 0, 0)]
    for name in ("ATRDataset", "MHPv1Dataset", "MHPv2Dataset", "VSPWDataset"):
        assert DATASETS.get(name).palette == voc_palette(CLASS_COUNTS[name])
    for name in ("SuperviselyDataset", "SBUShadowDataset", "DRIVEDataset", "HRFDataset"):
        assert DATASETS.get(name).palette == [(0, 0, 0), (255, 0, 0)]


def test_builds_from_a_recipe_table(tmp_path):
    make_lip(tmp_path, "train", {"a": blocks(30, 26, range(20))})
    cfg = {
        "type": "LIPDataset",
        "rootdir": str(tmp_path),
        "train": {"set": "train", "data_pipelines": TRAIN_PIPELINE, "repeat_times": 3},
    }
    dataset = build_dataset(cfg, "TRAIN", seed=5)
    assert len(dataset) == 3 and dataset.seed == 5
    assert dataset[2]["seg_target"].dtype == torch.int64
    with pytest.raises(RecipeError, match=r"dataset\.train\.set"):
        build_dataset({**cfg, "train": {"set": "training"}}, "TRAIN")
    np.testing.assert_array_equal(
        build_dataset({**cfg, "train": {}}, "TRAIN")[0]["seg_target"], blocks(30, 26, range(20))
    )
