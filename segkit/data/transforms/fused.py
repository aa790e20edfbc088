"""Fast paths of :class:`~segkit.data.transforms.compose.Compose` that give exactly the samples of running its
transforms one by one (same random draws, same arrays and tensors), with less memory traffic.

- **Compact label maps.** When every transform before ``ToTensor`` is one of :data:`LABEL_AGNOSTIC` (their label
  work is nearest-neighbour resizing, cropping, flipping, padding and value comparisons, exact for every integer
  type), ``int64`` label maps whose values (and every fill value and swapped pair) fit ``int16`` travel as ``int16``
  (``img2aug_pos_mapper`` as ``int32``) and become ``int64`` at ``ToTensor``: a quarter of the bytes to resize, count,
  crop, flip and pad.
- **Normalize -> ToTensor -> Padding(tensor) in one step.** The normalised planes of a ``uint8`` image are written
  by ``cv2.LUT`` straight into the padded ``CxHxW`` buffer (filled with the padding value first), and each label
  map is copied once into its padded ``int64`` tensor: no padded copy of the float image, no separate conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .compose import LABEL_KEYS
from .geometric import RandomCrop, RandomFlip, Resize
from .photometric import Normalize, PhotoMetricDistortion
from .tensor import Padding, ToTensor

LABEL_AGNOSTIC = (Resize, RandomCrop, RandomFlip, PhotoMetricDistortion, Normalize, Padding)
"""Transforms whose results do not depend on the integer type of the label maps (exact types, not subclasses)."""

COMPACT_TYPES = {"seg_target": np.int16, "edge_target": np.int16, "img2aug_pos_mapper": np.int32}


@dataclass(frozen=True)
class FastPlan:
    """Where a transform list can take the fast paths: ``compact`` label bounds, and the start of a fusable tail."""

    compact: tuple[int, int] | None  # every int constant a label map meets before ToTensor (lo, hi); None: off
    tail: int | None  # index of a Normalize followed by ToTensor and Padding(data_type="tensor")


def make_plan(transforms: Sequence) -> FastPlan:
    """The fast paths that apply to ``transforms`` (decided once, from their types and arguments)."""
    kinds = [type(t) for t in transforms]
    compact = None
    if ToTensor in kinds:
        before = transforms[: kinds.index(ToTensor)]
        if before and all(type(t) in LABEL_AGNOSTIC for t in before):
            constants = [-100, -1]
            for t in before:
                if isinstance(t, Padding):
                    constants += [int(v) for v in t.fill_values.values()]
                if isinstance(t, RandomFlip):
                    constants += [int(v) for pair in t.fixed_seg_target_pairs for v in pair]
            compact = (min(constants), max(constants))
    tail = None
    for i in range(len(kinds) - 2):
        if kinds[i : i + 3] == [Normalize, ToTensor, Padding] and transforms[i + 2].data_type == "tensor":
            tail = i
            break
    return FastPlan(compact, tail)


def compact_labels(sample: dict, bounds: tuple[int, int]) -> None:
    """Store the sample's ``int64`` label maps in :data:`COMPACT_TYPES` where their values and ``bounds`` fit."""
    for key, kind in COMPACT_TYPES.items():
        labels = sample.get(key)
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 2 or not labels.size:
            continue
        info = np.iinfo(kind)
        lo, hi = min(int(labels.min()), bounds[0]), max(int(labels.max()), bounds[1])
        if info.min <= lo and hi <= info.max:
            sample[key] = labels.astype(kind)


def normalize_to_padded_tensor(sample: dict, normalize: Normalize, padding: Padding) -> dict | None:
    """``Normalize``, ``ToTensor`` and ``Padding(data_type="tensor")`` at once; ``None`` where the image is not a
    ``uint8`` array of at most 4 channels (the caller then runs the three transforms)."""
    image = sample["image"]
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        return None
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels > 4 or channels != len(normalize.tables):
        return None
    height, width = image.shape[:2]
    out_h, out_w = padding._target(height, width)
    pad_h, pad_w = max(out_h - height, 0), max(out_w - width, 0)
    top, left = pad_h // 2, pad_w // 2
    full_h, full_w = height + pad_h, width + pad_w
    buffer = np.empty((channels, full_h, full_w), np.float32)
    if pad_h or pad_w:
        buffer.fill(np.float32(padding.image_fill_value))
    normalize._lookup(image, out=buffer[:, top : top + height, left : left + width])
    sample["image"] = torch.from_numpy(buffer)
    for key in LABEL_KEYS:
        if key not in sample:
            continue
        value = sample[key]
        value = value if torch.is_tensor(value) else torch.from_numpy(np.ascontiguousarray(value))
        if pad_h or pad_w:
            padded = torch.full((full_h, full_w), padding.fill_values[key], dtype=torch.int64)
            padded[top : top + height, left : left + width] = value
            sample[key] = padded
        else:
            sample[key] = value.long()
    return sample
