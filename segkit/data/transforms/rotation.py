"""Random rotation about the image centre; image and label maps share one affine matrix."""

from __future__ import annotations

import cv2
import numpy as np

from ...registry import TRANSFORMS
from .ops import WARP_INTERPOLATIONS, Interpolation, LabelInterpolation, cv2_fill, warp_labels


@TRANSFORMS.register("RandomRotation")
class RandomRotation:
    """With probability ``prob``, rotate by an integer angle drawn from ``[-angle_upper, angle_upper)`` degrees
    (counter-clockwise positive) about the image centre, on the same canvas.

    Uncovered corners get ``image_fill_value`` (every channel), ``seg_target_fill_value``,
    ``edge_target_fill_value`` and ``img2aug_pos_mapper_fill_value``. Labels are warped nearest-neighbour with the
    image's matrix, so a label pixel and the image pixel it sits on come from the same source point. The centre is
    the exact pixel centre ``((w - 1) / 2, (h - 1) / 2)`` (SSSegmentation's ``(w / 2, h / 2)`` is half a pixel off,
    which only shifts the result slightly).
    """

    def __init__(
        self,
        prob: float = 0.5,
        angle_upper: int = 30,
        image_fill_value: float = 0.0,
        seg_target_fill_value: int = -100,
        image_interpolation: Interpolation = "bicubic",
        seg_target_interpolation: LabelInterpolation = "nearest",
        img2aug_pos_mapper_fill_value: int = -1,
        img2aug_pos_mapper_interpolation: LabelInterpolation = "nearest",
        edge_target_fill_value: int = -100,
    ) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if angle_upper <= 0:
            raise ValueError(f"angle_upper must be positive, got {angle_upper}")
        self.prob = prob
        self.angle_upper = angle_upper
        self.image_fill_value = image_fill_value
        self.image_interpolation = image_interpolation
        self.seg_target_interpolation = seg_target_interpolation
        self.img2aug_pos_mapper_interpolation = img2aug_pos_mapper_interpolation
        self.fill_values = {
            "seg_target": seg_target_fill_value,
            "edge_target": edge_target_fill_value,
            "img2aug_pos_mapper": img2aug_pos_mapper_fill_value,
        }

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if rng.random() >= self.prob:
            return sample
        angle = int(rng.integers(-self.angle_upper, self.angle_upper))
        return self.rotate(sample, angle)

    def rotate(self, sample: dict, angle: float) -> dict:
        """Rotate ``sample`` by ``angle`` degrees."""
        image = sample["image"]
        height, width = image.shape[:2]
        matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
        sample["image"] = cv2.warpAffine(
            image,
            matrix,
            (width, height),
            flags=WARP_INTERPOLATIONS[self.image_interpolation],
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=cv2_fill(self.image_fill_value, image),
        )
        for key, fill in self.fill_values.items():
            if key in sample:
                sample[key] = warp_labels(sample[key], matrix, (width, height), fill)
        return sample
