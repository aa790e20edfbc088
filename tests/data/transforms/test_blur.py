"""RandomGaussianBlur (OpenCV) and PILRandomGaussianBlur (Pillow): the blur drawn, applied with its probability."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageFilter

from segkit.data.transforms import PILRandomGaussianBlur, RandomGaussianBlur

from ..helpers import blocky_labels, sample_of
from .common import rng


def noisy_sample() -> dict:
    sample = sample_of(blocky_labels(24, 32))
    sample["image"] = rng(9).integers(0, 256, (24, 32, 3)).astype(np.uint8)
    return sample


def test_random_gaussian_blur_is_opencv_with_the_drawn_sigma():
    sample = noisy_sample()
    image, labels = sample["image"].copy(), sample["seg_target"].copy()
    out = RandomGaussianBlur(prob=1.0, sigma=(0.7, 0.7), kernel_size=5)(sample, rng())
    np.testing.assert_array_equal(out["image"], cv2.GaussianBlur(image, (5, 5), 0.7))
    assert out["image"].std() < image.std()
    np.testing.assert_array_equal(out["seg_target"], labels)
    generator = rng(1)
    generator.random()
    sigma = generator.uniform(0.0, 1.0)
    drawn = RandomGaussianBlur(prob=1.0)(noisy_sample(), rng(1))["image"]
    np.testing.assert_array_equal(drawn, cv2.GaussianBlur(image, (3, 3), sigma))


def test_gaussian_blurs_respect_their_probability():
    for blur in (RandomGaussianBlur(prob=0.0), PILRandomGaussianBlur(prob=0.0)):
        sample = noisy_sample()
        assert blur(sample, rng())["image"] is sample["image"]
    applied = sum(
        not np.array_equal(RandomGaussianBlur(prob=0.5, sigma=1.0)(noisy_sample(), rng(s))["image"],
                           noisy_sample()["image"])
        for s in range(40)
    )
    assert 8 < applied < 32


def test_pil_gaussian_blur_is_pillow_with_the_drawn_radius():
    sample = noisy_sample()
    image = sample["image"].copy()
    out = PILRandomGaussianBlur(prob=1.0, radius=1.5)(sample, rng())["image"]
    expected = np.asarray(Image.fromarray(image[:, :, ::-1]).filter(ImageFilter.GaussianBlur(1.5)))[:, :, ::-1]
    np.testing.assert_array_equal(out, expected)  # blurring RGB or BGR is the same per channel
    assert out.dtype == np.uint8 and out.flags.writeable and out.std() < image.std()
