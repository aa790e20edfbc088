"""ADE20k (SceneParsing, 150 classes): MIT's ``ADEChallengeData2016.zip`` or SSSegmentation's ``ADE20k.tar.gz``.

Layout (``ADE20kDataset``, facts §9.1), under ``<root>/ADE20k``::

    ADEChallengeData2016/images/{training,validation}/<id>.jpg
    ADEChallengeData2016/annotations/{training,validation}/<id>.png   0 = other, 1..150 = classes
    ADEChallengeData2016/{train,val}.txt                              written here when missing
"""

from __future__ import annotations

from pathlib import Path

from . import register_preparer
from .convert import ensure_id_lists
from .preparer import ArchivePreparer, Bundle, SplitSpec, ssseg_bundle

OFFICIAL = Bundle("MIT's official release", ("ADEChallengeData2016.zip",), "http://sceneparsing.csail.mit.edu/")
SSSEG = ssseg_bundle("ADE20k.tar.gz")
DATA = "ADEChallengeData2016"


@register_preparer
class ADE20kPreparer(ArchivePreparer):
    """ADE20k scene parsing: the official zip, with the id lists SSSegmentation reads written next to it."""

    name = "ade20k"
    dirname = "ADE20k"
    description = ("ADE20k / SceneParsing150 (MIT): 20210 train + 2000 val images, 150 classes "
                   "(checksum: sha1 published by GluonCV's ade20k.py)")
    size = "923 MB download, 1 GB on disk"
    license = "research and education only (MIT CSAIL terms; images from SUN/Places)"
    sources = [{
        "url": "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
        "filename": "ADEChallengeData2016.zip",
        "sha256": None,
        # gluon-cv scripts/datasets/ade20k.py
        "sha1": "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
        "checksum_from": "GluonCV (scripts/datasets/ade20k.py)",
    }]
    bundles = (OFFICIAL, SSSEG)
    markers = (f"{DATA}/images/training", f"{DATA}/annotations/training")
    # 20210 / 2000: the SceneParsing benchmark (Zhou et al., CVPR 2017; http://sceneparsing.csail.mit.edu/)
    splits = (
        SplitSpec("train", f"{DATA}/train.txt", f"{DATA}/images/training/{{id}}.jpg",
                  f"{DATA}/annotations/training/{{id}}.png", expected=20210),
        SplitSpec("val", f"{DATA}/val.txt", f"{DATA}/images/validation/{{id}}.jpg",
                  f"{DATA}/annotations/validation/{{id}}.png", expected=2000),
    )

    def convert(self, tree: Path) -> Path:
        """Find the dataset and write ``train.txt`` / ``val.txt`` (image stems) when the archive has none."""
        folder = self.find(tree)
        ensure_id_lists(folder / DATA, {
            "train.txt": ("images/training", ".jpg", False),
            "val.txt": ("images/validation", ".jpg", False),
        })
        return folder
