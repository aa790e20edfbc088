"""Datasets whose archives unpack to the final layout (facts §9.1): COCO-Stuff 10k, VSPW, SBU shadow, Supervisely
persons, Dark Zurich and Nighttime Driving. The official archive where it can be downloaded without a login, else
SSSegmentation's (facts §9.2)."""

from __future__ import annotations

from . import register_preparer
from .preparer import ArchivePreparer, Bundle, SplitSpec, numbered, ssseg_bundle, ssseg_sources

ETH = "https://data.vision.ee.ethz.ch"


@register_preparer
class COCOStuff10kPreparer(ArchivePreparer):
    """COCO-Stuff 10k v1.1: 9000 train / 1000 test images with ``.mat`` label maps (182 classes)."""

    name = "cocostuff10k"
    dirname = "COCOStuff10k"
    description = "COCO-Stuff 10k v1.1: 9000 train / 1000 test images, 182 classes (no published checksum)"
    size = "2.0 GB"
    license = "annotations CC BY 4.0; images Flickr terms (COCO)"
    bundles = (Bundle("the official release", ("cocostuff-10k-v1.1.zip",), "https://github.com/nightrome/cocostuff10k"),
               ssseg_bundle("COCOStuff10k.tar.gz"))
    sources = [{"url": "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/cocostuff-10k-v1.1.zip",
                "filename": "cocostuff-10k-v1.1.zip", "sha256": None}]
    markers = ("images", "annotations", "imageLists")
    # 9000 / 1000: Caesar et al., CVPR 2018 (cocostuff10k README)
    splits = tuple(SplitSpec(s, f"imageLists/{s}.txt", "images/{id}.jpg", "annotations/{id}.mat", expected=n)
                   for s, n in (("train", 9000), ("test", 1000)))


@register_preparer
class VSPWPreparer(ArchivePreparer):
    """VSPW 480p: video scene parsing, 124 classes; ids are videos (``data/<video>/{origin,mask}``)."""

    name = "vspw"
    dirname = "VSPW_480p"
    description = "VSPW 480p (video scene parsing): 2806 train / 343 val videos, 124 classes (no published checksum)"
    size = "about 10 GB (10 parts)"
    license = "research use only (https://www.vspwdataset.com/)"
    bundles = (ssseg_bundle(*numbered("VSPW_480p.zip", 10)),)
    sources = ssseg_sources(bundles[0])
    markers = ("data", "train.txt")
    # 2806 / 343 videos: Miao et al., CVPR 2021
    splits = tuple(SplitSpec(s, f"{s}.txt", "data/{id}/origin/*.jpg", "data/{id}/mask/*.png", expected=n)
                   for s, n in (("train", 2806), ("val", 343)))


@register_preparer
class SBUShadowPreparer(ArchivePreparer):
    """SBU shadow: 4089 train / 638 test images, shadow masks (values > 0 are shadow)."""

    name = "sbushadow"
    dirname = "SBUShadow"
    description = "SBU shadow detection: 4089 train / 638 val images, 2 classes (no published checksum)"
    size = "about 900 MB"
    license = "research use only (Stony Brook CVL)"
    bundles = (ssseg_bundle("SBUShadow.tar.gz"),)
    sources = ssseg_sources(bundles[0])
    markers = ("SBUTrain4KRecoveredSmall", "SBU-Test")
    # 4089 / 638: Vicente et al., ECCV 2016
    splits = tuple(SplitSpec(s, f"{s}.txt", f"{d}/ShadowImages/{{id}}.jpg", f"{d}/ShadowMasks/{{id}}.png", expected=n)
                   for s, d, n in (("train", "SBUTrain4KRecoveredSmall", 4089), ("val", "SBU-Test", 638)))


@register_preparer
class SuperviselyPreparer(ArchivePreparer):
    """Supervisely persons: person / background masks (255 = person)."""

    name = "supervisely"
    dirname = "Supervisely"
    description = "Supervisely person segmentation: 2 classes, splits from SSSegmentation's archive (no published checksum)"
    size = "about 4 GB (8 parts)"
    license = "see Supervisely's terms (https://supervise.ly/)"
    bundles = (ssseg_bundle(*numbered("Supervisely.zip", 8)),)
    sources = ssseg_sources(bundles[0])
    markers = ("Images", "Anno-Person")
    splits = tuple(SplitSpec(s, f"{s}.txt", f"Images/{s}/{{id}}.jpg", f"Anno-Person/{s}/{{id}}.png")
                   for s in ("train", "val"))


@register_preparer
class DarkZurichPreparer(ArchivePreparer):
    """Dark Zurich validation (night, 50 images, Cityscapes trainIds): a test-only dataset."""

    name = "darkzurich"
    dirname = "DarkZurich"
    description = "Dark Zurich val: 50 night images, 19 Cityscapes classes (test only) (no published checksum)"
    size = "about 80 MB"
    license = "research use (see https://www.trace.ethz.ch/publications/2019/GCMA_UIoU/)"
    bundles = (Bundle("the official release", ("Dark_Zurich_val_anon.zip",),
                      "https://www.trace.ethz.ch/publications/2019/GCMA_UIoU/"),)
    sources = [{"url": f"{ETH}/csakarid/shared/GCMA_UIoU/Dark_Zurich_val_anon.zip",
                "filename": "Dark_Zurich_val_anon.zip", "sha256": None}]
    markers = ("rgb_anon", "gt", "lists_file_names")
    # 50: Sakaridis et al., ICCV 2019
    # ids are "val/night/GOPR0356/<name>"; the dataset reads <name> from the one night sequence
    splits = (SplitSpec("val", "lists_file_names/val_filenames.txt",
                        lambda i: f"rgb_anon/val/night/GOPR0356/{i.split('/')[-1]}_rgb_anon.png",
                        lambda i: f"gt/val/night/GOPR0356/{i.split('/')[-1]}_gt_labelTrainIds.png", expected=50),)


@register_preparer
class NighttimeDrivingPreparer(ArchivePreparer):
    """Nighttime Driving test (50 images with coarse Cityscapes trainIds): a test-only dataset."""

    name = "nighttimedriving"
    dirname = "NighttimeDriving"
    description = "Nighttime Driving test: 50 night images, 19 Cityscapes classes (test only) (no published checksum)"
    size = "about 40 MB"
    license = "research use (http://people.ee.ethz.ch/~daid/NightDriving/)"
    bundles = (Bundle("the official release", ("NighttimeDrivingTest.zip",),
                      "http://people.ee.ethz.ch/~daid/NightDriving/"),)
    sources = [{"url": f"{ETH}/daid/NighttimeDriving/NighttimeDrivingTest.zip",
                "filename": "NighttimeDrivingTest.zip", "sha256": None}]
    markers = ("leftImg8bit/test/night", "gtCoarse_daytime_trainvaltest/test/night")
    # 50: Dai & Van Gool, ITSC 2018
    splits = (SplitSpec("test", "glob:leftImg8bit/test/night/*_leftImg8bit.png",
                        "leftImg8bit/test/night/{id}_leftImg8bit.png",
                        "gtCoarse_daytime_trainvaltest/test/night/{id}_gtCoarse_labelTrainIds.png", expected=50),)
