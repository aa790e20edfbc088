"""Human parsing datasets: LIP, CIHP, ATR, LV-MHP v1 and v2 (layouts of facts §9.1).

Their official releases are on Google Drive / Baidu disk (not scriptable), so the download is SSSegmentation's
pre-packaged archive (facts §9.2). An official archive given with ``--from-archive`` works when it unpacks to the
same layout (the check names what is missing otherwise).
"""

from __future__ import annotations

from . import register_preparer
from .preparer import ArchivePreparer, Bundle, SplitSpec, numbered, ssseg_bundle, ssseg_sources

RESEARCH_ONLY = "research use only (see the dataset's site)"


@register_preparer
class LIPPreparer(ArchivePreparer):
    """Look Into Person: 30462 train / 10000 val single-person images, 20 classes."""

    name = "lip"
    dirname = "LIP"
    description = "LIP (Look Into Person): 30462 train / 10000 val images, 20 classes (no published checksum)"
    size = "about 2 GB"
    license = f"{RESEARCH_ONLY}: http://sysu-hcp.net/lip/"
    bundles = (ssseg_bundle("LIP.tar.gz"),
               Bundle("the official release", ("TrainVal_images.zip", "TrainVal_parsing_annotations.zip"),
                      "http://sysu-hcp.net/lip/overview.php"))
    sources = ssseg_sources(bundles[0])
    markers = ("train_images", "train_segmentations")
    # 30462 / 10000: Gong et al., CVPR 2017
    splits = (
        SplitSpec("train", "train_id.txt", "train_images/{id}.jpg", "train_segmentations/{id}.png", expected=30462),
        SplitSpec("val", "val_id.txt", "val_images/{id}.jpg", "val_segmentations/{id}.png", expected=10000),
    )


@register_preparer
class CIHPPreparer(ArchivePreparer):
    """Crowd Instance-level Human Parsing: 28280 train / 5000 val images, 20 classes."""

    name = "cihp"
    dirname = "CIHP"
    description = "CIHP (crowd human parsing): 28280 train / 5000 val images, 20 classes (no published checksum)"
    size = "about 2.5 GB"
    license = f"{RESEARCH_ONLY}: http://sysu-hcp.net/lip/overview.php"
    bundles = (ssseg_bundle("CIHP.tar.gz"),
               Bundle("the official release", ("instance-level_human_parsing.tar.gz",),
                      "http://sysu-hcp.net/lip/overview.php"))
    sources = ssseg_sources(bundles[0])
    markers = ("Training/Images", "Training/Category_ids")
    # 28280 / 5000: Gong et al., ECCV 2018. Ids are zero-padded to 7 digits in the file names.
    splits = (
        SplitSpec("train", "Training/train_id.txt", "Training/Images/{id:0>7}.jpg",
                  "Training/Category_ids/{id:0>7}.png", expected=28280),
        SplitSpec("val", "Validation/val_id.txt", "Validation/Images/{id:0>7}.jpg",
                  "Validation/Category_ids/{id:0>7}.png", expected=5000),
    )


@register_preparer
class ATRPreparer(ArchivePreparer):
    """ATR: 17700 fashion images, 18 classes (split as in SSSegmentation's archive)."""

    name = "atr"
    dirname = "ATR"
    description = "ATR human parsing: 18 classes, split lists from SSSegmentation's archive (no published checksum)"
    size = "about 300 MB"
    license = RESEARCH_ONLY
    bundles = (ssseg_bundle("ATR.tar.gz"),)
    sources = ssseg_sources(bundles[0])
    markers = ("JPEGImages", "SegmentationClassAug")
    splits = tuple(SplitSpec(s, f"{s}_id.txt", "JPEGImages/{id}.jpg", "SegmentationClassAug/{id}.png")
                   for s in ("train", "val"))


@register_preparer
class MHPv1Preparer(ArchivePreparer):
    """LV-MHP v1: multi-person parsing, 19 classes; one mask per person (``<image>_<k>_<n>.png``)."""

    name = "mhpv1"
    dirname = "LV-MHP-v1"
    description = "LV-MHP v1 (multi-human parsing): 4980 images, 19 classes (no published checksum)"
    size = "about 400 MB"
    license = f"{RESEARCH_ONLY}: https://lv-mhp.github.io/"
    bundles = (ssseg_bundle("LV-MHP-v1.tar.gz"),)
    sources = ssseg_sources(bundles[0])
    markers = ("images", "annotations")
    splits = tuple(SplitSpec(s, f"{s}_list.txt", "images/{id}", "annotations/{stem}_*.png")
                   for s in ("train", "test"))


@register_preparer
class MHPv2Preparer(ArchivePreparer):
    """LV-MHP v2: 15403 train / 5000 val multi-person images, 59 classes; one mask per person."""

    name = "mhpv2"
    dirname = "LV-MHP-v2"
    description = "LV-MHP v2 (multi-human parsing): 15403 train / 5000 val images, 59 classes (no published checksum)"
    size = "about 9 GB (4 parts)"
    license = f"{RESEARCH_ONLY}: https://lv-mhp.github.io/"
    bundles = (ssseg_bundle(*numbered("LV-MHP-v2.zip", 4)),)
    sources = ssseg_sources(bundles[0])
    markers = ("list", "train/images")
    # 15403 / 5000: Zhao et al., ACM MM 2018
    splits = (
        SplitSpec("train", "list/train.txt", "train/images/{id}.jpg", "train/parsing_annos/{id}_*.png",
                  expected=15403),
        SplitSpec("val", "list/val.txt", "val/images/{id}.jpg", "val/parsing_annos/{id}_*.png", expected=5000),
    )
