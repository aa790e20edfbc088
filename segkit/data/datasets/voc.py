"""PASCAL VOC 2012 (with the SBD-augmented ``trainaug`` split) and PASCAL-Context (60 and 59 classes).

This module also holds :func:`imageids_or_listing`, which the other official-layout datasets share.

All three read the VOCdevkit layout::

    rootdir/JPEGImages/<id>.jpg
    rootdir/<ann_dirname>/<id>.png                  single-channel or palette PNG of class ids
    rootdir/ImageSets/<sets_dirname>/<set>.txt      one id per line

``VOCDataset``: ``SegmentationClass`` / ``Segmentation`` (SSSegmentation's default ``rootdir`` is
``VOCdevkit/VOC2012``). "VOC aug" is the ``trainaug`` list together with the SBD masks placed in
``SegmentationClass`` next to the official ones (as SSSegmentation's packaged archive does); the official masks are
palette PNGs whose object borders are 255, SBD's are grayscale PNGs, both read as class indices.
``PascalContextDataset`` / ``PascalContext59Dataset``: ``SegmentationClassContext`` / ``SegmentationContext``
(default ``rootdir`` ``VOCdevkit/VOC2010``), label maps holding 0 (background) .. 59.
"""

from __future__ import annotations

import os
from typing import Any

from ...registry import DATASETS
from .base import VOID, DatasetFamily, read_imageids, voc_palette

VOC_CLASSNAMES = [
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip

PASCAL_CONTEXT_CLASSNAMES = [
    "__background__", "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book",
    "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup",
    "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light",
    "motorbike", "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep",
    "shelves", "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor",
    "wall", "water", "window", "wood",
]  # fmt: skip

PASCAL_CONTEXT_PALETTE = [
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80), (140, 140, 140),
    (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70),
    (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200),
    (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220),
    (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140),
    (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0), (0, 0, 255),
    (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
]  # fmt: skip
"""RGB colours of the 60 PASCAL-Context classes (the first 60 of the ADE20k palette, as SSSegmentation uses)."""


def imageids_or_listing(split_file: str, image_dir: str, image_ext: str) -> list[str]:
    """The ids listed in ``split_file``; without that file, every ``<id><image_ext>`` under ``image_dir``.

    Ids found by listing are paths relative to ``image_dir`` (``city/name`` in nested folders), sorted. A missing
    ``image_dir`` gives no ids, so that ``BaseDataset`` reports the missing directory.
    """
    if os.path.isfile(split_file):
        return read_imageids(split_file)
    found = []
    for folder, _, names in os.walk(image_dir):
        relative = os.path.relpath(folder, image_dir)
        for name in names:
            if name.endswith(image_ext):
                stem = name[: -len(image_ext)]
                found.append(stem if relative == "." else f"{relative}/{stem}".replace(os.sep, "/"))
    return sorted(found)


class VOCLayoutDataset(DatasetFamily):
    """The VOCdevkit layout shared by VOC and PASCAL-Context; subclasses set the two directory names."""

    ann_dirname = "SegmentationClass"
    sets_dirname = "Segmentation"
    preparer = "voc"

    def layout(self) -> dict[str, Any]:
        return {
            "image_dir": "JPEGImages",
            "ann_dir": self.ann_dirname,
            "imageids": self.split_ids("ImageSets", self.sets_dirname, f"{self.set}.txt"),
        }


@DATASETS.register("VOCDataset")
class VOCDataset(VOCLayoutDataset):
    """PASCAL VOC 2012: 21 classes (``__background__`` + 20); 255 (object borders) is void.

    Layout: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``, ``ImageSets/Segmentation/<set>.txt`` with
    ``set`` one of ``train``, ``val``, ``trainval`` or ``trainaug`` (VOC + SBD, 10582 images).
    """

    num_classes = 21
    classnames = VOC_CLASSNAMES
    palette = voc_palette(21)
    clsid2label = {255: VOID}


@DATASETS.register("PascalContextDataset")
class PascalContextDataset(VOCLayoutDataset):
    """PASCAL-Context, 60 classes (``__background__`` + 59); 255 is void.

    Layout: ``JPEGImages/<id>.jpg``, ``SegmentationClassContext/<id>.png`` (ids 0..59),
    ``ImageSets/SegmentationContext/<set>.txt`` (``train``: 4996, ``val``: 5104 images).
    """

    ann_dirname = "SegmentationClassContext"
    sets_dirname = "SegmentationContext"
    preparer = "pascalcontext"
    num_classes = 60
    classnames = PASCAL_CONTEXT_CLASSNAMES
    palette = PASCAL_CONTEXT_PALETTE
    clsid2label = {255: VOID}


@DATASETS.register("PascalContext59Dataset")
class PascalContext59Dataset(PascalContextDataset):
    """PASCAL-Context, 59 classes: the same files, background (0) is void and ids 1..59 become 0..58."""

    num_classes = 59
    classnames = PASCAL_CONTEXT_CLASSNAMES[1:]
    palette = PASCAL_CONTEXT_PALETTE[1:]
    clsid2label = {0: VOID, 255: VOID, **{i: i - 1 for i in range(1, 60)}}
