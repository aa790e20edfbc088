"""Random Gaussian blur of the image (OpenCV, or Pillow's radius-parametrised filter); labels are untouched."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageFilter

from ...registry import TRANSFORMS
from .compose import as_pair, as_range


@TRANSFORMS.register("RandomGaussianBlur")
class RandomGaussianBlur:
    """With probability ``prob``, ``cv2.GaussianBlur`` with ``sigma ~ U(sigma)`` and a ``kernel_size`` kernel
    (an int, or ``(width, height)``, odd). As in OpenCV, ``sigma = 0`` means "derived from the kernel size"."""

    def __init__(
        self,
        prob: float = 0.5,
        sigma: float | tuple[float, float] = (0.0, 1.0),
        kernel_size: int | tuple[int, int] = 3,
    ) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.sigma = as_range(sigma, "sigma")
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        if any(k <= 0 or k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"kernel_size must be positive and odd, got {kernel_size!r}")

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if rng.random() >= self.prob:
            return sample
        sigma = rng.uniform(*self.sigma)
        sample["image"] = cv2.GaussianBlur(sample["image"], self.kernel_size, sigma)
        return sample


@TRANSFORMS.register("PILRandomGaussianBlur")
class PILRandomGaussianBlur:
    """With probability ``prob``, Pillow's ``ImageFilter.GaussianBlur(radius)`` with ``radius ~ U(radius)`` (the
    blur used by MobileViT's recipes). The filter treats channels alike, so the BGR image is blurred as it is."""

    def __init__(self, prob: float = 0.5, radius: float | tuple[float, float] = (0.0, 1.0)) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.radius = as_range(radius, "radius")
        if self.radius[0] < 0:
            raise ValueError(f"radius must be >= 0, got {radius!r}")

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if rng.random() >= self.prob:
            return sample
        image = sample["image"]
        if image.dtype != np.uint8:
            raise TypeError("PILRandomGaussianBlur expects a uint8 image: put it before Normalize")
        radius = rng.uniform(*self.radius)
        blurred = Image.fromarray(np.ascontiguousarray(image)).filter(ImageFilter.GaussianBlur(radius=radius))
        sample["image"] = np.asarray(blurred).copy()
        return sample
