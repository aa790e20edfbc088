"""Chaining transforms, and building a chain from recipe tables.

A transform is any callable ``transform(sample, rng) -> sample`` where ``sample`` is the dict described in
``segkit.data`` (``image``, ``seg_target``, ``width``, ``height``, ``id``, optionally ``edge_target`` and
``img2aug_pos_mapper``) and ``rng`` is a ``numpy.random.Generator``. All randomness comes from ``rng``, never from
global state, so a sample depends only on the generator it is given (the dataset derives it from
``(seed, epoch, index)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...errors import RecipeError
from ...registry import TRANSFORMS

Transform = Callable[[dict, np.random.Generator], dict]

LABEL_KEYS = ("seg_target", "edge_target", "img2aug_pos_mapper")
"""Per-pixel integer maps transformed alongside the image (nearest-neighbour, filled where nothing maps).

``img2aug_pos_mapper`` holds, at each output pixel, the flat index ``y * width + x`` of the original pixel it came
from (``-1`` where none did); see ``BaseDataset(record_img2aug_pos_mapper=True)``.
"""

LABEL_FILL_VALUES = {"seg_target": -100, "edge_target": -100, "img2aug_pos_mapper": -1}
"""Default fill of each label map where a transform uncovers pixels (padding, rotation corners, cut-out holes)."""


class Compose:
    """Apply transforms in order, passing every one the same random generator.

    Where the chain allows, it runs the fast paths of :mod:`.fused` (compact label maps until ``ToTensor``;
    ``Resize -> RandomCrop [-> RandomFlip]`` computing only the kept window; ``Normalize -> ToTensor [-> Padding]`` in
    one step), which give the same samples (the windowed resize within a level of the image's; see :mod:`.fused`);
    ``fast=False`` turns them off.

    ``defer_normalize`` (set through :meth:`defer_normalization`, by a training loader whose device normalises)
    makes the fused ``Normalize -> ToTensor [-> Padding]`` hand over a ``uint8`` image for
    :class:`~segkit.data.transforms.fused.DeviceNormalize` to finish.
    """

    def __init__(self, transforms: Sequence[Transform] = (), fast: bool = True) -> None:
        self.transforms = list(transforms)
        self.fast = fast
        self.defer_normalize = False
        self._plan: Any = None
        self._planned_for: list | None = None

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if not self.fast:
            for transform in self.transforms:
                sample = transform(sample, rng)
            return sample
        from . import fused

        plan = self._current_plan()
        if plan.compact is not None:
            fused.compact_labels(sample, plan.compact)
        index = 0
        while index < len(self.transforms):
            if index in plan.crops:
                flip = self.transforms[index + 2] if index in plan.flips else None
                sample = fused.resize_then_crop(sample, self.transforms[index], self.transforms[index + 1], rng, flip)
                index += 2 if flip is None else 3
                continue
            if index == plan.photometric:
                done = fused.photometric_then_tail(sample, *self.transforms[index : index + 2],
                                                   self._tail_padding(plan), rng, self.defer_normalize)
                if done is not None:
                    sample, index = done, index + 3 + plan.padded_tail
                    continue
            if index == plan.tail:
                done = fused.normalize_to_padded_tensor(sample, self.transforms[index], self._tail_padding(plan),
                                                        deferred=self.defer_normalize)
                if done is not None:
                    sample, index = done, index + 2 + plan.padded_tail
                    continue
            sample = self.transforms[index](sample, rng)
            index += 1
        return sample

    def compact_bounds(self) -> tuple[int, int] | None:
        """The label constants of the chain when its label maps travel as ``int16`` until ``ToTensor`` (a dataset
        may then read them as ``int16`` straight away), else ``None``."""
        return self._current_plan().compact if self.fast else None

    def defer_normalization(self) -> Any:
        """Leave ``Normalize`` (and the image's padding) to the device: from now on samples that take the fused
        ``Normalize -> ToTensor [-> Padding]`` carry a ``uint8`` image, finished by the
        :class:`~segkit.data.transforms.fused.DeviceNormalize` returned. ``None`` (and nothing changes) where the
        chain has no such tail or runs without fast paths."""
        from . import fused

        tail = self._current_plan().tail if self.fast else None
        if tail is None:
            return None
        self.defer_normalize = True
        return fused.DeviceNormalize(self.transforms[tail], self._tail_padding(self._current_plan()))

    def _tail_padding(self, plan) -> Any:
        """The ``Padding`` that ends the fused tail of ``plan``, or ``None``."""
        return self.transforms[plan.tail + 2] if plan.padded_tail else None

    def _current_plan(self):
        """The fast paths of the current transform list (planned again when the list changes)."""
        from . import fused

        if self._planned_for != self.transforms:
            self._plan, self._planned_for = fused.make_plan(self.transforms), list(self.transforms)
        return self._plan

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = ", ".join(type(t).__name__ for t in self.transforms)
        return f"Compose([{inner}])"


def build_pipeline(cfgs: Sequence[Any] | Compose | None, path: str = "data_pipelines") -> Compose:
    """Build a :class:`Compose` from recipe tables ``{"type": "Resize", ...}``.

    SSSegmentation's tuple form ``("Resize", {...})`` is accepted too. Errors name the entry, e.g.
    ``dataset.train.data_pipelines[1].crop_sise: RandomCrop takes no 'crop_sise'; did you mean 'crop_size'?``.
    """
    if cfgs is None:
        return Compose()
    if isinstance(cfgs, Compose):
        return cfgs
    if isinstance(cfgs, (str, dict)) or not isinstance(cfgs, Sequence):
        raise RecipeError(path, f"expected a list of transform tables, got {type(cfgs).__name__}")
    transforms = []
    for i, cfg in enumerate(cfgs):
        item_path = f"{path}[{i}]"
        if callable(cfg) and not isinstance(cfg, dict):
            transforms.append(cfg)
            continue
        if isinstance(cfg, (tuple, list)) and len(cfg) == 2 and isinstance(cfg[0], str):
            cfg = {"type": cfg[0], **(cfg[1] or {})}
        try:
            transforms.append(TRANSFORMS.build(cfg, path=item_path))
        except (ValueError, TypeError) as exc:  # a constructor's own check (range, shape, ...)
            raise RecipeError(item_path, f"{cfg.get('type')}: {exc}") from None
    return Compose(transforms)


def as_pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``5 -> (5, 5)``; ``(a, b) -> (a, b)``; anything else is a ``ValueError`` naming ``name``."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    values = tuple(int(v) for v in value)
    if len(values) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return values  # type: ignore[return-value]


def as_range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """``x -> (x, x)``; ``(lo, hi) -> (lo, hi)`` with ``lo <= hi``; else a ``ValueError`` naming ``name``."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value), float(value)
    values = tuple(float(v) for v in value)
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name} must be a number or a pair (lo, hi) with lo <= hi, got {value!r}")
    return values  # type: ignore[return-value]
