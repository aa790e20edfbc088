"""Per-pixel intensity transforms on ``uint8`` BGR images: gamma, range stretch, CLAHE, greyscale.

Label maps are untouched. Everything on ``uint8`` is a lookup table or an OpenCV call.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...registry import TRANSFORMS
from .compose import as_pair

_LEVELS = np.arange(256, dtype=np.float64)


@TRANSFORMS.register("AdjustGamma")
class AdjustGamma:
    """``255 * (x / 255) ** (1 / gamma)``, truncated to ``uint8`` (one lookup table); ``gamma > 1`` brightens."""

    def __init__(self, gamma: float = 1.0) -> None:
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        self.gamma = gamma
        self.table = ((_LEVELS / 255.0) ** (1.0 / gamma) * 255).astype(np.uint8)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        sample["image"] = cv2.LUT(_as_uint8(sample["image"], "AdjustGamma"), self.table)
        return sample


@TRANSFORMS.register("Rerange")
class Rerange:
    """Stretch the image's values linearly from ``[image.min(), image.max()]`` to ``[min_value, max_value]``.

    For the default target ``[0, 255]`` a ``uint8`` image stays ``uint8`` (rounded, one lookup table); any other
    range gives ``float32`` (SSSegmentation returns float64 in all cases). A constant image becomes ``min_value``
    (SSSegmentation fails on it).
    """

    def __init__(self, min_value: float = 0, max_value: float = 255) -> None:
        if not min_value < max_value:
            raise ValueError(f"min_value must be below max_value, got {min_value}, {max_value}")
        self.min_value = min_value
        self.max_value = max_value

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        low, high = float(image.min()), float(image.max())
        scale = (self.max_value - self.min_value) / (high - low) if high > low else 0.0
        if image.dtype == np.uint8:
            table = (_LEVELS - low) * scale + self.min_value
            full_range = (self.min_value, self.max_value) == (0, 255)
            table = np.rint(table).astype(np.uint8) if full_range else table.astype(np.float32)
            sample["image"] = cv2.LUT(image, table)
        else:
            sample["image"] = ((image.astype(np.float32) - low) * scale + self.min_value).astype(np.float32)
        return sample


@TRANSFORMS.register("CLAHE")
class CLAHE:
    """Contrast-limited adaptive histogram equalisation of each channel (``cv2.createCLAHE``)."""

    def __init__(self, clip_limit: float = 40.0, tile_grid_size: tuple[int, int] = (8, 8)) -> None:
        if clip_limit <= 0:
            raise ValueError(f"clip_limit must be positive, got {clip_limit}")
        self.clip_limit = float(clip_limit)
        self.tile_grid_size = as_pair(tile_grid_size, "tile_grid_size")

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = _as_uint8(sample["image"], "CLAHE")
        clahe = cv2.createCLAHE(self.clip_limit, self.tile_grid_size)  # not picklable: made per call
        if image.ndim == 2:
            sample["image"] = clahe.apply(image)
        else:
            sample["image"] = cv2.merge([clahe.apply(channel) for channel in cv2.split(image)])
        return sample


@TRANSFORMS.register("RGB2Gray")
class RGB2Gray:
    """Greyscale ``R * w0 + G * w1 + B * w2`` (``weights`` in RGB order), repeated to ``out_channels`` (default: as
    many channels as weights), rounded to ``uint8``.

    The images are BGR, so the weights are applied to the channels in reverse; SSSegmentation applies them in
    storage order (0.299 on blue) and returns float64.
    """

    def __init__(
        self, out_channels: int | None = None, weights: tuple[float, ...] = (0.299, 0.587, 0.114)
    ) -> None:
        if out_channels is not None and out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        self.out_channels = out_channels
        self.weights = tuple(float(w) for w in weights)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        if image.ndim != 3 or image.shape[2] != len(self.weights):
            raise ValueError(f"RGB2Gray has {len(self.weights)} weights but the image has shape {image.shape}")
        matrix = np.array([self.weights[::-1]], dtype=np.float32)  # BGR storage order
        gray = cv2.transform(image, matrix)  # HxW, saturated and rounded for uint8
        channels = self.out_channels or len(self.weights)
        sample["image"] = np.repeat(gray[:, :, None] if gray.ndim == 2 else gray, channels, axis=2)
        return sample


def _as_uint8(image: np.ndarray, name: str) -> np.ndarray:
    if image.dtype != np.uint8:
        raise TypeError(f"{name} expects a uint8 image: put it before Normalize")
    return image
