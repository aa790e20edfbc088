"""Random cut-out: rectangular holes filled with a constant in the image and with "ignore" in the label maps."""

from __future__ import annotations

import numpy as np

from ...registry import TRANSFORMS
from .compose import as_pair


@TRANSFORMS.register("RandomCutOut")
class RandomCutOut:
    """With probability ``prob``, cut ``n_holes`` rectangles (an int, or ``(lo, hi)`` drawn inclusively).

    Each hole's top-left corner is uniform over the image and its size is one of the candidates, chosen uniformly:
    ``cutout_shape`` gives ``(width, height)`` pairs in pixels, ``cutout_ratio`` ``(width, height)`` fractions of
    the image size (exactly one of the two). Holes are clipped at the image border. Inside a hole the image gets
    ``image_fill_value`` and the label maps ``seg_target_fill_value``, ``edge_target_fill_value`` and
    ``img2aug_pos_mapper_fill_value`` (so a cut-out pixel is ignored by the loss and maps to no original pixel).
    SSSegmentation 1.7.0 indexes the 2-D label maps with three subscripts there and fails; here they are filled.
    """

    def __init__(
        self,
        prob: float,
        n_holes: int | tuple[int, int],
        cutout_shape: tuple[int, int] | list[tuple[int, int]] | None = None,
        cutout_ratio: tuple[float, float] | list[tuple[float, float]] | None = None,
        image_fill_value: float | tuple[float, ...] = (0, 0, 0),
        seg_target_fill_value: int = -100,
        img2aug_pos_mapper_fill_value: int = -1,
        edge_target_fill_value: int = -100,
    ) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if (cutout_shape is None) == (cutout_ratio is None):
            raise ValueError("give exactly one of cutout_shape and cutout_ratio")
        self.n_holes = as_pair(n_holes, "n_holes")
        if not 0 <= self.n_holes[0] <= self.n_holes[1]:
            raise ValueError(f"n_holes must be >= 0 or (lo, hi) with 0 <= lo <= hi, got {n_holes!r}")
        self.prob = prob
        self.with_ratio = cutout_ratio is not None
        candidates = cutout_ratio if self.with_ratio else cutout_shape
        self.candidates = [candidates] if _is_pair(candidates) else [tuple(c) for c in candidates]
        self.image_fill_value = image_fill_value
        self.fill_values = {
            "seg_target": seg_target_fill_value,
            "edge_target": edge_target_fill_value,
            "img2aug_pos_mapper": img2aug_pos_mapper_fill_value,
        }

    def holes(self, height: int, width: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
        """The ``(top, bottom, left, right)`` bounds of this sample's holes (none when the coin says no)."""
        if rng.random() >= self.prob:
            return []
        bounds = []
        for _ in range(int(rng.integers(self.n_holes[0], self.n_holes[1] + 1))):
            left, top = int(rng.integers(0, width)), int(rng.integers(0, height))
            hole_w, hole_h = self.candidates[int(rng.integers(len(self.candidates)))]
            if self.with_ratio:
                hole_w, hole_h = int(hole_w * width), int(hole_h * height)
            bounds.append((top, min(top + int(hole_h), height), left, min(left + int(hole_w), width)))
        return bounds

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        height, width = sample["image"].shape[:2]
        holes = self.holes(height, width, rng)
        if not holes:
            return sample
        sample["image"] = image = sample["image"].copy()
        labels = {key: sample[key].copy() for key in self.fill_values if key in sample}
        fill = np.asarray(self.image_fill_value, dtype=image.dtype)
        for top, bottom, left, right in holes:
            image[top:bottom, left:right] = fill
            for key, label in labels.items():
                label[top:bottom, left:right] = self.fill_values[key]
        sample.update(labels)
        return sample


def _is_pair(value: object) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
