"""ATR human parsing, in the layout of SSSegmentation's ``ATR.tar.gz``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...registry import DATASETS
from .base import BaseDataset, read_imageids, voc_palette

ATR_CLASSNAMES = [
    "__background__", "hat", "hair", "sunglasses", "coat", "skirt",
    "pants", "dress", "belt", "leftShoe", "rightShoe", "face",
    "leftLeg", "rightLeg", "leftHand", "rightHand", "bags", "scarf",
]  # fmt: skip


@DATASETS.register("ATRDataset")
class ATRDataset(BaseDataset):
    """ATR: 18 classes stored as class ids (no remap); VOC bit palette.

    Layout::

        rootdir/JPEGImages/<id>.jpg
        rootdir/SegmentationClassAug/<id>.png
        rootdir/<set>_id.txt                   ids, one per line

    ``fixed_seg_target_pairs`` are the left/right shoe, leg and hand labels to give ``RandomFlip``.
    """

    num_classes = 18
    classnames = ATR_CLASSNAMES
    palette = voc_palette(18)
    fixed_seg_target_pairs = [(9, 10), (12, 13), (14, 15)]

    def __init__(
        self,
        rootdir: str,
        set: str = "train",  # noqa: A002  (SSSegmentation's name)
        data_pipelines: Callable[[dict, np.random.Generator], dict] | Sequence[dict] | None = None,
        mode: Literal["TRAIN", "TEST"] = "TRAIN",
        repeat_times: int = 1,
        ignore_index: int = -100,
        auto_correct_invalid_seg_target: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            image_dir="JPEGImages",
            ann_dir="SegmentationClassAug",
            image_ext=".jpg",
            ann_ext=".png",
            imageids=read_imageids(os.path.join(rootdir, f"{set}_id.txt"), self.prepare_hint),
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            seed=seed,
        )
