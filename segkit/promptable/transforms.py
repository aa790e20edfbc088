"""Resizing an image so its longest side is the model's input size, and mapping prompts into that frame.

The image is resized with Pillow's bilinear filter on uint8 (as the official SAM predictors), so masks match theirs
pixel for pixel; coordinates scale by the same per-axis factors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """The (h, w) after scaling so the longer side is ``long_side`` (rounded half up)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class ResizeLongestSide:
    """Resize images (HWC uint8) and (x, y) coordinates / boxes to a longest side of ``target_length``."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        height, width = preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        if (height, width) == image.shape[:2]:
            return np.ascontiguousarray(image)
        return np.array(Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """``[..., 2]`` (x, y) in the original image -> the resized image (float)."""
        old_h, old_w = original_size
        new_h, new_w = preprocess_shape(old_h, old_w, self.target_length)
        coords = np.array(coords, dtype=float, copy=True)
        coords[..., 0] *= new_w / old_w
        coords[..., 1] *= new_h / old_h
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """``[..., 4]`` (x0, y0, x1, y1) -> the resized image, ``[N, 4]``."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """A ``[B, C, H, W]`` float batch, resized with bilinear + antialias (the official torch variant)."""
        size = preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, size, mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        old_h, old_w = original_size
        new_h, new_w = preprocess_shape(old_h, old_w, self.target_length)
        scale = torch.tensor([new_w / old_w, new_h / old_h], dtype=torch.float32, device=coords.device)
        return coords.to(torch.float32) * scale

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)
