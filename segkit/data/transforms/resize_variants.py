"""Resizes by the shortest edge (detectron2 style) and a random choice among several resizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ...registry import TRANSFORMS
from .geometric import Resize
from .ops import Interpolation, LabelInterpolation, resize_sample


def shortest_edge_size(height: int, width: int, short_edge: float, max_size: float) -> tuple[int, int]:
    """``(new_width, new_height)`` with the short side ``short_edge``, shrunk so the long side is <= ``max_size``."""
    scale = short_edge / min(height, width)
    new_h, new_w = (short_edge, scale * width) if height < width else (scale * height, short_edge)
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_w + 0.5), int(new_h + 0.5)


@TRANSFORMS.register("ResizeShortestEdge")
class ResizeShortestEdge:
    """Resize (keeping the aspect ratio) so the short side is ``short_edge_length`` (the smallest, for a list) and
    the long side at most ``max_size``; labels nearest-neighbour.

    The image is resized to exactly that size (SSSegmentation passes it on to ``Resize(keep_ratio=True)``, whose
    second rounding can move a side by one pixel). With ``min_size`` a short side below it is scaled up to it.
    """

    def __init__(
        self,
        short_edge_length: int | list[int],
        max_size: int,
        min_size: int | None = None,
        image_interpolation: Interpolation = "bilinear",
        seg_target_interpolation: LabelInterpolation = "nearest",
        img2aug_pos_mapper_interpolation: LabelInterpolation = "nearest",
    ) -> None:
        lengths = [short_edge_length] if isinstance(short_edge_length, int) else list(short_edge_length)
        if not lengths or min(lengths) <= 0 or max_size <= 0:
            raise ValueError(f"short_edge_length and max_size must be positive, got {short_edge_length!r}, {max_size}")
        self.short_edge_length = min(lengths)
        self.max_size = max_size
        self.min_size = min_size
        self.image_interpolation = image_interpolation
        self.seg_target_interpolation = seg_target_interpolation
        self.img2aug_pos_mapper_interpolation = img2aug_pos_mapper_interpolation

    def resize(self, sample: dict, short_edge: float) -> dict:
        """Resize ``sample`` for a short side of ``short_edge``."""
        height, width = sample["image"].shape[:2]
        new_w, new_h = shortest_edge_size(height, width, short_edge, self.max_size)
        if self.min_size is not None and min(new_w, new_h) < self.min_size:
            scale = self.min_size / min(height, width)
            new_w, new_h = int(width * scale + 0.5), int(height * scale + 0.5)
        return resize_sample(sample, (max(1, new_w), max(1, new_h)), self.image_interpolation)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        return self.resize(sample, self.short_edge_length)


@TRANSFORMS.register("RandomShortestEdgeResize")
class RandomShortestEdgeResize(ResizeShortestEdge):
    """:class:`ResizeShortestEdge` with the short side drawn uniformly from ``[lo, hi)`` = ``short_edge_range``."""

    def __init__(
        self,
        short_edge_range: tuple[int, int],
        max_size: int,
        min_size: int | None = None,
        image_interpolation: Interpolation = "bilinear",
        seg_target_interpolation: LabelInterpolation = "nearest",
        img2aug_pos_mapper_interpolation: LabelInterpolation = "nearest",
    ) -> None:
        low, high = (int(v) for v in short_edge_range)
        if not 0 < low < high:
            raise ValueError(f"short_edge_range must be (lo, hi) with 0 < lo < hi, got {short_edge_range!r}")
        super().__init__(
            low, max_size, min_size, image_interpolation, seg_target_interpolation, img2aug_pos_mapper_interpolation
        )
        self.short_edge_range = (low, high)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        return self.resize(sample, int(rng.integers(*self.short_edge_range)))


RESIZE_TYPES = {"Resize": (Resize, "output_size"), "ResizeShortestEdge": (ResizeShortestEdge, "short_edge_length")}


@TRANSFORMS.register("RandomChoiceResize")
class RandomChoiceResize:
    """Resize with one of ``scales``, chosen uniformly per sample.

    Each entry of ``scales`` (a list: ``[[2048, 512], [1024, 256]]`` is two sizes, ``[512, 640]`` two scalar
    ones) is the ``output_size`` of a :class:`Resize` or the ``short_edge_length`` of a :class:`ResizeShortestEdge`
    (``resize_type``); the other keyword arguments go to that transform, e.g.
    ``RandomChoiceResize(scales=[512, 640], resize_type="ResizeShortestEdge", max_size=2048)``. (A ``Resize`` keeps
    its default ``scale_range=(0.5, 2.0)`` unless ``scale_range`` is given, as in SSSegmentation.)
    """

    def __init__(
        self,
        scales: Sequence[Any] | int,
        resize_type: Literal["Resize", "ResizeShortestEdge"] = "Resize",
        **resize_kwargs: Any,
    ) -> None:
        cls, key = RESIZE_TYPES[resize_type]
        self.scales = list(scales) if isinstance(scales, Sequence) else [scales]
        if not self.scales:
            raise ValueError("scales must not be empty")
        self.resize_type = resize_type
        self.transforms = [cls(**{**resize_kwargs, key: scale}) for scale in self.scales]

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        return self.transforms[int(rng.integers(len(self.transforms)))](sample, rng)

