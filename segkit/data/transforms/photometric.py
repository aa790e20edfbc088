"""Photometric transforms: colour jitter on ``uint8`` BGR images (lookup tables), and normalisation to float."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from ...registry import TRANSFORMS

_IDENTITY = np.arange(256, dtype=np.uint8)
_SCRATCH = threading.local()


def _scratch_planes(height: int, width: int, count: int) -> list[np.ndarray]:
    """``count`` ``uint8`` planes of ``height`` x ``width`` owned by this thread, reused from call to call: the
    destination of ``cv2.split``, whose Python binding otherwise copies every plane it returns (3 planes of a 512x512
    image: 0.15-0.3 ms, where splitting into given arrays takes 0.02-0.04 ms). Only for intermediates that do not
    leave the function that asked for them."""
    planes = getattr(_SCRATCH, "planes", None)
    if planes is None or len(planes) < count or planes[0].shape != (height, width):
        planes = [np.empty((height, width), np.uint8) for _ in range(max(count, 4))]
        _SCRATCH.planes = planes
    return planes[:count]


def _affine_lut(lut: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """``lut`` followed by ``x * alpha + beta`` in float32, clipped to [0, 255] and truncated to ``uint8`` (the
    arithmetic SSSegmentation does on the whole image, done on the 256 levels instead)."""
    return np.clip(lut.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@TRANSFORMS.register("PhotoMetricDistortion")
class PhotoMetricDistortion:
    """mmseg-style colour jitter, each step with probability 0.5, on a ``uint8`` BGR image.

    Order: brightness (``+ U(-brightness_delta, brightness_delta)``), contrast (``* U(contrast_range)``) either here
    or last (a fair coin), saturation (``S * U(saturation_range)``), hue (``H + randint(-hue_delta, hue_delta)``,
    upper end excluded, in OpenCV's 8-bit hue units of 2 degrees), [contrast]. Each step clips to [0, 255] and
    truncates to ``uint8`` as SSSegmentation does, so the levels match it; the steps are composed as lookup tables
    (``cv2.LUT``), and saturation and hue share one HSV round trip (SSSegmentation makes one each, which differs by
    the rounding of the intermediate BGR image).

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
            lut = _affine_lut(lut, beta=rng.uniform(-self.brightness_delta, self.brightness_delta))
        return lut

    def _contrast(self, lut: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < 0.5:
            lut = _affine_lut(lut, alpha=rng.uniform(*self.contrast_range))
        return lut

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, float | None, int | None, np.ndarray]:
        """All random draws of one call, in order: ``(lut, saturation, hue, last)`` where ``lut`` is the level table
        applied first (brightness, contrast when first), ``saturation``/``hue`` the HSV step (``None``: skipped)
        and ``last`` the table applied after it (contrast when last); :data:`_IDENTITY` where nothing is drawn."""
        lut = self._brightness(_IDENTITY, rng)
        contrast_first = rng.random() < 0.5
        if contrast_first:
            lut = self._contrast(lut, rng)
        saturation = rng.uniform(*self.saturation_range) if rng.random() < 0.5 else None
        hue = int(rng.integers(-self.hue_delta, self.hue_delta)) if rng.random() < 0.5 and self.hue_delta else None
        last = _IDENTITY if contrast_first else self._contrast(_IDENTITY, rng)
        return lut, saturation, hue, last

    @staticmethod
    def apply(image: np.ndarray, lut: np.ndarray, saturation: float | None, hue: int | None) -> np.ndarray:
        """The first level table and the HSV step of :meth:`draw`'s result (the ``last`` table is the caller's)."""
        if lut is not _IDENTITY:
            image = cv2.LUT(image, lut)
        if saturation is None and hue is None:
            return image
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        # the tables go to the H and S planes only (a 3-channel table would also copy V through the identity)
        planes = cv2.split(hsv, _scratch_planes(*hsv.shape[:2], 3))
        if hue is not None:
            cv2.LUT(planes[0], ((np.arange(256) + hue) % 180).astype(np.uint8), dst=planes[0])  # 8-bit hue: [0, 180)
        if saturation is not None:
            cv2.LUT(planes[1], _affine_lut(_IDENTITY, alpha=saturation), dst=planes[1])
        return cv2.cvtColor(cv2.merge(planes, dst=hsv), cv2.COLOR_HSV2BGR)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        if image.dtype != np.uint8:
            raise TypeError("PhotoMetricDistortion expects a uint8 image: put it before Normalize")
        lut, saturation, hue, last = self.draw(rng)
        image = self.apply(image, lut, saturation, hue)
        if last is not _IDENTITY:
            image = cv2.LUT(image, last)
        sample["image"] = image
        return sample


@TRANSFORMS.register("Normalize")
class Normalize:
    """Convert the image to ``float32``, BGR -> RGB when ``to_rgb``, then ``(x - mean) / std`` per channel.

    ``mean`` and ``std`` are given in the output channel order (RGB when ``to_rgb``), e.g. the ImageNet values
    ``mean=[123.675, 116.28, 103.53]``, ``std=[58.395, 57.12, 57.375]``. ``to_rgb`` applies to 3-channel images.

    A ``uint8`` image is normalised channel by channel with ``cv2.LUT`` through a table of the 256 levels (no
    intermediate float image), written into channel-planar memory: the result is an HxWxC view of a CxHxW
    array, so ``ToTensor`` takes it without a copy.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], to_rgb: bool = True) -> None:
        mean64, std64 = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if mean64.shape != std64.shape or mean64.ndim != 1:
            raise ValueError(f"mean and std must be lists of the same length, got {mean!r}, {std!r}")
        if (std64 <= 0).any():
            raise ValueError(f"std must be positive, got {std!r}")
        self.mean = mean64.astype(np.float32).reshape(1, 1, -1)
        self.std = std64.astype(np.float32).reshape(1, 1, -1)
        self.to_rgb = to_rgb
        levels = np.arange(256, dtype=np.float64)[:, None]
        table = ((levels - mean64) / std64).astype(np.float32)  # 256 levels x C channels
        self.tables = [np.ascontiguousarray(table[:, channel]) for channel in range(len(mean64))]

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        channels = 1 if image.ndim == 2 else image.shape[2]
        if channels != len(self.tables):
            raise ValueError(f"Normalize has {len(self.tables)} means but the image has {channels} channels")
        if image.dtype == np.uint8 and channels <= 4:
            sample["image"] = self._lookup(image)
            return sample
        if self.to_rgb and channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        image = image.astype(np.float32)
        image -= self.mean if image.ndim == 3 else self.mean[0, 0, 0]
        image *= 1.0 / (self.std if image.ndim == 3 else self.std[0, 0, 0])
        sample["image"] = image
        return sample

    def _lookup(self, image: np.ndarray, out: np.ndarray | None = None, levels: np.ndarray | None = None) -> np.ndarray:
        """Normalise a ``uint8`` image plane by plane into a CxHxW buffer; return its HxWxC view (HxW for 2-D).

        ``out`` is a CxHxW ``float32`` buffer to write into (it may be a window of a larger one, rows strided);
        ``levels``, a ``uint8`` table applied to every channel first (folded into the normalisation tables)."""
        planes = cv2.split(image, _scratch_planes(*image.shape[:2], image.shape[2])) if image.ndim == 3 else [image]
        if self.to_rgb and len(planes) == 3:
            planes = planes[::-1]
        if out is None:
            out = np.empty((len(planes), *image.shape[:2]), np.float32)
        tables = self.tables if levels is None else [table[levels] for table in self.tables]
        for plane, table, channel_out in zip(planes, tables, out, strict=True):
            written = cv2.LUT(plane, table, dst=channel_out)
            if written is not channel_out and not np.shares_memory(written, channel_out):
                channel_out[...] = written  # OpenCV allocated its own result: copy it in
        return out.transpose(1, 2, 0) if image.ndim == 3 else out[0]
