"""Conversion to tensors, and centre padding (of numpy arrays or tensors)."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...registry import TRANSFORMS
from .compose import as_pair


@TRANSFORMS.register("ToTensor")
class ToTensor:
    """``image`` HxWxC -> CxHxW ``float32`` tensor; label maps -> ``int64`` tensors."""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        if isinstance(image, np.ndarray):
            if image.ndim == 2:
                image = image[:, :, None]
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        sample["image"] = image.float()
        for key in ("seg_target", "edge_target"):
            if key in sample:
                value = sample[key]
                if not torch.is_tensor(value):
                    value = torch.from_numpy(np.ascontiguousarray(value))
                sample[key] = value.long()
        return sample


@TRANSFORMS.register("Padding")
class Padding:
    """Pad image and labels to ``output_size`` = ``(height, width)``, centred; never crops.

    ``top = (H - h) // 2`` and ``left = (W - w) // 2``. With ``output_size_auto_adaptive`` the target is transposed
    when its orientation disagrees with the image's (a portrait image padded to a landscape size). ``data_type``
    says what the sample holds at this point: ``'numpy'`` (HxWxC arrays, before ``ToTensor``) or ``'tensor'``
    (CxHxW tensors, after it). The image fill value applies to whatever the image holds then (after ``Normalize``,
    0 is the mean colour).
    """

    def __init__(
        self,
        output_size: int | tuple[int, int],
        data_type: Literal["numpy", "tensor"] = "numpy",
        image_fill_value: float = 0,
        seg_target_fill_value: int = -100,
        edge_target_fill_value: int = -100,
        output_size_auto_adaptive: bool = True,
    ) -> None:
        self.output_size = as_pair(output_size, "output_size")
        self.data_type = data_type
        self.image_fill_value = image_fill_value
        self.fill_values = {"seg_target": seg_target_fill_value, "edge_target": edge_target_fill_value}
        self.output_size_auto_adaptive = output_size_auto_adaptive

    def _target(self, height: int, width: int) -> tuple[int, int]:
        out_h, out_w = self.output_size
        if self.output_size_auto_adaptive and (height - width) * (out_h - out_w) < 0:
            out_h, out_w = out_w, out_h
        return out_h, out_w

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        is_tensor = torch.is_tensor(image)
        if is_tensor != (self.data_type == "tensor"):
            where = "after ToTensor" if is_tensor else "before ToTensor"
            raise TypeError(
                f"Padding(data_type='{self.data_type}') is placed {where}; set data_type accordingly"
            )
        height, width = image.shape[-2:] if is_tensor else image.shape[:2]
        out_h, out_w = self._target(height, width)
        pad_h, pad_w = max(out_h - height, 0), max(out_w - width, 0)
        if pad_h == 0 and pad_w == 0:
            return sample
        top, left = pad_h // 2, pad_w // 2
        borders = (top, pad_h - top, left, pad_w - left)
        pad = _pad_tensor if is_tensor else _pad_array
        sample["image"] = pad(image, borders, self.image_fill_value)
        for key, fill in self.fill_values.items():
            if key in sample:
                sample[key] = pad(sample[key], borders, fill)
        return sample


def _pad_array(array: np.ndarray, borders: tuple[int, int, int, int], fill: float) -> np.ndarray:
    """Pad an HxW or HxWxC array by ``(top, bottom, left, right)`` with a constant (dtype preserved)."""
    dtype = array.dtype
    work = array.astype(np.int32) if dtype == np.int64 else array  # OpenCV has no 64-bit integers
    channels = 1 if work.ndim == 2 else work.shape[2]
    value = (fill,) * min(channels, 4)
    if channels > 4:  # copyMakeBorder's fill holds at most 4 channels
        padded = np.pad(array, (borders[:2], borders[2:], (0, 0)), constant_values=fill)
    else:
        padded = cv2.copyMakeBorder(work, *borders, cv2.BORDER_CONSTANT, value=value)
        if padded.ndim == 2 and work.ndim == 3:
            padded = padded[:, :, None]
    return padded.astype(dtype, copy=False)


def _pad_tensor(tensor: torch.Tensor, borders: tuple[int, int, int, int], fill: float) -> torch.Tensor:
    """Pad the last two dims of a tensor by ``(top, bottom, left, right)`` with a constant."""
    top, bottom, left, right = borders
    return F.pad(tensor, (left, right, top, bottom), mode="constant", value=fill)
