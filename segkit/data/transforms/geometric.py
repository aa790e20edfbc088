"""Resize, random crop and flip: the image and its label maps move together (labels always nearest-neighbour).

Images stay ``uint8`` HxWx3 BGR; label maps (``seg_target``, ``edge_target``, ``img2aug_pos_mapper``) keep their
integer dtype. OpenCV does the pixel work (see :mod:`.ops`).
"""

from __future__ import annotations

import cv2
import numpy as np

from ...registry import TRANSFORMS
from .compose import LABEL_KEYS, as_pair
from .ops import Interpolation, LabelInterpolation, flip_labels, resize_sample


@TRANSFORMS.register("Resize")
class Resize:
    """Resize image and labels to ``output_size``, optionally jittered by a random scale.

    ``output_size`` is an int or a pair ``(a, b)``. With ``scale_range=(lo, hi)`` a factor ``r ~ U[lo, hi)`` scales the
    target to ``(int(a*r), int(b*r))``. With ``keep_ratio`` the image is scaled by
    ``min(max(target)/max(h, w), min(target)/min(h, w))`` (so ``(2048, 512)`` means "long side at most 2048, short
    side at most 512"); then, if ``min_size`` is given and the short side is smaller, it is scaled up to it.
    Without ``keep_ratio`` a portrait image becomes ``min(target)`` wide and ``max(target)`` high, a landscape one the
    other way round. Label maps are resized nearest-neighbour, pixel-centre aligned (``cv2.INTER_NEAREST_EXACT``,
    where SSSegmentation's ``cv2.INTER_NEAREST`` shifts them by up to half a source pixel against the image).
    """

    def __init__(
        self,
        output_size: int | tuple[int, int],
        keep_ratio: bool = True,
        min_size: int | None = None,
        scale_range: tuple[float, float] | None = (0.5, 2.0),
        image_interpolation: Interpolation = "bilinear",
        seg_target_interpolation: LabelInterpolation = "nearest",
        img2aug_pos_mapper_interpolation: LabelInterpolation = "nearest",
    ) -> None:
        self.output_size = as_pair(output_size, "output_size")
        if min(self.output_size) <= 0:
            raise ValueError(f"output_size must be positive, got {output_size!r}")
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (lo, hi) with 0 < lo <= hi, got {scale_range!r}")
        self.keep_ratio = keep_ratio
        self.min_size = min_size
        self.scale_range = scale_range
        self.image_interpolation = image_interpolation
        self.seg_target_interpolation = seg_target_interpolation
        self.img2aug_pos_mapper_interpolation = img2aug_pos_mapper_interpolation

    def target_size(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int]:
        """The ``(new_width, new_height)`` for an image of the given size."""
        a, b = self.output_size
        if self.scale_range is not None:
            ratio = rng.uniform(*self.scale_range)
            a, b = int(a * ratio), int(b * ratio)
        if not self.keep_ratio:
            long_side, short_side = max(a, b), min(a, b)
            return (short_side, long_side) if height > width else (long_side, short_side)
        scale = min(max(a, b) / max(height, width), min(a, b) / min(height, width))
        if self.min_size is not None and min(height, width) * scale < self.min_size:
            scale = self.min_size / min(height, width)
        return max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5))

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        height, width = sample["image"].shape[:2]
        return resize_sample(sample, self.target_size(height, width, rng), self.image_interpolation)


@TRANSFORMS.register("RandomCrop")
class RandomCrop:
    """Crop a random ``crop_size`` = ``(height, width)`` window (clipped to the image) from image and labels.

    Up to 10 windows are drawn; the first where more than one non-ignored class is present and the most frequent
    one covers less than ``one_category_max_ratio`` of the labelled pixels is kept, else the last one drawn.
    Unlike SSSegmentation 1.7.0 (which returns the *uncropped* sample when the last window has no labelled pixel,
    so a large image then breaks batch collation), the result is always cropped. ``one_category_max_ratio=1``
    switches the check off (any window is kept).
    """

    max_tries = 10

    def __init__(
        self,
        crop_size: int | tuple[int, int],
        ignore_index: int = -100,
        one_category_max_ratio: float = 0.75,
    ) -> None:
        self.crop_size = as_pair(crop_size, "crop_size")
        if min(self.crop_size) <= 0:
            raise ValueError(f"crop_size must be positive, got {crop_size!r}")
        if not 0 < one_category_max_ratio <= 1:
            raise ValueError(f"one_category_max_ratio must be in (0, 1], got {one_category_max_ratio}")
        self.ignore_index = ignore_index
        self.one_category_max_ratio = one_category_max_ratio

    def _acceptable(self, seg: np.ndarray) -> bool:
        return self.accepts(label_counts(seg, self.ignore_index))

    def accepts(self, counts: np.ndarray) -> bool:
        """Whether a window whose labels have ``counts`` (``ignore_index`` left out) is kept."""
        total = counts.sum()
        return total > 0 and np.count_nonzero(counts) > 1 and counts.max() / total < self.one_category_max_ratio

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        height, width = sample["image"].shape[:2]
        crop_h, crop_w = min(self.crop_size[0], height), min(self.crop_size[1], width)
        seg = sample.get("seg_target")
        check = seg is not None and self.one_category_max_ratio < 1
        for _ in range(self.max_tries if check else 1):
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            window = (slice(top, top + crop_h), slice(left, left + crop_w))
            if check and self._acceptable(seg[window]):
                break
        sample["image"] = np.ascontiguousarray(sample["image"][window])
        for key in LABEL_KEYS:
            if key in sample:
                sample[key] = np.ascontiguousarray(sample[key][window])
        return sample


@TRANSFORMS.register("RandomFlip")
class RandomFlip:
    """Flip image and labels horizontally with probability ``prob``.

    ``fixed_seg_target_pairs`` lists label pairs swapped by a flip (left arm <-> right arm in human parsing).
    """

    def __init__(self, prob: float, fixed_seg_target_pairs: list[tuple[int, int]] | None = None) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.fixed_seg_target_pairs = [tuple(pair) for pair in fixed_seg_target_pairs or []]

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if not self.draw(rng):
            return sample
        sample["image"] = cv2.flip(sample["image"], 1)
        for key in LABEL_KEYS:
            if key in sample:
                sample[key] = flip_labels(sample[key])
        self.swap_pairs(sample)
        return sample

    def draw(self, rng: np.random.Generator) -> bool:
        """This call's one random draw: whether to flip."""
        return rng.random() < self.prob

    def swap_pairs(self, sample: dict) -> None:
        """Swap ``fixed_seg_target_pairs`` in the sample's (just flipped) ``seg_target``, if any."""
        if "seg_target" in sample and self.fixed_seg_target_pairs:
            sample["seg_target"] = self._swap_pairs(sample["seg_target"])

    def _swap_pairs(self, seg: np.ndarray) -> np.ndarray:
        swapped = seg.copy()
        for a, b in self.fixed_seg_target_pairs:
            swapped[seg == a] = b
            swapped[seg == b] = a
        return swapped


def long_runs(change: np.ndarray) -> bool:
    """Whether the runs that ``change`` (``flat[1:] != flat[:-1]``, possibly with forced breaks) delimits are at
    least 8 pixels long on average: then counting runs beats counting pixels."""
    return np.count_nonzero(change) * 8 <= change.size + 1


def run_counts(flat: np.ndarray, change: np.ndarray, lo: int, span: int, weigh=None) -> np.ndarray:
    """Per value of ``flat`` (``lo .. lo + span - 1``) the total weight of its runs, a run ending wherever
    ``change`` is true: each run weighs its length, or ``weigh(starts, ends)`` (``int64``; exact below 2**53)."""
    starts = np.flatnonzero(change)
    starts += 1
    starts = np.concatenate(([0], starts))
    ends = np.append(starts[1:], flat.size)
    weights = ends - starts if weigh is None else weigh(starts, ends)
    return np.bincount(flat[starts].astype(np.intp) - lo, weights=weights, minlength=span).astype(np.int64)


def label_counts(labels: np.ndarray, ignore_index: int) -> np.ndarray:
    """Pixel count of every label value present (in value order, zeros for absent ones), ``ignore_index`` left out.

    Several times faster than ``np.unique``. Label maps are mostly long runs of one value, which a histogram counts
    slowly (every pixel increments the same counter as the one before): where runs are at least 8 pixels long on
    average, the runs are counted instead, weighted by their lengths. Otherwise values spanning at most 256 are
    shifted into one byte per pixel and counted by ``cv2.calcHist``; wider spans use ``np.bincount``; very wide ones
    fall back to ``np.unique``.
    """
    lo, hi = int(labels.min()), int(labels.max())
    span = hi - lo + 1
    flat = labels.ravel()
    change = flat[1:] != flat[:-1]
    if span <= 1 << 16 and long_runs(change):
        counts = run_counts(flat, change, lo, span)
    elif span <= 256 and labels.size < 1 << 24:  # float32 histogram counts are exact below 2**24
        shifted = np.subtract(labels, labels.dtype.type(lo), dtype=np.uint8, casting="unsafe")
        counts = cv2.calcHist([shifted], [0], None, [span], [0, span]).ravel().astype(np.int64)
    elif span <= 1 << 16:
        counts = np.bincount((labels - labels.dtype.type(lo)).ravel(), minlength=span)
    else:
        values, counts = np.unique(labels, return_counts=True)
        return counts[values != ignore_index]
    if 0 <= ignore_index - lo < span:
        counts[ignore_index - lo] = 0
    return counts
