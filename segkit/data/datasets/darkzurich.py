"""Dark Zurich (night-time driving, evaluation only), with Cityscapes' 19 train classes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...errors import DataError
from ...registry import DATASETS
from .base import BaseDataset, read_imageids
from .cityscapes import CITYSCAPES_CLASSNAMES, CITYSCAPES_PALETTE
from .voc import VOID, void_to

TRAINID_VOID = {255: VOID}
"""Cityscapes ``*_labelTrainIds.png`` store void as 255. SSSegmentation has no remap here, so its label check
rejects 255 unless ``auto_correct_invalid_seg_target`` is set; segkit maps it to ``ignore_index`` directly."""


def require_val(dataset: str, set: str) -> None:  # noqa: A002  (SSSegmentation's name)
    """Evaluation-only datasets have a ``val`` set and nothing else."""
    if set != "val":
        raise DataError(f"{dataset} is evaluation-only: set must be 'val', got {set!r}")


@DATASETS.register("DarkZurichDataset")
class DarkZurichDataset(BaseDataset):
    """Dark Zurich ``val`` (night, sequence GOPR0356): 19 Cityscapes classes stored as trainIds (255 = void).

    Layout of ``Dark_Zurich_val_anon.zip``::

        rootdir/rgb_anon/val/night/GOPR0356/<id>_rgb_anon.png
        rootdir/gt/val/night/GOPR0356/<id>_gt_labelTrainIds.png
        rootdir/lists_file_names/val_filenames.txt     paths; the id is the last component

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
        listed = read_imageids(
            os.path.join(rootdir, "lists_file_names", "val_filenames.txt"), self.prepare_hint
        )
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            image_dir="rgb_anon/val/night/GOPR0356",
            ann_dir="gt/val/night/GOPR0356",
            image_ext="_rgb_anon.png",
            ann_ext="_gt_labelTrainIds.png",
            imageids=[line.rstrip("/").split("/")[-1] for line in listed],
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            clsid2label=void_to(TRAINID_VOID, ignore_index),
            seed=seed,
        )
