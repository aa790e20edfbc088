"""LIP (Look Into Person) human parsing, in the layout of SSSegmentation's ``LIP.tar.gz``.

The palette and the left/right flip pairs defined here are shared with CIHP (same 20 labels but one).
"""

from __future__ import annotations

from typing import Any

from ...registry import DATASETS
from .base import DatasetFamily, Palette

LIP_CLASSNAMES = [
    "__background__", "hat", "hair", "glove", "sunglasses", "upperclothes", "dress",
    "coat", "socks", "pants", "jumpsuits", "scarf", "skirt", "face",
    "leftArm", "rightArm", "leftLeg", "rightLeg", "leftShoe", "rightShoe",
]  # fmt: skip
HUMAN_PARSING_PALETTE: Palette = [
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85),
    (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255),
    (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
]  # fmt: skip
"""SSSegmentation's fixed LIP/CIHP colours (RGB), one per class."""
HUMAN_PARSING_FLIP_PAIRS = [(15, 14), (17, 16), (19, 18)]
"""(right, left) arm, leg and shoe labels of LIP/CIHP, swapped by a horizontal flip."""

LIP_SET_DIRS = {"train": "train", "val": "val", "test": "testing"}


@DATASETS.register("LIPDataset")
class LIPDataset(DatasetFamily):
    """LIP: 20 classes (background + 19 parts and clothes), labels stored as class ids (no remap).

    Layout (``{s}`` is ``train``, ``val`` or ``testing`` for ``set`` = ``train``, ``val``, ``test``)::

        rootdir/{s}_images/<id>.jpg
        rootdir/{s}_segmentations/<id>.png
        rootdir/<set>_id.txt                 ids, one per line

    ``fixed_seg_target_pairs`` are the left/right labels to give ``RandomFlip`` (and flip TTA).
    """

    num_classes = 20
    classnames = LIP_CLASSNAMES
    palette = HUMAN_PARSING_PALETTE
    fixed_seg_target_pairs = HUMAN_PARSING_FLIP_PAIRS
    sets = tuple(LIP_SET_DIRS)

    def layout(self) -> dict[str, Any]:
        folder = LIP_SET_DIRS[self.set]
        return {
            "image_dir": f"{folder}_images",
            "ann_dir": f"{folder}_segmentations",
            "imageids": self.split_ids(f"{self.set}_id.txt"),
        }
