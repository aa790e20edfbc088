"""MHP v1 and v2: per-person part masks merged into one label map (non-zero pixels overwrite, sorted order)."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.data.datasets.mhp import MHPv1Dataset, MHPv2Dataset
from segkit.errors import DataError

from .layouts import assert_pipeline_outputs, blocks, make_mhp_v1, make_mhp_v2, write_image


def three_persons() -> tuple[list[np.ndarray], np.ndarray]:
    """Person masks that overlap, and their merge in file order (later persons win where non-zero)."""
    first = np.zeros((10, 12), np.uint8)
    first[0:6, 0:6] = 2  # hair
    first[6:8, 0:3] = 11
    second = np.zeros((10, 12), np.uint8)
    second[4:9, 4:10] = 14  # overlaps the first person's hair
    third = np.zeros((10, 12), np.uint8)
    third[8:10, 8:12] = 18
    third[5, 5] = 1  # on top of both others
    expected = np.zeros((10, 12), np.int64)
    expected[0:6, 0:6] = 2
    expected[6:8, 0:3] = 11
    expected[4:9, 4:10] = 14
    expected[8:10, 8:12] = 18
    expected[5, 5] = 1
    return [first, second, third], expected


def test_v1_merges_person_masks_of_the_image_only(tmp_path):
    persons, expected = three_persons()
    other = [np.full((10, 12), 7, np.uint8)]  # image 10's masks must not leak into image 1 ("1_*" vs "10_*")
    make_mhp_v1(tmp_path, "train", {"1.jpg": persons, "10.jpg": other})
    dataset = MHPv1Dataset(str(tmp_path), set="train")
    assert dataset.num_classes == 19 and dataset.imageids == ["1.jpg", "10.jpg"]
    sample = dataset[0]
    assert sample["id"] == "1.jpg" and sample["image"].shape == (10, 12, 3)
    np.testing.assert_array_equal(sample["seg_target"], expected)
    np.testing.assert_array_equal(dataset[1]["seg_target"], np.full((10, 12), 7))


def test_v2_reads_three_channel_masks_through_their_first_channel(tmp_path):
    persons, expected = three_persons()
    persons = [np.where(p > 0, p + 40, 0).astype(np.uint8) for p in persons]  # v2 has labels up to 58
    expected = np.where(expected > 0, expected + 40, 0)
    make_mhp_v2(tmp_path, "val", {"7": persons}, mode="RGB")
    dataset = MHPv2Dataset(str(tmp_path), set="val")
    assert dataset.num_classes == 59 and len(dataset.classnames) == len(dataset.palette) == 59
    np.testing.assert_array_equal(dataset[0]["seg_target"], expected)


def test_missing_or_mis_sized_person_masks_are_errors(tmp_path):
    make_mhp_v2(tmp_path, "train", {"3": [np.ones((6, 6), np.uint8)]})
    write_image(tmp_path / "train/images/4.jpg", 6, 6)
    (tmp_path / "list/train.txt").write_text("3\n4\n")
    dataset = MHPv2Dataset(str(tmp_path), set="train")
    with pytest.raises(DataError, match=r"no person annotations match .*parsing_annos/4_\*"):
        dataset[1]
    make_mhp_v2(tmp_path, "val", {"5": [np.ones((6, 6), np.uint8)]})
    write_image(tmp_path / "val/images/5.jpg", 6, 8)  # the image no longer matches its mask
    with pytest.raises(DataError, match=r"5_01_01\.png: person mask is 6x6 but its image is 8x6"):
        MHPv2Dataset(str(tmp_path), set="val")[0]


def test_pipeline_outputs(tmp_path):
    make_mhp_v1(
        tmp_path / "v1", "train", {"2.jpg": [blocks(24, 30, range(19), seed=1), blocks(24, 30, [0, 5])]}
    )
    assert_pipeline_outputs(MHPv1Dataset, tmp_path / "v1")
    make_mhp_v2(tmp_path / "v2", "train", {"9": [blocks(30, 24, range(59), seed=2)]})
    assert_pipeline_outputs(MHPv2Dataset, tmp_path / "v2")
