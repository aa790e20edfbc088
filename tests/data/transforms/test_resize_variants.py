"""ResizeShortestEdge, RandomShortestEdgeResize and RandomChoiceResize: sizes as detectron2/SSSegmentation compute
them, labels and mapper aligned with the image."""

from __future__ import annotations

import pytest

from segkit.data.transforms import RandomChoiceResize, RandomShortestEdgeResize, ResizeShortestEdge
from segkit.data.transforms.resize_variants import shortest_edge_size

from .common import assert_image_matches_labels, assert_mapper_consistent, mapped_sample, rng


@pytest.mark.parametrize(
    "shape, short, max_size, expected_hw",
    [
        ((40, 60), 80, 1000, (80, 120)),  # landscape: short side is the height
        ((60, 40), 80, 1000, (120, 80)),  # portrait
        ((40, 60), 80, 90, (60, 90)),  # the long side would be 120 > 90: both scaled by 0.75
        ((30, 30), 45, 1000, (45, 45)),
    ],
)
def test_resize_shortest_edge_sizes(shape, short, max_size, expected_hw):
    sample, labels = mapped_sample(*shape)
    out = ResizeShortestEdge(short, max_size, image_interpolation="nearest")(sample, rng())
    assert out["image"].shape[:2] == expected_hw and out["seg_target"].shape == expected_hw
    assert_image_matches_labels(out["image"], out["seg_target"])
    assert_mapper_consistent(labels, out["seg_target"], out["img2aug_pos_mapper"])


def test_resize_shortest_edge_takes_the_smallest_of_a_list_and_min_size():
    sample, _ = mapped_sample(40, 60)
    assert ResizeShortestEdge([64, 48, 100], 1000)(sample, rng())["image"].shape[:2] == (48, 72)
    sample, _ = mapped_sample(10, 200)  # max_size squeezes the short side to 5; min_size lifts it to 8
    out = ResizeShortestEdge(50, 100, min_size=8)(sample, rng())
    assert out["image"].shape[:2] == (8, 160)


def test_shortest_edge_size_rounds_half_up():
    assert shortest_edge_size(3, 5, 4, 100) == (7, 4)  # 5 * 4 / 3 = 6.67 -> 7


def test_random_shortest_edge_resize_draws_from_the_half_open_range():
    shorts = set()
    for seed in range(60):
        sample, labels = mapped_sample(32, 48)
        out = RandomShortestEdgeResize((20, 24), max_size=1000)(sample, rng(seed))
        shorts.add(out["image"].shape[0])
        assert_mapper_consistent(labels, out["seg_target"], out["img2aug_pos_mapper"])
    assert shorts == {20, 21, 22, 23}


def test_random_choice_resize_picks_each_scale():
    choose = RandomChoiceResize([[60, 40], [90, 60]], keep_ratio=False, scale_range=None)
    heights = {choose(mapped_sample(20, 30)[0], rng(seed))["image"].shape[0] for seed in range(20)}
    assert heights == {40, 60}
    shortest = RandomChoiceResize([24, 36], resize_type="ResizeShortestEdge", max_size=1000)
    assert {shortest(mapped_sample(20, 30)[0], rng(s))["image"].shape[0] for s in range(20)} == {24, 36}


def test_random_choice_resize_keeps_resize_scale_range_by_default():
    choose = RandomChoiceResize([[60, 40]], keep_ratio=False)
    assert choose.transforms[0].scale_range == (0.5, 2.0)
    with pytest.raises(TypeError):
        RandomChoiceResize([[60, 40]], max_size=3)  # Resize takes no max_size
