"""SBU Shadow (shadow / background), in the layout of SSSegmentation's ``SBUShadow.tar.gz``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ...registry import DATASETS
from .base import DatasetFamily

SBU_SET_DIRS = {"train": "SBUTrain4KRecoveredSmall", "val": "SBU-Test"}


@DATASETS.register("SBUShadowDataset")
class SBUShadowDataset(DatasetFamily):
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
    sets = tuple(SBU_SET_DIRS)

    def layout(self) -> dict[str, Any]:
        folder = SBU_SET_DIRS[self.set]
        return {
            "image_dir": os.path.join(folder, "ShadowImages"),
            "ann_dir": os.path.join(folder, "ShadowMasks"),
            "imageids": self.split_ids(f"{self.set}.txt"),
        }

    def remap(self, raw: np.ndarray, path: str = "<label map>") -> np.ndarray:
        """Binarise the stored mask (any non-zero value is shadow), then the usual checks."""
        return super().remap((raw > 0).astype(np.uint8), path)
