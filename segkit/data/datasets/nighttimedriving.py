"""Nighttime Driving test set (evaluation only), with Cityscapes' 19 train classes."""

from __future__ import annotations

import os
from typing import Any

from ...errors import DataError
from ...registry import DATASETS
from .base import missing_message
from .cityscapes import CITYSCAPES_CLASSNAMES, CITYSCAPES_PALETTE
from .darkzurich import TRAINID_VOID, EvaluationOnlyDataset

IMAGE_DIR = "leftImg8bit/test/night"
IMAGE_SUFFIX = "_leftImg8bit.png"


@DATASETS.register("NighttimeDrivingDataset")
class NighttimeDrivingDataset(EvaluationOnlyDataset):
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

    def layout(self) -> dict[str, Any]:
        image_dir = os.path.join(self.rootdir, IMAGE_DIR)
        if not os.path.isdir(image_dir):
            raise DataError(missing_message("image directory", image_dir, self.prepare_hint))
        names = sorted(name for name in os.listdir(image_dir) if name.endswith(IMAGE_SUFFIX))
        return {
            "image_dir": IMAGE_DIR,
            "ann_dir": "gtCoarse_daytime_trainvaltest/test/night",
            "image_ext": IMAGE_SUFFIX,
            "ann_ext": "_gtCoarse_labelTrainIds.png",
            "imageids": [name[: -len(IMAGE_SUFFIX)] for name in names],
        }
