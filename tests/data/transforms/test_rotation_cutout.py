"""RandomRotation and RandomCutOut: labels and mapper follow the image; uncovered or cut pixels are ignored."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.data.transforms import RandomCutOut, RandomRotation

from ..helpers import blocky_labels, decode, sample_of
from .common import assert_image_matches_labels, assert_mapper_consistent, mapped_sample, rng


def test_rotation_by_90_degrees_is_exact_about_the_centre():
    sample, labels = mapped_sample(32, 32)
    out = RandomRotation(image_interpolation="nearest").rotate(sample, 90)
    np.testing.assert_array_equal(out["seg_target"], np.rot90(labels))  # counter-clockwise
    assert_image_matches_labels(out["image"], out["seg_target"])
    assert_mapper_consistent(labels, out["seg_target"], out["img2aug_pos_mapper"])


@pytest.mark.parametrize("seed, angle", [(0, -29), (1, -13), (2, 7), (3, 25)])
def test_rotated_labels_match_the_rotated_image_pixel_for_pixel(seed, angle):
    sample, labels = mapped_sample(40, 56, seed=seed)
    sample["edge_target"] = np.zeros_like(labels)
    out = RandomRotation(image_interpolation="nearest").rotate(sample, angle)
    seg, mapper = out["seg_target"], out["img2aug_pos_mapper"]
    assert seg.shape == (40, 56) and seg.dtype == np.int64
    assert (seg == -100).any() and (seg[20, 28] != -100)  # corners uncovered, centre kept
    assert_image_matches_labels(out["image"], seg)  # image fill 0 decodes as ignore, like the label fill
    assert_mapper_consistent(labels, seg, mapper)
    assert ((out["edge_target"] == -100) == (seg == -100)).all()


def test_bicubic_image_agrees_with_nearest_labels_inside_regions():
    labels = blocky_labels(48, 48, block=12)
    out = RandomRotation(prob=1.0)(sample_of(labels), rng(2))
    seg, decoded = out["seg_target"], decode(out["image"])
    same_neighbours = np.ones_like(seg, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same_neighbours &= np.roll(seg, (dy, dx), axis=(0, 1)) == seg
    inner = same_neighbours & (seg != -100)
    inner[[0, -1]], inner[:, [0, -1]] = False, False
    assert (decoded[inner] == seg[inner]).all()


def test_rotation_angle_range_probability_and_fill_values():
    angles = []
    rotate = RandomRotation(prob=1.0, angle_upper=3)
    rotate.rotate = lambda sample, angle: angles.append(angle) or sample
    for seed in range(60):
        rotate({"image": np.zeros((4, 4, 3), np.uint8)}, rng(seed))
    assert set(angles) == {-3, -2, -1, 0, 1, 2}  # randint(-upper, upper): upper excluded
    sample, labels = mapped_sample(16, 16)
    assert RandomRotation(prob=0.0)(sample, rng())["seg_target"] is sample["seg_target"]
    custom = RandomRotation(image_fill_value=7, seg_target_fill_value=99, img2aug_pos_mapper_fill_value=-5)
    out = custom.rotate(mapped_sample(16, 16)[0], 45)
    assert tuple(out["image"][0, 0]) == (7, 7, 7) and out["seg_target"][0, 0] == 99
    assert out["img2aug_pos_mapper"][0, 0] == -5


# --------------------------------------------------------------------------- RandomCutOut
def test_cutout_fills_holes_with_ignore_in_every_label_map():
    sample, labels = mapped_sample(40, 50)
    sample["edge_target"] = np.ones_like(labels)
    out = RandomCutOut(prob=1.0, n_holes=3, cutout_shape=[(8, 5)])(sample, rng(1))
    holes = out["seg_target"] == -100
    assert 0 < holes.sum() <= 3 * 8 * 5
    assert (out["image"][holes] == 0).all() and (out["image"][~holes] != 0).any(axis=-1).all()
    assert (out["edge_target"][holes] == -100).all() and (out["edge_target"][~holes] == 1).all()
    assert (out["img2aug_pos_mapper"][holes] == -1).all()
    np.testing.assert_array_equal(out["seg_target"][~holes], labels[~holes])
    assert_mapper_consistent(labels, out["seg_target"], out["img2aug_pos_mapper"])


def test_cutout_hole_geometry_follows_shape_and_ratio():
    cut = RandomCutOut(prob=1.0, n_holes=1, cutout_shape=(6, 4), image_fill_value=(1, 2, 3))
    height, width = 30, 40
    for seed in range(10):
        ((top, bottom, left, right),) = cut.holes(height, width, rng(seed))
        assert (bottom - top, right - left) == (min(4, height - top), min(6, width - left))
    ratio = RandomCutOut(prob=1.0, n_holes=(2, 4), cutout_ratio=[(0.5, 0.1)])
    counts = set()
    for seed in range(30):
        holes = ratio.holes(height, width, rng(seed))
        counts.add(len(holes))
        assert all(right - left == min(20, width - left) and bottom - top == min(3, height - top)
                   for top, bottom, left, right in holes)
    assert counts == {2, 3, 4}
    out = cut(sample_of(blocky_labels(30, 40)), rng(0))
    assert (out["image"][out["seg_target"] == -100] == (1, 2, 3)).all()


def test_cutout_probability_and_argument_checks():
    sample = sample_of(blocky_labels(10, 10))
    assert RandomCutOut(prob=0.0, n_holes=2, cutout_shape=(3, 3))(sample, rng())["image"] is sample["image"]
    with pytest.raises(ValueError, match="exactly one"):
        RandomCutOut(prob=0.5, n_holes=1, cutout_shape=(2, 2), cutout_ratio=(0.1, 0.1))
