"""CIHP (Crowd Instance-level Human Parsing), semantic part labels, in SSSegmentation's ``CIHP.tar.gz`` layout."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...errors import DataError
from ...registry import DATASETS
from .base import BaseDataset, read_imageids
from .lip import HUMAN_PARSING_FLIP_PAIRS, HUMAN_PARSING_PALETTE, LIP_CLASSNAMES

CIHP_CLASSNAMES = [name if name != "jumpsuits" else "torsoSkin" for name in LIP_CLASSNAMES]
"""LIP's labels with class 10 ``torsoSkin`` instead of ``jumpsuits``."""

CIHP_SET_DIRS = {"train": "Training", "val": "Validation", "test": "Testing"}


@DATASETS.register("CIHPDataset")
class CIHPDataset(BaseDataset):
    """CIHP: 20 classes stored as class ids (no remap); LIP's palette and flip pairs.

    Layout (``{S}`` is ``Training``, ``Validation`` or ``Testing`` for ``set`` = ``train``, ``val``, ``test``)::

        rootdir/{S}/Images/<id>.jpg            id = the listed number zero-padded to 7 digits
        rootdir/{S}/Category_ids/<id>.png
        rootdir/{S}/<set>_id.txt               ids, one per line (``0000006`` or ``6``)
    """

    num_classes = 20
    classnames = CIHP_CLASSNAMES
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
        if set not in CIHP_SET_DIRS:
            raise DataError(f"CIHPDataset has no set {set!r}; choose one of {', '.join(CIHP_SET_DIRS)}")
        folder = CIHP_SET_DIRS[set]
        listed = read_imageids(os.path.join(rootdir, folder, f"{set}_id.txt"), self.prepare_hint)
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            image_dir=os.path.join(folder, "Images"),
            ann_dir=os.path.join(folder, "Category_ids"),
            image_ext=".jpg",
            ann_ext=".png",
            imageids=[imageid.zfill(7) for imageid in listed],
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            seed=seed,
        )
