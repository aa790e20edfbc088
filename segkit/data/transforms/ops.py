"""Pixel operations shared by the transforms: OpenCV interpolation codes, and resizing, warping and padding of a
whole sample (image and every label map) with OpenCV.

Label maps are moved nearest-neighbour only and keep their dtype. OpenCV has no 64-bit integers, so an ``int64``
map is handed to it as an HxWx2 ``int32`` view (each pixel's two 32-bit halves): nearest-neighbour resizing,
warping, flipping and padding copy whole pixels, so the values come back exact, without a conversion pass.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from .compose import LABEL_KEYS

Interpolation = Literal["area", "bicubic", "bilinear", "nearest", "lanczos"]
LabelInterpolation = Literal["nearest"]
"""Label maps hold class ids (or pixel indices): blending two ids gives a third, unrelated one, so only nearest."""

CV2_INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "bicubic": cv2.INTER_CUBIC,
    "bilinear": cv2.INTER_LINEAR,
    # pixel-centre aligned nearest neighbour (like PIL), so labels line up with bilinear images;
    # cv2.INTER_NEAREST (SSSegmentation's choice) shifts the map by up to half a source pixel.
    "nearest": cv2.INTER_NEAREST_EXACT,
    "lanczos": cv2.INTER_LANCZOS4,
}

WARP_INTERPOLATIONS = {**CV2_INTERPOLATIONS, "nearest": cv2.INTER_NEAREST}
"""``cv2.warpAffine`` has no ``INTER_NEAREST_EXACT``; its nearest rounds the same sampling points as its bilinear."""


# --------------------------------------------------------------------------- int64 <-> OpenCV
def _to_cv2(labels: np.ndarray) -> np.ndarray:
    """An array OpenCV accepts holding the same pixels: an ``int64`` HxW map becomes an HxWx2 ``int32`` view."""
    if labels.dtype != np.int64 or labels.ndim != 2:
        return labels
    labels = np.ascontiguousarray(labels)
    return labels.view(np.int32).reshape(*labels.shape, 2)


def _from_cv2(array: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Undo :func:`_to_cv2` on an OpenCV result computed from ``like``."""
    if like.dtype != np.int64 or like.ndim != 2:
        return array
    return np.ascontiguousarray(array).view(np.int64).reshape(array.shape[:2])


def cv2_fill(fill: float | tuple[float, ...], array: np.ndarray) -> tuple[float, ...]:
    """The OpenCV scalar that puts ``fill`` (one value, or one per channel) into every channel of a pixel of
    ``array`` (OpenCV fills only the first channel when given a bare number)."""
    if array.dtype == np.int64 and array.ndim == 2:
        return tuple(float(v) for v in np.array([fill], np.int64).view(np.int32))
    if isinstance(fill, (int, float, np.integer, np.floating)):
        channels = 1 if array.ndim == 2 else array.shape[2]
        return (float(fill),) * min(channels, 4)
    return tuple(float(v) for v in fill)


# --------------------------------------------------------------------------- label maps
def resize_labels(labels: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Resize an integer map to ``(width, height)``, nearest-neighbour (pixel-centre aligned); dtype kept."""
    resized = cv2.resize(_to_cv2(labels), size_wh, interpolation=cv2.INTER_NEAREST_EXACT)
    return _from_cv2(resized, labels)


def warp_labels(labels: np.ndarray, matrix: np.ndarray, size_wh: tuple[int, int], fill: int) -> np.ndarray:
    """Apply a 2x3 affine ``matrix`` (source -> destination) nearest-neighbour; uncovered pixels get ``fill``."""
    warped = cv2.warpAffine(
        _to_cv2(labels),
        matrix,
        size_wh,
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=cv2_fill(fill, labels),
    )
    return _from_cv2(warped, labels)


def flip_labels(labels: np.ndarray) -> np.ndarray:
    """Mirror left <-> right."""
    return _from_cv2(cv2.flip(_to_cv2(labels), 1), labels)


# --------------------------------------------------------------------------- images and whole samples
def pad_array(array: np.ndarray, borders: tuple[int, int, int, int], fill: float) -> np.ndarray:
    """Pad an HxW or HxWxC array by ``(top, bottom, left, right)`` with a constant (dtype preserved)."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels > 4:  # copyMakeBorder's fill holds at most 4 channels
        return np.pad(array, (borders[:2], borders[2:], (0, 0)), constant_values=fill)
    padded = cv2.copyMakeBorder(_to_cv2(array), *borders, cv2.BORDER_CONSTANT, value=cv2_fill(fill, array))
    if array.ndim == 3 and padded.ndim == 2:
        padded = padded[:, :, None]
    return _from_cv2(padded, array)


def resize_sample(
    sample: dict,
    size_wh: tuple[int, int],
    image_interpolation: Interpolation = "bilinear",
) -> dict:
    """Resize ``image`` (with ``image_interpolation``) and every label map (nearest) to ``(width, height)``."""
    height, width = sample["image"].shape[:2]
    if size_wh == (width, height):
        return sample
    sample["image"] = cv2.resize(
        sample["image"], size_wh, interpolation=CV2_INTERPOLATIONS[image_interpolation]
    )
    for key in LABEL_KEYS:
        if key in sample:
            sample[key] = resize_labels(sample[key], size_wh)
    return sample
