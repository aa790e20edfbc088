"""Dark Zurich and Nighttime Driving: evaluation-only Cityscapes trainId sets."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.data.datasets.darkzurich import DarkZurichDataset
from segkit.data.datasets.nighttimedriving import NighttimeDrivingDataset
from segkit.errors import DataError

from .layouts import assert_pipeline_outputs, blocks, make_darkzurich, make_nighttime

STORED = np.array([[0, 18, 255], [7, 255, 13]], np.uint8)
EXPECTED = [[0, 18, -100], [7, -100, 13]]


def test_darkzurich_ids_from_the_file_list_and_void_255(tmp_path):
    make_darkzurich(tmp_path, {"GOPR0356_frame_000321": STORED, "GOPR0356_frame_000327": STORED[:, ::-1]})
    dataset = DarkZurichDataset(str(tmp_path))
    assert dataset.mode == "TEST" and dataset.imageids == ["GOPR0356_frame_000321", "GOPR0356_frame_000327"]
    assert dataset.num_classes == 19 and dataset.classnames[6] == "traffic_light"
    assert dataset.palette[0] == (128, 64, 128)
    np.testing.assert_array_equal(dataset[0]["seg_target"], EXPECTED)
    own_void = DarkZurichDataset(str(tmp_path), ignore_index=-1)
    np.testing.assert_array_equal(own_void[0]["seg_target"], [[0, 18, -1], [7, -1, 13]])


def test_nighttime_ids_from_the_image_folder(tmp_path):
    make_nighttime(tmp_path, {"0_frame_0140": STORED, "0_frame_0060": STORED})
    (tmp_path / "leftImg8bit/test/night/notes.txt").write_text("not an image")
    dataset = NighttimeDrivingDataset(str(tmp_path))
    assert dataset.imageids == ["0_frame_0060", "0_frame_0140"]
    assert dataset.classnames == DarkZurichDataset.classnames
    np.testing.assert_array_equal(dataset[1]["seg_target"], EXPECTED)


@pytest.mark.parametrize("dataset_cls", [DarkZurichDataset, NighttimeDrivingDataset])
@pytest.mark.parametrize("split", ["train", "test"])
def test_only_val_exists(tmp_path, dataset_cls, split):
    with pytest.raises(
        DataError, match=f"{dataset_cls.__name__} is evaluation-only: set must be 'val', got '{split}'"
    ):
        dataset_cls(str(tmp_path), set=split)


def test_pipeline_outputs(tmp_path):
    make_darkzurich(tmp_path / "dz", {"GOPR0356_frame_000001": blocks(24, 30, [0, 3, 8, 255], seed=1)})
    assert_pipeline_outputs(DarkZurichDataset, tmp_path / "dz")
    make_nighttime(tmp_path / "nd", {"0_frame_0001": blocks(30, 24, [1, 10, 255], seed=2)})
    assert_pipeline_outputs(NighttimeDrivingDataset, tmp_path / "nd")
