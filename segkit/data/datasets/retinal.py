"""Retinal vessel datasets (HRF, DRIVE, STARE, CHASE_DB1): one layout, different annotation file names.

All four use SSSegmentation's packaged layout (the mmsegmentation conversion: masks store 0 = background,
1 = vessel)::

    rootdir/images/{training,validation}/<image file>        set "train" -> training, "val" -> validation
    rootdir/annotations/{training,validation}/<annotation file>
    rootdir/<set>.txt                                         image file names, extension included

The annotation of ``<stem>.<ext>`` is ``<stem><annotation_suffix>`` (DRIVE ``_manual1.png``, STARE ``.ah.png``,
CHASE_DB1 ``_1stHO.png``), or the same file name (HRF). A sample's ``id`` is the stem, except for HRF, whose ids
keep the extension (as in SSSegmentation).
"""

from __future__ import annotations

import os
from typing import Any

from ...errors import DataError
from ...registry import DATASETS
from .base import DatasetFamily, read_imageids

RETINAL_SET_DIRS = {"train": "training", "val": "validation"}


class RetinalVesselDataset(DatasetFamily):
    """The shared layout; a subclass sets ``annotation_suffix`` (``None``: annotation named as the image)."""

    num_classes = 2
    classnames = ["__background__", "vessel"]
    palette = [(0, 0, 0), (255, 0, 0)]
    annotation_suffix: str | None = None
    sets = tuple(RETINAL_SET_DIRS)

    def layout(self) -> dict[str, Any]:
        split_file = os.path.join(self.rootdir, f"{self.set}.txt")
        imageids, image_ext, ann_ext = self._split_names(
            read_imageids(split_file, self.prepare_hint), split_file
        )
        folder = RETINAL_SET_DIRS[self.set]
        return {
            "image_dir": os.path.join("images", folder),
            "ann_dir": os.path.join("annotations", folder),
            "image_ext": image_ext,
            "ann_ext": ann_ext,
            "imageids": imageids,
        }

    def _split_names(self, names: list[str], split_file: str) -> tuple[list[str], str, str]:
        """Listed file names -> ``(imageids, image_ext, ann_ext)`` for ``BaseDataset``'s ``<id><ext>`` paths."""
        if self.annotation_suffix is None or not names:
            return names, "", ""
        stems, extensions = zip(*(os.path.splitext(name) for name in names), strict=True)
        if not all(extensions) or len(set(extensions)) > 1:
            raise DataError(
                f"{split_file}: expected image file names with one extension (e.g. 21_training.png), "
                f"found extensions {sorted(set(extensions))}"
            )
        return list(stems), extensions[0], self.annotation_suffix


@DATASETS.register("HRFDataset")
class HRFDataset(RetinalVesselDataset):
    """HRF (High-Resolution Fundus): 2 classes; the annotation has the image's file name."""

    annotation_suffix = None


@DATASETS.register("DRIVEDataset")
class DRIVEDataset(RetinalVesselDataset):
    """DRIVE: 2 classes; the annotation of ``<stem>.<ext>`` is ``<stem>_manual1.png``."""

    annotation_suffix = "_manual1.png"


@DATASETS.register("STAREDataset")
class STAREDataset(RetinalVesselDataset):
    """STARE: 2 classes; the annotation of ``<stem>.<ext>`` is ``<stem>.ah.png``."""

    annotation_suffix = ".ah.png"


@DATASETS.register("ChaseDB1Dataset")
class ChaseDB1Dataset(RetinalVesselDataset):
    """CHASE_DB1: 2 classes; the annotation of ``<stem>.<ext>`` is ``<stem>_1stHO.png``."""

    annotation_suffix = "_1stHO.png"
