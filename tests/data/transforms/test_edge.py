"""EdgeExtractor: label boundaries, thickened to edge_width, never against ignored pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.data.transforms import EdgeExtractor, Padding, ToTensor

from .common import rng


def two_regions(height: int = 12, width: int = 20, split: int = 10) -> dict:
    seg = np.zeros((height, width), np.int64)
    seg[:, split:] = 1
    return {"image": np.zeros((height, width, 3), np.uint8), "seg_target": seg}


@pytest.mark.parametrize("edge_width, columns", [(1, None), (3, range(8, 12)), (5, range(7, 13))])
def test_vertical_boundary_becomes_a_band_of_edge_width(edge_width, columns):
    edge = EdgeExtractor(edge_width=edge_width)(two_regions(), rng())["edge_target"]
    assert edge.dtype == np.int64 and edge.shape == (12, 20)
    if columns is None:  # the raw marks: the left pixel of each pair, and the right one of the diagonals
        expected = np.zeros((12, 20), np.int64)
        expected[:, 9] = 1
        expected[:-1, 10] = 1
    else:
        expected = np.zeros((12, 20), np.int64)
        expected[:, list(columns)] = 1
    np.testing.assert_array_equal(edge, expected)


def test_horizontal_and_diagonal_boundaries():
    sample = two_regions()
    sample["seg_target"] = np.ascontiguousarray(sample["seg_target"].T)  # 20 x 12, boundary between rows 9 / 10
    sample["image"] = np.zeros((20, 12, 3), np.uint8)
    edge = EdgeExtractor(edge_width=3)(sample, rng())["edge_target"]
    assert (edge[8:12] == 1).all() and edge[:8].sum() == 0 and edge[12:].sum() == 0
    checker = {"image": np.zeros((6, 6, 3), np.uint8), "seg_target": np.indices((6, 6)).sum(0) % 2}
    edge = EdgeExtractor(edge_width=1)(checker, rng())["edge_target"]
    # every pixel differs from a neighbour, and each pair marks one of its pixels: all are marked but the top-right
    # corner, whose two differing pairs mark the left and the lower pixel
    assert edge[0, 5] == 0 and edge.sum() == 35


def test_boundaries_with_ignored_pixels_are_not_edges():
    sample = two_regions()
    sample["seg_target"][:, 8:12] = -100  # the two classes never touch; each touches only ignore
    assert EdgeExtractor(edge_width=3)(sample, rng())["edge_target"].sum() == 0
    sample = two_regions()
    sample["seg_target"][:, 10:] = 255
    assert EdgeExtractor(ignore_index=255)(sample, rng())["edge_target"].sum() == 0


def test_edge_target_is_padded_with_ignore_and_becomes_int64_tensor():
    sample = EdgeExtractor()(two_regions(), rng())
    out = Padding((16, 20))(sample, rng())
    assert (out["edge_target"][:2] == -100).all() and (out["edge_target"][-2:] == -100).all()
    out = ToTensor()(out, rng())
    assert out["edge_target"].dtype == torch.int64 and out["edge_target"].shape == (16, 20)


def test_edge_extractor_needs_numpy_labels():
    sample = ToTensor()(two_regions(), rng())
    with pytest.raises(TypeError, match="before ToTensor"):
        EdgeExtractor()(sample, rng())
