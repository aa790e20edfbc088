"""PASCAL VOC 2012 with the SBD-augmented ``trainaug`` split ("VOC aug"), as ``VOCDataset`` reads it.

Official: ``VOCtrainval_11-May-2012.tar`` (Oxford) + SBD's ``benchmark.tgz`` (Berkeley); or SSSegmentation's
``VOCdevkit.zip.001``-``003`` (already converted). Layout under ``<root>/VOCdevkit/VOC2012`` (facts §9.1)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png         VOC's masks (255 = void), plus the SBD masks of the ids only SBD labels
    SegmentationClassAug/<id>.png      every SBD mask converted from .mat (class indices)
    ImageSets/Segmentation/{train,val,trainaug}.txt

``trainaug`` = SBD train + SBD val + VOC train - VOC val (the list of mmsegmentation's voc_aug converter). VOC's own
mask is kept for the ids VOC labels; ``VOCDataset`` reads every split from ``SegmentationClass``, so the SBD-only
masks are hard-linked there (copied where links are impossible). Reading SBD's ``.mat`` files needs scipy.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from . import register_preparer
from .convert import link_or_copy, locate, read_id_list, sbd_to_png, voc_trainaug_ids, write_id_list
from .preparer import ArchivePreparer, Bundle, SplitSpec, numbered, ssseg_bundle

VOC = Bundle("the official VOC 2012 + SBD release", ("VOCtrainval_11-May-2012.tar", "benchmark.tgz"),
             "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and "
             "http://home.bharathh.info/pubs/codes/SBD/download.html")
SSSEG = ssseg_bundle(*numbered("VOCdevkit.zip", 3))
LISTS = "ImageSets/Segmentation"


@register_preparer
class VOCAugPreparer(ArchivePreparer):
    """PASCAL VOC 2012 segmentation with SBD's extra masks: train 1464, val 1449, trainaug 10582."""

    name = "voc"
    dirname = "VOCdevkit/VOC2012"
    description = ("PASCAL VOC 2012 + SBD (VOC aug): trainaug 10582 / val 1449 images, 21 classes "
                   "(checksums: md5 published by torchvision)")
    size = "3.3 GB download (VOC 1.9 GB + SBD 1.4 GB), 4 GB on disk"
    license = "VOC: Flickr images, research use (PASCAL VOC terms); SBD: research use"
    # md5s from torchvision/datasets/voc.py (2012) and torchvision/datasets/sbd.py
    sources = [
        {"url": "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
         "filename": "VOCtrainval_11-May-2012.tar", "sha256": None,
         "md5": "6cd6e144f989b92b3379bac3b3de84fd", "checksum_from": "torchvision (datasets/voc.py)"},
        {"url": "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
         "filename": "benchmark.tgz", "sha256": None,
         "md5": "82b4d87ceb2ed10f6038a1cba92111cb", "checksum_from": "torchvision (datasets/sbd.py)"},
    ]
    bundles = (VOC, SSSEG)
    markers = ("JPEGImages", LISTS)
    # 1464 / 1449: VOC 2012 segmentation; 10582: the SBD-augmented list (Hariharan et al. 2011; mmseg AUG_LEN)
    splits = tuple(
        SplitSpec(name, f"{LISTS}/{name}.txt", "JPEGImages/{id}.jpg", "SegmentationClass/{id}.png", expected=count)
        for name, count in (("train", 1464), ("val", 1449), ("trainaug", 10582))
    )

    def convert(self, tree: Path) -> Path:
        """Find VOC2012; with SBD present convert its masks and write ``trainaug.txt``."""
        voc = self.find(tree)
        sbd = locate(tree, ("cls", "train.txt", "val.txt"))
        if sbd is not None and sbd != voc:
            add_sbd(voc, sbd)
        elif not (voc / LISTS / "trainaug.txt").is_file():
            raise DataError(
                f"{self.name}: the archive has VOC 2012 but no trainaug list and no SBD annotations; give SBD's "
                f"benchmark.tgz next to it ({VOC.where})"
            )
        return voc


def add_sbd(voc: Path, sbd: Path) -> int:
    """SBD ``cls/*.mat`` -> ``SegmentationClassAug``; ``trainaug.txt``; SBD-only masks into ``SegmentationClass``."""
    sbd_to_png(sbd / "cls", voc / "SegmentationClassAug")
    voc_train, voc_val = read_id_list(voc / LISTS / "train.txt"), read_id_list(voc / LISTS / "val.txt")
    trainaug = voc_trainaug_ids(read_id_list(sbd / "train.txt"), read_id_list(sbd / "val.txt"), voc_train, voc_val)
    masks = voc / "SegmentationClass"
    for imageid in trainaug:
        if not (masks / f"{imageid}.png").exists() and (voc / "SegmentationClassAug" / f"{imageid}.png").exists():
            link_or_copy(voc / "SegmentationClassAug" / f"{imageid}.png", masks / f"{imageid}.png")
    return write_id_list(voc / LISTS / "trainaug.txt", trainaug)
