"""Nighttime Driving test set (evaluation only), with Cityscapes' 19 train classes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...errors import DataError
from ...registry import DATASETS
from .base import BaseDataset, missing_message
from .cityscapes import CITYSCAPES_CLASSNAMES, CITYSCAPES_PALETTE
from .darkzurich import TRAINID_VOID, require_val
from .voc import void_to

IMAGE_DIR = "leftImg8bit/test/night"
IMAGE_SUFFIX = "_leftImg8bit.png"


@DATASETS.register("NighttimeDrivingDataset")
class NighttimeDrivingDataset(BaseDataset):
    """Nighttime Driving: 50 night images with coarse Cityscapes trainId labels (255 = void).

    Layout of ``NighttimeDrivingTest.zip`` (no id list: the ids are the image files found, sorted)::

        rootdir/leftImg8bit/test/night/<id>_leftImg8bit.png
        rootdir/gtCoarse_daytime_trainvaltest/test/night/<id>_gtCoarse_labelTrainIds.png

    Only ``set = "val"`` exists (any other set is a ``DataError``); use it in ``'TEST'`` mode.
    """

    num_classes = 19
    classnames = CITYSCAPES_CLASSNAMES
    palette = CITYSCAPES_PALETTE
    clsid2label = TRAINID_VOID

    def __init__(
        self,
        rootdir: str,
        set: Literal["val"] = "val",  # noqa: A002  (SSSegmentation's name)
        data_pipelines: Callable[[dict, np.random.Generator], dict] | Sequence[dict] | None = None,
        mode: Literal["TRAIN", "TEST"] = "TEST",
        repeat_times: int = 1,
        ignore_index: int = -100,
        auto_correct_invalid_seg_target: bool = False,
        seed: int = 0,
    ) -> None:
        require_val(type(self).__name__, set)
        image_dir = os.path.join(rootdir, IMAGE_DIR)
        if not os.path.isdir(image_dir):
            raise DataError(missing_message("image directory", image_dir, self.prepare_hint))
        names = sorted(name for name in os.listdir(image_dir) if name.endswith(IMAGE_SUFFIX))
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            image_dir=IMAGE_DIR,
            ann_dir="gtCoarse_daytime_trainvaltest/test/night",
            image_ext=IMAGE_SUFFIX,
            ann_ext="_gtCoarse_labelTrainIds.png",
            imageids=[name[: -len(IMAGE_SUFFIX)] for name in names],
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            clsid2label=void_to(TRAINID_VOID, ignore_index),
            seed=seed,
        )
