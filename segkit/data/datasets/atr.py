"""ATR human parsing, in the layout of SSSegmentation's ``ATR.tar.gz``."""

from __future__ import annotations

from typing import Any

from ...registry import DATASETS
from .base import DatasetFamily, voc_palette

ATR_CLASSNAMES = [
    "__background__", "hat", "hair", "sunglasses", "coat", "skirt",
    "pants", "dress", "belt", "leftShoe", "rightShoe", "face",
    "leftLeg", "rightLeg", "leftHand", "rightHand", "bags", "scarf",
]  # fmt: skip


@DATASETS.register("ATRDataset")
class ATRDataset(DatasetFamily):
    """ATR: 18 classes stored as class ids (no remap); VOC bit palette.

    Layout::

        rootdir/JPEGImages/<id>.jpg
        rootdir/SegmentationClassAug/<id>.png
        rootdir/<set>_id.txt                   ids, one per line

    ``fixed_seg_target_pairs`` are the left/right shoe, leg and hand labels to give ``RandomFlip``.
    """

    num_classes = 18
    classnames = ATR_CLASSNAMES
    palette = voc_palette(18)
    fixed_seg_target_pairs = [(9, 10), (12, 13), (14, 15)]

    def layout(self) -> dict[str, Any]:
        return {
            "image_dir": "JPEGImages",
            "ann_dir": "SegmentationClassAug",
            "imageids": self.split_ids(f"{self.set}_id.txt"),
        }
