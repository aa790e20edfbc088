"""Resize, RandomCrop, RandomFlip and the shared label ops: every label map, the position mapper included, moves
with the image."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.data.transforms import RandomCrop, RandomFlip, Resize
from segkit.data.transforms.geometric import label_counts
from segkit.data.transforms.ops import flip_labels, pad_array, resize_labels, warp_labels

from .common import assert_image_matches_labels, assert_mapper_consistent, mapped_sample, rng


def test_resize_moves_the_position_mapper_with_the_labels():
    sample, labels = mapped_sample(30, 40)
    out = Resize((100, 75), scale_range=None, image_interpolation="nearest")(sample, rng())
    assert out["img2aug_pos_mapper"].shape == (75, 100)
    assert_mapper_consistent(labels, out["seg_target"], out["img2aug_pos_mapper"])
    assert_image_matches_labels(out["image"], out["seg_target"])
    rows, cols = np.divmod(out["img2aug_pos_mapper"], 40)  # nearest source pixel: centre-aligned scaling
    assert np.abs(rows - (np.arange(75)[:, None] + 0.5) * 30 / 75 + 0.5).max() <= 0.5
    assert np.abs(cols - (np.arange(100)[None] + 0.5) * 40 / 100 + 0.5).max() <= 0.5


def test_random_crop_moves_the_position_mapper_and_edges():
    sample, labels = mapped_sample(48, 64)
    sample["edge_target"] = (labels % 2).astype(np.int64)
    out = RandomCrop((24, 32))(sample, rng(5))
    top, left = divmod(int(out["img2aug_pos_mapper"][0, 0]), 64)
    window = np.s_[top : top + 24, left : left + 32]
    np.testing.assert_array_equal(out["seg_target"], labels[window])
    np.testing.assert_array_equal(out["edge_target"], labels[window] % 2)
    assert_mapper_consistent(labels, out["seg_target"], out["img2aug_pos_mapper"])


def test_random_flip_moves_the_position_mapper():
    sample, labels = mapped_sample(20, 30)
    out = RandomFlip(prob=1.0)(sample, rng())
    np.testing.assert_array_equal(out["img2aug_pos_mapper"][:, 0], np.arange(20) * 30 + 29)
    assert_mapper_consistent(labels, out["seg_target"], out["img2aug_pos_mapper"])
    assert_image_matches_labels(out["image"], out["seg_target"])


@pytest.mark.parametrize(
    "values", [[-100, 0, 1, 4, 7, 149], [-100, 0, 1, 4, 7, 255], [0, 3, 9], [2, 5]], ids=["byte", "wide", "u", "one"]
)
def test_label_counts_agree_with_unique(values):
    generator = rng(3)
    for dtype in (np.int64, np.int32):
        seg = generator.choice(values, size=(37, 41)).astype(dtype)
        for window in (seg, seg[3:30, 5:40]):  # a whole map and a strided view
            uniques, counts = np.unique(window, return_counts=True)
            for ignore in (-100, 255, 0):
                got = label_counts(window, ignore)
                assert sorted(got[got > 0]) == sorted(counts[uniques != ignore])


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64])
def test_label_counts_of_long_runs_agree_with_unique(dtype, monkeypatch):
    import cv2

    from segkit.data.transforms import geometric

    calls = []
    monkeypatch.setattr(geometric.cv2, "calcHist", lambda *a: calls.append(1) or cv2.calcHist(*a))
    generator = rng(5)
    for case in range(8):  # region maps (runs of tens of pixels), whole and as strided windows
        small = generator.choice([-100, 0, 3, 7, 149, 2000][: 3 + case % 4], size=(5, 6)).astype(np.int32)
        seg = cv2.resize(small, (90, 70), interpolation=cv2.INTER_NEAREST).astype(dtype)
        for window in (seg, seg[7:60, 11:80]):
            uniques, counts = np.unique(window, return_counts=True)
            for ignore in (-100, 3):
                got = label_counts(window, ignore)
                assert got.dtype == np.int64 and sorted(got[got > 0]) == sorted(counts[uniques != ignore])
    assert not calls  # all counted as runs


def test_label_counts_falls_back_for_very_wide_ranges():
    wide = np.array([[0, 1 << 40], [-100, 0]], np.int64)
    assert sorted(label_counts(wide, -100)) == [1, 2]


def test_random_crop_accepts_the_same_windows_as_the_unique_rule():
    """The bincount check keeps exactly the windows SSSegmentation's np.unique check keeps."""
    labels = np.zeros((60, 60), np.int64)
    labels[:, 40:] = 1
    labels[:10] = -100
    crop = RandomCrop(30, one_category_max_ratio=0.75)
    for seed in range(20):
        generator = rng(seed)
        expected = None
        for _ in range(10):  # SSSegmentation's loop, drawing the same numbers
            top, left = int(generator.integers(0, 31)), int(generator.integers(0, 31))
            window = labels[top : top + 30, left : left + 30]
            values, counts = np.unique(window, return_counts=True)
            counts = counts[values != -100]
            expected = window
            if len(counts) > 1 and counts.max() / counts.sum() < 0.75:
                break
        out = crop({"image": np.zeros((60, 60, 3), np.uint8), "seg_target": labels.copy()}, rng(seed))
        np.testing.assert_array_equal(out["seg_target"], expected)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_label_ops_are_exact_for_every_integer_type(dtype):
    info = np.iinfo(dtype)
    values = np.array([info.min, info.max, 0, 1, 7, -1 if info.min < 0 else 2], dtype)
    seg = values[rng(1).integers(0, len(values), (9, 13))]
    up = resize_labels(seg, (26, 18))
    assert up.dtype == dtype
    np.testing.assert_array_equal(up[::2, ::2], seg)
    np.testing.assert_array_equal(flip_labels(seg), seg[:, ::-1])
    fill = -100 if info.min < 0 else 200
    padded = pad_array(seg, (1, 2, 3, 0), fill)
    assert padded.dtype == dtype and padded.shape == (12, 16)
    np.testing.assert_array_equal(padded[1:10, 3:], seg)
    assert (padded[0] == fill).all() and (padded[:, :3] == fill).all()
    shift = np.float32([[1, 0, 2], [0, 1, 0]])  # two pixels to the right
    moved = warp_labels(seg, shift, (13, 9), fill)
    np.testing.assert_array_equal(moved[:, 2:], seg[:, :-2])
    assert (moved[:, :2] == fill).all()
