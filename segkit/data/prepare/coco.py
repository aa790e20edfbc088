"""COCO 2017 with COCO-Stuff pixel maps, for ``COCOStuffDataset`` (164k) and ``COCOVOCSUBDataset``.

Official files (no login): the 2017 images, the instance and stuff annotations (cocodataset.org) and COCO-Stuff's
``stuffthingmaps_trainval2017.zip`` (github.com/nightrome/cocostuff); or SSSegmentation's ``COCO.zip.001``-``018``
(which holds ``stuffthingmaps_trainval2017.zip`` still zipped: it is extracted here, as its script does).
Layout under ``<root>/COCO`` (facts §9.1)::

    {train,val}2017/<id>.jpg and <id>.png          label maps next to their images
    annotations/{instances,stuff}_{train,val}2017.json
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import register_preparer
from .archive import safe_extract
from .convert import merge_tree
from .preparer import ArchivePreparer, Bundle, SplitSpec, numbered, ssseg_bundle

IMAGES = "http://images.cocodataset.org"
STUFF_MAPS = "stuffthingmaps_trainval2017.zip"
OFFICIAL_FILES = {
    "train2017.zip": f"{IMAGES}/zips/train2017.zip",
    "val2017.zip": f"{IMAGES}/zips/val2017.zip",
    "annotations_trainval2017.zip": f"{IMAGES}/annotations/annotations_trainval2017.zip",
    "stuff_annotations_trainval2017.zip": f"{IMAGES}/annotations/stuff_annotations_trainval2017.zip",
    STUFF_MAPS: f"http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/{STUFF_MAPS}",
}


@register_preparer
class COCOPreparer(ArchivePreparer):
    """COCO 2017: 118287 train / 5000 val images with COCO-Stuff label maps and the instance annotations."""

    name = "coco"
    dirname = "COCO"
    description = ("COCO 2017 + COCO-Stuff maps (COCOStuffDataset, COCOVOCSUBDataset): 118287 train / 5000 val "
                   "images (no published checksum: not verified)")
    size = "about 21 GB download, 40 GB while preparing"
    license = "annotations CC BY 4.0; images Flickr terms (https://cocodataset.org/#termsofuse)"
    bundles = (Bundle("the official release", tuple(OFFICIAL_FILES), "https://cocodataset.org/#download and "
                      "https://github.com/nightrome/cocostuff#downloads"),
               ssseg_bundle(*numbered("COCO.zip", 18)))
    sources = [{"url": url, "filename": name, "sha256": None} for name, url in OFFICIAL_FILES.items()]
    markers = ("train2017", "annotations")
    # 118287 / 5000: COCO 2017 (Lin et al., ECCV 2014; cocodataset.org)
    splits = tuple(SplitSpec(s, f"glob:{s}2017/*.jpg", f"{s}2017/{{id}}.jpg", f"{s}2017/{{id}}.png", expected=n)
                   for s, n in (("train", 118287), ("val", 5000)))

    def convert(self, tree: Path) -> Path:
        """Find the dataset; unzip COCO-Stuff's label maps next to the images when they are still zipped."""
        folder = self.find(tree)
        inner = folder / STUFF_MAPS
        if inner.is_file():
            maps = safe_extract(inner, tree.parent / "stuffthingmaps")
            merge_tree(maps, folder)
            shutil.rmtree(maps, ignore_errors=True)
            inner.unlink()
        return folder
