"""Supervisely Person (person / background), in the layout of SSSegmentation's ``Supervisely.zip``."""

from __future__ import annotations

import os
from typing import Any

from ...registry import DATASETS
from .base import DatasetFamily


@DATASETS.register("SuperviselyDataset")
class SuperviselyDataset(DatasetFamily):
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

    def layout(self) -> dict[str, Any]:
        return {
            "image_dir": os.path.join("Images", self.set),
            "ann_dir": os.path.join("Anno-Person", self.set),
            "imageids": self.split_ids(f"{self.set}.txt"),
        }
