"""SBU Shadow (shadow / background), in the layout of SSSegmentation's ``SBUShadow.tar.gz``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...errors import DataError
from ...registry import DATASETS
from .base import BaseDataset, read_imageids

SBU_SET_DIRS = {"train": "SBUTrain4KRecoveredSmall", "val": "SBU-Test"}


@DATASETS.register("SBUShadowDataset")
class SBUShadowDataset(BaseDataset):
    """SBU Shadow: 2 classes; every non-zero mask value is shadow (masks are binarised ``> 0 -> 1``).

    Layout (``{S}`` is ``SBUTrain4KRecoveredSmall`` for ``set = "train"``, ``SBU-Test`` for ``"val"``)::

        rootdir/{S}/ShadowImages/<id>.jpg
        rootdir/{S}/ShadowMasks/<id>.png
        rootdir/<set>.txt                      ids, one per line

    SSSegmentation names class 0 ``__backgroud__`` (a typo); here it is ``__background__``.
    """

    num_classes = 2
    classnames = ["__background__", "shadow"]
    palette = [(0, 0, 0), (255, 0, 0)]

    def __init__(
        self,
        rootdir: str,
        set: Literal["train", "val"] = "train",  # noqa: A002  (SSSegmentation's name)
        data_pipelines: Callable[[dict, np.random.Generator], dict] | Sequence[dict] | None = None,
        mode: Literal["TRAIN", "TEST"] = "TRAIN",
        repeat_times: int = 1,
        ignore_index: int = -100,
        auto_correct_invalid_seg_target: bool = False,
        seed: int = 0,
    ) -> None:
        if set not in SBU_SET_DIRS:
            raise DataError(f"SBUShadowDataset has no set {set!r}; choose one of {', '.join(SBU_SET_DIRS)}")
        folder = SBU_SET_DIRS[set]
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            image_dir=os.path.join(folder, "ShadowImages"),
            ann_dir=os.path.join(folder, "ShadowMasks"),
            image_ext=".jpg",
            ann_ext=".png",
            imageids=read_imageids(os.path.join(rootdir, f"{set}.txt"), self.prepare_hint),
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            seed=seed,
        )

    def remap(self, raw: np.ndarray, path: str = "<label map>") -> np.ndarray:
        """Binarise the stored mask (any non-zero value is shadow), then the usual checks."""
        return super().remap((raw > 0).astype(np.uint8), path)
