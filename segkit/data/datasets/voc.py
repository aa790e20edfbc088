"""PASCAL VOC 2012 (and the SBD-augmented ``trainaug`` split), in its official on-disk layout."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...registry import DATASETS
from .base import BaseDataset, read_imageids, voc_palette

VOC_CLASSNAMES = [
    "__background__",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


@DATASETS.register("VOCDataset")
class VOCDataset(BaseDataset):
    """PASCAL VOC: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNG; 255 = void),
    ids from ``ImageSets/Segmentation/<set>.txt`` (``train``, ``val``, ``trainaug``); 21 classes."""

    num_classes = 21
    classnames = VOC_CLASSNAMES
    palette = voc_palette(21)
    clsid2label = {255: -100}
    prepare_hint = None  # `segkit prepare-data voc` comes with the datasets issue

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
        split_file = os.path.join(rootdir, "ImageSets", "Segmentation", f"{set}.txt")
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            image_dir="JPEGImages",
            ann_dir="SegmentationClass",
            image_ext=".jpg",
            ann_ext=".png",
            imageids=read_imageids(split_file, self.prepare_hint),
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            seed=seed,
        )
