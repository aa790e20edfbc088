"""LIP (Look Into Person) human parsing, in the layout of SSSegmentation's ``LIP.tar.gz``.

The palette and the left/right flip pairs defined here are shared with CIHP (same 20 labels but one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...errors import DataError
from ...registry import DATASETS
from .base import BaseDataset, Palette, read_imageids

LIP_CLASSNAMES = [
    "__background__", "hat", "hair", "glove", "sunglasses", "upperclothes", "dress",
    "coat", "socks", "pants", "jumpsuits", "scarf", "skirt", "face",
    "leftArm", "rightArm", "leftLeg", "rightLeg", "leftShoe", "rightShoe",
]  # fmt: skip
HUMAN_PARSING_PALETTE: Palette = [
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85),
    (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255),
    (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
]  # fmt: skip
"""SSSegmentation's fixed LIP/CIHP colours (RGB), one per class."""
HUMAN_PARSING_FLIP_PAIRS = [(15, 14), (17, 16), (19, 18)]
"""(right, left) arm, leg and shoe labels of LIP/CIHP, swapped by a horizontal flip."""

LIP_SET_DIRS = {"train": "train", "val": "val", "test": "testing"}


@DATASETS.register("LIPDataset")
class LIPDataset(BaseDataset):
    """LIP: 20 classes (background + 19 parts and clothes), labels stored as class ids (no remap).

    Layout (``{s}`` is ``train``, ``val`` or ``testing`` for ``set`` = ``train``, ``val``, ``test``)::

        rootdir/{s}_images/<id>.jpg
        rootdir/{s}_segmentations/<id>.png
        rootdir/<set>_id.txt                 ids, one per line

    ``fixed_seg_target_pairs`` are the left/right labels to give ``RandomFlip`` (and flip TTA).
    """

    num_classes = 20
    classnames = LIP_CLASSNAMES
    palette = HUMAN_PARSING_PALETTE
    fixed_seg_target_pairs = HUMAN_PARSING_FLIP_PAIRS

    def __init__(
        self,
        rootdir: str,
        set: Literal["train", "val", "test"] = "train",  # noqa: A002  (SSSegmentation's name)
        data_pipelines: Callable[[dict, np.random.Generator], dict] | Sequence[dict] | None = None,
        mode: Literal["TRAIN", "TEST"] = "TRAIN",
        repeat_times: int = 1,
        ignore_index: int = -100,
        auto_correct_invalid_seg_target: bool = False,
        seed: int = 0,
    ) -> None:
        if set not in LIP_SET_DIRS:
            raise DataError(f"LIPDataset has no set {set!r}; choose one of {', '.join(LIP_SET_DIRS)}")
        folder = LIP_SET_DIRS[set]
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            image_dir=f"{folder}_images",
            ann_dir=f"{folder}_segmentations",
            image_ext=".jpg",
            ann_ext=".png",
            imageids=read_imageids(os.path.join(rootdir, f"{set}_id.txt"), self.prepare_hint),
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            seed=seed,
        )
