"""Supervisely Person (person / background), in the layout of SSSegmentation's ``Supervisely.zip``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...registry import DATASETS
from .base import BaseDataset, read_imageids


@DATASETS.register("SuperviselyDataset")
class SuperviselyDataset(BaseDataset):
    """Supervisely Person: 2 classes; masks store the person as 255 (``clsid2label = {255: 1}``).

    Layout::

        rootdir/Images/<set>/<id>.jpg
        rootdir/Anno-Person/<set>/<id>.png
        rootdir/<set>.txt                      ids, one per line
    """

    num_classes = 2
    classnames = ["__background__", "person"]
    palette = [(0, 0, 0), (255, 0, 0)]
    clsid2label = {255: 1}

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
            image_dir=os.path.join("Images", set),
            ann_dir=os.path.join("Anno-Person", set),
            image_ext=".jpg",
            ann_ext=".png",
            imageids=read_imageids(os.path.join(rootdir, f"{set}.txt"), self.prepare_hint),
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            seed=seed,
        )
