"""Two-class datasets: Supervisely (255 -> person), SBU Shadow (binarised), and the four retinal vessel sets."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.data.datasets.retinal import ChaseDB1Dataset, DRIVEDataset, HRFDataset, STAREDataset
from segkit.data.datasets.sbushadow import SBUShadowDataset
from segkit.data.datasets.supervisely import SuperviselyDataset
from segkit.errors import DataError

from .layouts import assert_pipeline_outputs, blocks, make_retinal, make_sbu, make_supervisely


def test_supervisely_maps_255_to_person(tmp_path):
    make_supervisely(tmp_path, "val", {"ds1_pexels-photo-1": np.array([[0, 255], [255, 0]], np.uint8)})
    dataset = SuperviselyDataset(str(tmp_path), set="val")
    assert dataset.classnames == ["__background__", "person"] and dataset.palette == [(0, 0, 0), (255, 0, 0)]
    np.testing.assert_array_equal(dataset[0]["seg_target"], [[0, 1], [1, 0]])
    make_supervisely(tmp_path, "train", {"odd": np.array([[0, 7]], np.uint8)})
    with pytest.raises(DataError, match=r"Anno-Person/train/odd\.png.*\[7\]"):
        SuperviselyDataset(str(tmp_path), set="train")[0]


def test_sbu_binarises_every_non_zero_value(tmp_path):
    make_sbu(tmp_path, "val", {"lssd9": np.array([[0, 3, 128], [255, 0, 1]], np.uint8)})
    make_sbu(tmp_path, "train", {"lssd1": np.zeros((2, 2), np.uint8)})
    dataset = SBUShadowDataset(str(tmp_path), set="val")
    assert dataset.image_dir.endswith("SBU-Test/ShadowImages")
    np.testing.assert_array_equal(dataset[0]["seg_target"], [[0, 1, 1], [1, 0, 1]])
    assert SBUShadowDataset(str(tmp_path)).image_dir.endswith("SBUTrain4KRecoveredSmall/ShadowImages")
    with pytest.raises(DataError, match="no set 'test'"):
        SBUShadowDataset(str(tmp_path), set="test")


RETINAL = [
    (HRFDataset, "HRF", "01_dr.png", "01_dr.png", "01_dr.png"),
    (DRIVEDataset, "DRIVE", "21_training.png", "21_training_manual1.png", "21_training"),
    (STAREDataset, "STARE", "im0001.png", "im0001.ah.png", "im0001"),
    (ChaseDB1Dataset, "CHASE_DB1", "Image_01L.png", "Image_01L_1stHO.png", "Image_01L"),
]


@pytest.mark.parametrize(("dataset_cls", "kind", "image_name", "ann_name", "sample_id"), RETINAL)
def test_retinal_annotation_names(tmp_path, dataset_cls, kind, image_name, ann_name, sample_id):
    mask = blocks(12, 14, [0, 1], seed=3)
    make_retinal(tmp_path, kind, "val", {image_name: mask})
    assert (tmp_path / "annotations/validation" / ann_name).is_file()
    dataset = dataset_cls(str(tmp_path), set="val")
    assert dataset.num_classes == 2 and dataset.classnames == ["__background__", "vessel"]
    sample = dataset[0]
    assert sample["id"] == sample_id
    np.testing.assert_array_equal(sample["seg_target"], mask.astype(np.int64))


def test_retinal_split_file_must_name_files_with_one_extension(tmp_path):
    make_retinal(tmp_path, "DRIVE", "train", {"21_training.png": np.zeros((4, 4), np.uint8)})
    (tmp_path / "train.txt").write_text("21_training.png\n22_training.tif\n")
    with pytest.raises(DataError, match=r"train\.txt: expected image file names with one extension"):
        DRIVEDataset(str(tmp_path))
    with pytest.raises(DataError, match="no set 'test'"):
        HRFDataset(str(tmp_path), set="test")


def test_pipeline_outputs(tmp_path):
    make_supervisely(tmp_path / "sup", "train", {"a": blocks(24, 30, [0, 255], seed=4)})
    assert_pipeline_outputs(SuperviselyDataset, tmp_path / "sup")
    make_sbu(tmp_path / "sbu", "train", {"b": blocks(30, 24, [0, 200, 255], seed=5)})
    assert_pipeline_outputs(SBUShadowDataset, tmp_path / "sbu")
    for dataset_cls, kind, image_name, *_ in RETINAL:
        root = tmp_path / kind
        make_retinal(root, kind, "train", {image_name: blocks(26, 28, [0, 1], seed=6)})
        assert_pipeline_outputs(dataset_cls, root)
