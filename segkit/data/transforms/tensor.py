"""Conversion to tensors, and centre padding (of numpy arrays or tensors)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ...registry import TRANSFORMS
from .compose import LABEL_KEYS, as_pair
from .ops import pad_array


@TRANSFORMS.register("ToTensor")
class ToTensor:
    """``image`` HxWxC -> CxHxW ``float32`` tensor; label maps (``seg_target``, ``edge_target``,
    ``img2aug_pos_mapper``) -> ``int64`` tensors (SSSegmentation makes them ``float32``; class ids are integers)."""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        if isinstance(image, np.ndarray):
            if image.ndim == 2:
                image = image[:, :, None]
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        sample["image"] = image.float()
        for key in LABEL_KEYS:
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
        img2aug_pos_mapper_fill_value: int = -1,
        output_size_auto_adaptive: bool = True,
    ) -> None:
        self.output_size = as_pair(output_size, "output_size")
        self.data_type = data_type
        self.image_fill_value = image_fill_value
        self.fill_values = {
            "seg_target": seg_target_fill_value,
            "edge_target": edge_target_fill_value,
            "img2aug_pos_mapper": img2aug_pos_mapper_fill_value,
        }
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
        pad = _pad_tensor if is_tensor else pad_array
        sample["image"] = pad(image, borders, self.image_fill_value)
        for key, fill in self.fill_values.items():
            if key in sample:
                sample[key] = pad(sample[key], borders, fill)
        return sample


def _pad_tensor(tensor: torch.Tensor, borders: tuple[int, int, int, int], fill: float) -> torch.Tensor:
    """Pad the last two dims of a tensor by ``(top, bottom, left, right)`` with a constant."""
    top, bottom, left, right = borders
    return F.pad(tensor, (left, right, top, bottom), mode="constant", value=fill)
