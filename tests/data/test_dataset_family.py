"""One constructor for every fixed-layout dataset: ``DatasetFamily`` and its ``layout()`` hook."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from segkit import DATASETS
from segkit.data import build_dataset
from segkit.data.datasets.base import BaseDataset, DatasetFamily
from segkit.errors import DataError, RecipeError

from .datasets_more.layouts import CROP, TEST_PIPELINE, TRAIN_PIPELINE, blocks, make_atr, make_lip, make_vspw

FAMILY = sorted(
    name for name, cls in DATASETS.items() if isinstance(cls, type) and issubclass(cls, DatasetFamily)
)
COMMON = (
    "rootdir", "set", "data_pipelines", "mode", "repeat_times", "ignore_index", "auto_correct_invalid_seg_target",
    "record_img2aug_pos_mapper", "eval_env", "seed",
)  # fmt: skip
OWN_CONSTRUCTOR = {"SyntheticDataset"}  # extra arguments of its own, the common ones included


def test_the_family_covers_every_fixed_layout_dataset():
    expected = {
        "ADE20kDataset", "ATRDataset", "CIHPDataset", "COCOStuff10kDataset", "COCOStuffDataset",
        "COCOVOCSUBDataset", "ChaseDB1Dataset", "CityScapesDataset", "DRIVEDataset", "DarkZurichDataset",
        "HRFDataset", "LIPDataset", "MHPv1Dataset", "MHPv2Dataset", "NighttimeDrivingDataset",
        "PascalContext59Dataset", "PascalContextDataset", "SBUShadowDataset", "STAREDataset", "SuperviselyDataset",
        "SyntheticDataset", "VOCDataset", "VSPWDataset",
    }  # fmt: skip
    assert set(FAMILY) == expected
    for name in FAMILY:
        cls = DATASETS.get(name)
        below = cls.__mro__[: cls.__mro__.index(DatasetFamily)]
        written = [
            c.__name__ for c in below if "__init__" in c.__dict__ and not _generated(c.__dict__["__init__"])
        ]
        assert written == (["SyntheticDataset"] if name in OWN_CONSTRUCTOR else []), name
        assert cls.layout is not DatasetFamily.layout, name


def _generated(init) -> bool:
    """A constructor ``DatasetFamily`` derived for a subclass (narrowed ``set``, other defaults)."""
    return hasattr(init, "__signature__")


@pytest.mark.parametrize("name", FAMILY)
def test_family_signature_takes_the_common_arguments(name):
    params = DATASETS.parameters(name)
    if name in OWN_CONSTRUCTOR:
        assert set(COMMON) <= set(params)
    else:
        assert tuple(params) == COMMON
    kwargs = DATASETS.validate(
        {"type": name, "rootdir": "data", "record_img2aug_pos_mapper": "true", "eval_env": "server"}
    )
    assert kwargs["record_img2aug_pos_mapper"] is True and kwargs["eval_env"] == "server"
    with pytest.raises(RecipeError, match=r"dataset\.eval_env"):
        DATASETS.validate({"type": name, "rootdir": "data", "eval_env": "cloud"}, path="dataset")


def test_subclass_sets_and_defaults_shape_the_signature():
    lip = inspect.signature(DATASETS.get("LIPDataset").__init__).parameters
    assert lip["set"].default == "train" and lip["mode"].default == "TRAIN"
    dark = DATASETS.parameters("DarkZurichDataset")
    assert dark["set"].default == "val" and dark["mode"].default == "TEST"
    for name, bad_set in (
        ("SBUShadowDataset", "test"),
        ("DarkZurichDataset", "train"),
        ("ADE20kDataset", "x"),
    ):
        with pytest.raises(RecipeError, match=r"dataset\.set"):
            DATASETS.validate({"type": name, "rootdir": "data", "set": bad_set}, path="dataset")
    DATASETS.validate({"type": "VOCDataset", "rootdir": "data", "set": "trainaug"})  # any set: not restricted
    assert "image_dir" in DATASETS.parameters("BaseDataset")  # the explicit layout stays on BaseDataset


def test_record_img2aug_pos_mapper_from_a_recipe(tmp_path):
    original = blocks(30, 26, range(20))
    make_lip(tmp_path, "train", {"a": original})
    cfg = {
        "type": "LIPDataset",
        "rootdir": str(tmp_path),
        "record_img2aug_pos_mapper": True,
        "train": {"data_pipelines": TRAIN_PIPELINE},
        "test": {"set": "train", "data_pipelines": TEST_PIPELINE},
    }
    train = build_dataset(cfg, "TRAIN", seed=3)
    assert isinstance(train, DatasetFamily) and train.record_img2aug_pos_mapper
    sample = train[0]
    mapper = sample["img2aug_pos_mapper"]
    assert mapper.dtype == torch.int64 and mapper.shape == (CROP, CROP)
    inside = mapper.numpy() >= 0
    assert inside.any() and mapper.max() < 30 * 26
    rows, cols = np.divmod(mapper.numpy()[inside], 26)
    labels = sample["seg_target"].numpy()[inside]
    np.testing.assert_array_equal(labels, original[rows, cols])  # each output pixel traces back to its source
    test = build_dataset(cfg, "TEST")[0]
    assert tuple(test["img2aug_pos_mapper"].shape) == (20, 20) and test["seg_target"].shape == (30, 26)
    assert "img2aug_pos_mapper" not in build_dataset({**cfg, "record_img2aug_pos_mapper": False}, "TRAIN")[0]


def test_server_eval_env_reads_no_labels_in_any_family(tmp_path):
    make_atr(tmp_path / "atr", "val", {"a": blocks(12, 10, range(18))})
    make_vspw(
        tmp_path / "vspw", "val", {"v1": {"f1": blocks(12, 10, range(1, 125)), "f2": blocks(12, 10, [3])}}
    )
    for path in tmp_path.rglob("*.png"):
        path.unlink()  # ATR masks and VSPW masks (VSPW frames are .jpg)
    for cls, root in ((DATASETS.get("ATRDataset"), "atr"), (DATASETS.get("VSPWDataset"), "vspw")):
        dataset = cls(str(tmp_path / root), set="val", mode="TEST", eval_env="server", ignore_index=255)
        sample = dataset[0]
        assert sample["seg_target"].shape == (12, 10) and (sample["seg_target"] == 255).all()
        with pytest.raises(DataError, match="annotation not found"):
            cls(str(tmp_path / root), set="val", mode="TEST")[0]
    with pytest.raises(DataError, match="eval_env"):
        DATASETS.get("ATRDataset")(str(tmp_path / "atr"), set="val", eval_env="cloud")


def test_base_dataset_keeps_its_explicit_layout(tmp_path):
    make_atr(tmp_path, "train", {"a": blocks(12, 10, range(18))})
    data = BaseDataset(
        str(tmp_path), image_dir="JPEGImages", ann_dir="SegmentationClassAug", imageids=["a"], num_classes=18
    )
    assert data[0]["seg_target"].shape == (12, 10)
