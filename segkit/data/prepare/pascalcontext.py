"""PASCAL-Context on VOC 2010, for ``PascalContextDataset`` (60 classes) and ``PascalContext59Dataset`` (59).

Official files (no login): ``VOCtrainval_03-May-2010.tar`` (Oxford) and PASCAL-Context's ``trainval.tar.gz``
(one ``<id>.mat`` per image, ``LabelMap`` holding the 459 full-label ids); or SSSegmentation's
``PascalContext.tar.gz`` (already converted). Layout under ``<root>/VOCdevkit/VOC2010`` (facts §9.1)::

    JPEGImages/<id>.jpg
    SegmentationClassContext/<id>.png        0 = background (the other 400 labels), 1..59 = the 59 classes
    ImageSets/SegmentationContext/{train,val}.txt

The 59 classes are the ids of mmsegmentation's pascal_context.py converter (``_mapping``), numbered in id order
(which is their alphabetical order); when the annotations come with ``labels.txt`` the ids are taken from it by class
name instead. The split is VOC 2010's ``ImageSets/Main/{train,val}.txt`` (4998 / 5105 images, as the Detail API's).
Reading the ``.mat`` files needs scipy.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import DataError
from . import register_preparer
from .convert import ids_in, load_mat, read_id_list, write_id_list, write_png
from .preparer import ArchivePreparer, Bundle, SplitSpec, ssseg_bundle

LISTS = "ImageSets/SegmentationContext"
# mmsegmentation tools/dataset_converters/pascal_context.py `_mapping` (sorted: 0 = background, then the 59 ids)
CONTEXT_IDS = sorted([
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420, 454, 295, 296,
    427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34, 207, 80, 355, 85, 347, 220, 349,
    360, 98, 187, 104, 105, 366, 189, 368, 113, 115,
])
CONTEXT_NAMES = [  # the 59 classes, alphabetical (= id order above)
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door", "fence",
    "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
]
OFFICIAL = Bundle("the official VOC 2010 + PASCAL-Context release", ("VOCtrainval_03-May-2010.tar", "trainval.tar.gz"),
                  "http://host.robots.ox.ac.uk/pascal/VOC/voc2010/ and https://cs.stanford.edu/~roozbeh/pascal-context/")


@register_preparer
class PascalContextPreparer(ArchivePreparer):
    """PASCAL-Context: 4998 train / 5105 val VOC 2010 images with whole-scene labels (60 / 59 classes)."""

    name = "pascalcontext"
    dirname = "VOCdevkit/VOC2010"
    description = ("PASCAL-Context (VOC 2010): 4998 train / 5105 val images, 60 / 59 classes "
                   "(checksum: VOC 2010 md5 published by torchvision; the annotations have none)")
    size = "1.4 GB download (VOC 2010 1.3 GB + annotations 30 MB)"
    license = "VOC: Flickr images, research use; PASCAL-Context annotations: research use"
    bundles = (OFFICIAL, ssseg_bundle("PascalContext.tar.gz"))
    sources = [
        {"url": "http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar",
         "filename": "VOCtrainval_03-May-2010.tar", "sha256": None,
         "md5": "da459979d0c395079b5c75ee67908abb", "checksum_from": "torchvision (datasets/voc.py)"},
        {"url": "https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz", "filename": "trainval.tar.gz",
         "sha256": None},
    ]
    markers = ("JPEGImages",)
    # 4998 / 5105: Mottaghi et al., CVPR 2014 (VOC 2010 train / val)
    splits = tuple(
        SplitSpec(s, f"{LISTS}/{s}.txt", "JPEGImages/{id}.jpg", "SegmentationClassContext/{id}.png", expected=n)
        for s, n in (("train", 4998), ("val", 5105))
    )

    def convert(self, tree: Path) -> Path:
        """Find VOC2010; with PASCAL-Context's ``.mat`` files present, write the masks and the split lists."""
        voc = self.find(tree)
        if (voc / LISTS).is_dir() and (voc / "SegmentationClassContext").is_dir():
            return voc  # SSSegmentation's archive: already converted
        annotations = next((p.parent for p in sorted(tree.rglob("*.mat")) if re.fullmatch(r"\d{4}_\d{6}\.mat", p.name)),
                           None)
        if annotations is None:
            raise DataError(f"{self.name}: VOC 2010 but no PASCAL-Context annotations (<id>.mat); give "
                            f"trainval.tar.gz next to it ({OFFICIAL.where})")
        ids = convert_context(annotations, voc / "SegmentationClassContext", context_lut(tree))
        for split in ("train", "val"):
            wanted = set(read_id_list(voc / "ImageSets" / "Main" / f"{split}.txt"))
            write_id_list(voc / LISTS / f"{split}.txt", [i for i in ids if i in wanted])
        return voc


def context_lut(tree: Path) -> np.ndarray:
    """Full-label id -> 0..59; ids from ``labels.txt`` (``"<id>: <name>"`` lines) by name when it is there."""
    labels = next(iter(sorted(tree.rglob("labels.txt"))), None)
    ids = CONTEXT_IDS[1:]
    if labels is not None:
        by_name = {}
        for line in labels.read_text(encoding="utf-8", errors="replace").splitlines():
            if match := re.match(r"\s*(\d+)\s*:\s*(.+?)\s*$", line):
                by_name[match[2].replace(" ", "").lower()] = int(match[1])
        missing = [n for n in CONTEXT_NAMES if n not in by_name]
        if missing:
            raise DataError(f"{labels}: no id for the classes {', '.join(missing)}")
        ids = [by_name[n] for n in CONTEXT_NAMES]
    lut = np.zeros(max(max(ids) + 1, 1 << 16), np.uint8)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint8)
    return lut


def convert_context(annotations: Path, out: Path, lut: np.ndarray) -> list[str]:
    """Every ``<id>.mat`` (``LabelMap``) -> ``out/<id>.png`` through ``lut``; return the ids."""
    ids = ids_in(annotations, ".mat")
    for imageid in ids:
        label_map = np.asarray(load_mat(annotations / f"{imageid}.mat", "PASCAL-Context")["LabelMap"])
        write_png(lut[label_map.astype(np.int64)], out / f"{imageid}.png")
    return ids
