"""CIHP (Crowd Instance-level Human Parsing), semantic part labels, in SSSegmentation's ``CIHP.tar.gz`` layout."""

from __future__ import annotations

import os
from typing import Any

from ...registry import DATASETS
from .base import DatasetFamily
from .lip import HUMAN_PARSING_FLIP_PAIRS, HUMAN_PARSING_PALETTE, LIP_CLASSNAMES

CIHP_CLASSNAMES = [name if name != "jumpsuits" else "torsoSkin" for name in LIP_CLASSNAMES]
"""LIP's labels with class 10 ``torsoSkin`` instead of ``jumpsuits``."""

CIHP_SET_DIRS = {"train": "Training", "val": "Validation", "test": "Testing"}


@DATASETS.register("CIHPDataset")
class CIHPDataset(DatasetFamily):
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
    sets = tuple(CIHP_SET_DIRS)

    def layout(self) -> dict[str, Any]:
        folder = CIHP_SET_DIRS[self.set]
        listed = self.split_ids(folder, f"{self.set}_id.txt")
        return {
            "image_dir": os.path.join(folder, "Images"),
            "ann_dir": os.path.join(folder, "Category_ids"),
            "imageids": [imageid.zfill(7) for imageid in listed],
        }
