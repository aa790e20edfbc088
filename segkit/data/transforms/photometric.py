"""Photometric transforms: colour jitter on ``uint8`` BGR images (lookup tables), and normalisation to float."""

from __future__ import annotations

import cv2
import numpy as np

from ...registry import TRANSFORMS

_IDENTITY = np.arange(256, dtype=np.float64)


def _to_lut(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


@TRANSFORMS.register("PhotoMetricDistortion")
class PhotoMetricDistortion:
    """mmseg-style colour jitter, each step with probability 0.5, on a ``uint8`` BGR image.

    Order: brightness (``+ U(-brightness_delta, brightness_delta)``), contrast (``* U(contrast_range)``) either here
    or last (a fair coin), saturation (``S * U(saturation_range)``), hue (``H + randint(-hue_delta, hue_delta)``,
    OpenCV hue units of 2 degrees), [contrast]. Each step clips to [0, 255]. Brightness and contrast are lookup
    tables; saturation and hue are one HSV round trip with a per-channel lookup table.

    SSSegmentation 1.7.0 converts with ``COLOR_RGB2HSV`` although its images are BGR, so its "hue" and "saturation"
    are computed on swapped channels; here the conversion is ``COLOR_BGR2HSV``, as the images are BGR.
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        for name, (lo, hi) in (("contrast_range", contrast_range), ("saturation_range", saturation_range)):
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 0 <= lo <= hi, got {(lo, hi)!r}")
        if brightness_delta < 0 or not 0 <= hue_delta <= 180:
            raise ValueError("brightness_delta must be >= 0 and hue_delta in [0, 180]")
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def _brightness(self, lut: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < 0.5:
            lut = np.clip(lut + rng.uniform(-self.brightness_delta, self.brightness_delta), 0, 255)
        return lut

    def _contrast(self, lut: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < 0.5:
            lut = np.clip(lut * rng.uniform(*self.contrast_range), 0, 255)
        return lut

    def _saturation_hue(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        saturation = rng.uniform(*self.saturation_range) if rng.random() < 0.5 else None
        hue = int(rng.integers(-self.hue_delta, self.hue_delta + 1)) if rng.random() < 0.5 else None
        if saturation is None and hue is None:
            return image
        hue_lut = (np.arange(256) + (hue or 0)) % 180  # OpenCV's 8-bit hue lives in [0, 180)
        sat_lut = _IDENTITY * (saturation if saturation is not None else 1.0)
        lut = np.stack([_to_lut(hue_lut), _to_lut(sat_lut), _to_lut(_IDENTITY)], axis=-1)[:, None, :]
        hsv = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_BGR2HSV), lut)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        if image.dtype != np.uint8:
            raise TypeError("PhotoMetricDistortion expects a uint8 image: put it before Normalize")
        lut = self._brightness(_IDENTITY, rng)
        contrast_first = rng.random() < 0.5
        if contrast_first:
            lut = self._contrast(lut, rng)
        if lut is not _IDENTITY:
            image = cv2.LUT(image, _to_lut(lut))
        image = self._saturation_hue(image, rng)
        if not contrast_first:
            lut = self._contrast(_IDENTITY, rng)
            if lut is not _IDENTITY:
                image = cv2.LUT(image, _to_lut(lut))
        sample["image"] = image
        return sample


@TRANSFORMS.register("Normalize")
class Normalize:
    """Convert the image to ``float32``, BGR -> RGB when ``to_rgb``, then ``(x - mean) / std`` per channel.

    ``mean`` and ``std`` are given in the output channel order (RGB when ``to_rgb``), e.g. the ImageNet values
    ``mean=[123.675, 116.28, 103.53]``, ``std=[58.395, 57.12, 57.375]``.
    """

    def __init__(
        self, mean: tuple[float, float, float], std: tuple[float, float, float], to_rgb: bool = True
    ) -> None:
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, -1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 1, -1)
        if (self.std <= 0).any():
            raise ValueError(f"std must be positive, got {std!r}")
        self.to_rgb = to_rgb

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        if self.to_rgb:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        image = image.astype(np.float32)
        image -= self.mean
        image *= 1.0 / self.std
        sample["image"] = image
        return sample
