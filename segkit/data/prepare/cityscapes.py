"""Cityscapes (fine annotations), as ``CityScapesDataset`` reads it.

The official files need a (free) login at cityscapes-dataset.com, so the download is SSSegmentation's split zip
(``CityScapes.zip`` + ``.z01``-``.z11``, joined here like ``zip -s 0``). By hand: ``leftImg8bit_trainvaltest.zip`` and
``gtFine_trainvaltest.zip`` from https://www.cityscapes-dataset.com/downloads/, then
``segkit prepare-data cityscapes --from-archive DIR/gtFine_trainvaltest.zip``.

Layout under ``<root>/CityScapes`` (facts §9.1)::

    leftImg8bit/<set>/<city>/<name>_leftImg8bit.png
    gtFine/<set>/<city>/<name>_gtFine_labelIds.png     labelIds are kept: the dataset maps them to trainIds
    <set>.txt                                          ids "<city>/<name>_leftImg8bit", written when missing
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import register_preparer
from .convert import write_id_list
from .preparer import ArchivePreparer, Bundle, SplitSpec, split_zip, ssseg_bundle, ssseg_sources

OFFICIAL = Bundle("the official release (free login)", ("leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip"),
                  "https://www.cityscapes-dataset.com/downloads/")
SSSEG = ssseg_bundle(*split_zip("CityScapes", 11))
IMAGE_SUFFIX = "_leftImg8bit.png"


def label_path(split: str) -> Callable[[str], str]:
    """``<city>/<name>_leftImg8bit`` -> ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png``."""
    return lambda imageid: f"gtFine/{split}/{imageid.replace('_leftImg8bit', '_gtFine_labelIds')}.png"


@register_preparer
class CityscapesPreparer(ArchivePreparer):
    """Cityscapes fine: 2975 train + 500 val (+ 1525 test) images of 2048x1024, 19 evaluated classes."""

    name = "cityscapes"
    dirname = "CityScapes"
    description = ("Cityscapes gtFine: 2975 train / 500 val / 1525 test images, 19 classes "
                   "(no published checksum: not verified)")
    size = "11.6 GB download, 11.7 GB on disk (plus the joined zip while preparing)"
    license = "non-commercial research only, registration required (Cityscapes terms)"
    bundles = (SSSEG, OFFICIAL)
    sources = ssseg_sources(SSSEG)
    markers = ("leftImg8bit", "gtFine")
    # 2975 / 500 / 1525: Cordts et al., CVPR 2016
    splits = (
        SplitSpec("train", "train.txt", "leftImg8bit/train/{id}.png", label_path("train"), expected=2975),
        SplitSpec("val", "val.txt", "leftImg8bit/val/{id}.png", label_path("val"), expected=500),
    )

    def convert(self, tree: Path) -> Path:
        """Find the dataset and write ``<set>.txt`` for every image set that has none."""
        folder = self.find(tree)
        for split_dir in sorted((folder / "leftImg8bit").iterdir()):
            if split_dir.is_dir() and not (folder / f"{split_dir.name}.txt").is_file():
                ids = [f"{path.parent.name}/{path.name[: -len('.png')]}"
                       for path in split_dir.glob(f"*/*{IMAGE_SUFFIX}")]
                write_id_list(folder / f"{split_dir.name}.txt", ids)
        return folder
