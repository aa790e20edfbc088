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
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...errors import DataError
from ...registry import DATASETS
from .base import BaseDataset, read_imageids

RETINAL_SET_DIRS = {"train": "training", "val": "validation"}


class RetinalVesselDataset(BaseDataset):
    """The shared layout; a subclass sets ``annotation_suffix`` (``None``: annotation named as the image)."""

    num_classes = 2
    classnames = ["__background__", "vessel"]
    palette = [(0, 0, 0), (255, 0, 0)]
    annotation_suffix: str | None = None

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
        name = type(self).__name__
        if set not in RETINAL_SET_DIRS:
            raise DataError(f"{name} has no set {set!r}; choose one of {', '.join(RETINAL_SET_DIRS)}")
        split_file = os.path.join(rootdir, f"{set}.txt")
        imageids, image_ext, ann_ext = self._split_names(
            read_imageids(split_file, self.prepare_hint), split_file
        )
        folder = RETINAL_SET_DIRS[set]
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            image_dir=os.path.join("images", folder),
            ann_dir=os.path.join("annotations", folder),
            image_ext=image_ext,
            ann_ext=ann_ext,
            imageids=imageids,
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            seed=seed,
        )

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
