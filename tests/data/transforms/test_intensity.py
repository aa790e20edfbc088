"""AdjustGamma, Rerange, CLAHE, RGB2Gray: output values, and labels untouched."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segkit.data.transforms import CLAHE, AdjustGamma, Normalize, Rerange, RGB2Gray

from ..helpers import blocky_labels, sample_of
from .common import rng


def levels_image(values) -> dict:
    values = np.asarray(values, np.uint8)
    image = np.repeat(values[None, :, None], 3, axis=2)
    return {"image": image, "seg_target": np.arange(len(values))[None].astype(np.int64)}


def test_adjust_gamma_table_values():
    out = AdjustGamma(gamma=2.0)(levels_image([0, 64, 128, 255]), rng())
    assert out["image"].dtype == np.uint8
    np.testing.assert_array_equal(out["image"][0, :, 0], [0, 127, 180, 255])  # 255 * sqrt(x / 255), truncated
    np.testing.assert_array_equal(out["seg_target"], [[0, 1, 2, 3]])
    same = AdjustGamma()(levels_image([0, 7, 200]), rng())["image"][0, :, 0]
    np.testing.assert_array_equal(same, [0, 7, 200])
    with pytest.raises(ValueError):
        AdjustGamma(gamma=0)


def test_rerange_stretches_to_the_target_range():
    out = Rerange()(levels_image([50, 75, 150]), rng())["image"][0, :, 0]
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 64, 255])  # (75 - 50) / 100 * 255 = 63.75
    unit = Rerange(0, 1)(levels_image([50, 100, 150]), rng())["image"][0, :, 0]
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, [0, 0.5, 1])
    floats = Rerange(-1, 1)({"image": np.array([[[2.0], [4.0]]], np.float32)}, rng())["image"]
    np.testing.assert_allclose(floats.ravel(), [-1, 1])
    flat = Rerange(10, 20)(levels_image([9, 9]), rng())["image"]
    assert (flat == 10).all()


def test_clahe_equalises_each_channel_like_opencv():
    generator = rng(4)
    image = (generator.random((64, 64, 3)) * 60 + 80).astype(np.uint8)  # low contrast
    out = CLAHE(clip_limit=2.0, tile_grid_size=(4, 4))({"image": image.copy()}, rng())["image"]
    clahe = cv2.createCLAHE(2.0, (4, 4))
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], clahe.apply(image[..., channel]))
    assert np.ptp(out) > np.ptp(image)


def test_rgb2gray_uses_luma_weights_on_bgr_images():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = (0, 0, 255)  # red in BGR
    image[0, 1] = (255, 0, 0)  # blue
    image[0, 2] = (0, 255, 0)  # green
    out = RGB2Gray()({"image": image}, rng())["image"]
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 0], [76, 29, 150])  # 0.299 * 255, 0.114 * 255, 0.587 * 255
    assert (out[..., 0] == out[..., 2]).all()
    single = RGB2Gray(out_channels=1)({"image": image}, rng())["image"]
    assert single.shape == (2, 3, 1)
    normalized = Normalize(mean=[0.0], std=[1.0])({"image": single[..., 0]}, rng())["image"]
    np.testing.assert_allclose(normalized[0], [76, 29, 150])


def test_intensity_transforms_leave_labels_alone():
    labels = blocky_labels(16, 16)
    for transform in (AdjustGamma(1.5), Rerange(), CLAHE(), RGB2Gray()):
        out = transform(sample_of(labels), rng())
        np.testing.assert_array_equal(out["seg_target"], labels)
    with pytest.raises(TypeError, match="before Normalize"):
        CLAHE()({"image": np.zeros((4, 4, 3), np.float32)}, rng())
