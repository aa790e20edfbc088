"""PhotoMetricDistortion's levels match SSSegmentation's per-step uint8 arithmetic; Normalize's lookup-table path
equals the float computation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segkit.data.transforms import Normalize, Padding, PhotoMetricDistortion, ToTensor

from .common import rng

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


class ScriptedRNG:
    """A generator whose coins, uniforms and integers come from lists, in order."""

    def __init__(self, coins: list[float], uniforms: list[float] = (), integers: list[int] = ()) -> None:
        self.coins, self.uniforms, self.ints = list(coins), list(uniforms), list(integers)

    def random(self) -> float:
        return self.coins.pop(0)

    def uniform(self, low: float, high: float) -> float:
        value = self.uniforms.pop(0)
        assert low <= value <= high
        return value

    def integers(self, low: int, high: int) -> int:
        value = self.ints.pop(0)
        assert low <= value < high
        return value


def sssegmentation_step(image: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """SSSegmentation's ``convert``: float32 arithmetic on the image, clipped, truncated to uint8."""
    return np.clip(image.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("contrast_first", [True, False])
def test_brightness_and_contrast_levels_match_sssegmentation(contrast_first):
    image = rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    beta, alpha = -17.3, 1.37
    # coins: brightness yes, mode, [contrast yes], saturation no, hue no, [contrast yes]
    coins = [0.1, 0.2 if contrast_first else 0.8, 0.1, 0.9, 0.9] if contrast_first else [0.1, 0.8, 0.9, 0.9, 0.1]
    out = PhotoMetricDistortion()({"image": image.copy()}, ScriptedRNG(coins, [beta, alpha]))["image"]
    expected = sssegmentation_step(sssegmentation_step(image, beta=beta), alpha=alpha)
    np.testing.assert_array_equal(out, expected)


def test_saturation_and_hue_are_one_bgr_hsv_round_trip():
    image = rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    coins = [0.9, 0.8, 0.1, 0.1, 0.9]  # no brightness, contrast last, saturation yes, hue yes, no contrast
    out = PhotoMetricDistortion()({"image": image.copy()}, ScriptedRNG(coins, [0.6], [-7]))["image"]
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hsv[..., 1] = sssegmentation_step(hsv[..., 1], alpha=0.6)
    hsv[..., 0] = (hsv[..., 0].astype(int) - 7) % 180
    np.testing.assert_array_equal(out, cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))


def test_no_step_leaves_the_image_as_is():
    image = rng(2).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    out = PhotoMetricDistortion()({"image": image}, ScriptedRNG([0.9, 0.8, 0.9, 0.9, 0.9]))["image"]
    assert out is image


def test_photometric_distortion_needs_uint8():
    with pytest.raises(TypeError, match="before Normalize"):
        PhotoMetricDistortion()({"image": np.zeros((4, 4, 3), np.float32)}, rng())


@pytest.mark.parametrize("to_rgb", [True, False])
def test_normalize_lookup_table_equals_float_arithmetic(to_rgb):
    image = rng(3).integers(0, 256, (9, 11, 3)).astype(np.uint8)
    normalize = Normalize(MEAN, STD, to_rgb=to_rgb)
    fast = normalize({"image": image}, rng())["image"]
    slow = normalize({"image": image.astype(np.float32)}, rng())["image"]
    assert fast.dtype == slow.dtype == np.float32 and fast.shape == (9, 11, 3)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-5)
    source = image[..., ::-1] if to_rgb else image
    np.testing.assert_allclose(fast, (source - np.array(MEAN)) / np.array(STD), atol=1e-5)


def test_normalized_image_goes_to_a_tensor_without_a_copy():
    image = rng(4).integers(0, 256, (6, 7, 3)).astype(np.uint8)
    normalized = Normalize(MEAN, STD)({"image": image}, rng())["image"]
    tensor = ToTensor()({"image": normalized}, rng())["image"]
    assert tensor.shape == (3, 6, 7) and tensor.is_contiguous()
    assert tensor.data_ptr() == normalized.ctypes.data  # channel-planar already
    np.testing.assert_allclose(tensor[0].numpy(), (image[..., 2] - MEAN[0]) / STD[0], atol=1e-5)
    padded = Padding((8, 9))({"image": normalized}, rng())["image"]  # OpenCV copes with the planar view
    assert padded.shape == (8, 9, 3) and (padded[0] == 0).all()
    np.testing.assert_array_equal(padded[1:7, 1:8], normalized)


def test_normalize_checks_its_arguments_and_channels():
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize(MEAN, (1, 0, 1))
    with pytest.raises(ValueError, match="channels"):
        Normalize(MEAN, STD)({"image": np.zeros((4, 4), np.uint8)}, rng())
