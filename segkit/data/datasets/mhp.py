"""LV-MHP v1 and v2 (Multi-Human Parsing): one part mask per person, merged into one label map per image.

The label map of an image is built from its person masks ``<stem>_*`` (e.g. ``12_03_02.png``: image 12, 3 persons,
person 2): each mask's non-zero pixels overwrite the map, in sorted file-name order (SSSegmentation takes the
unsorted ``glob`` order, so where persons overlap its result depends on the file system). A 3-channel mask is read
through its first channel, as the MHP authors prescribe for their 3-channel ground truth (SSSegmentation converts it
to grey, which agrees when the channels are equal).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import DataError
from ...registry import DATASETS
from .base import DatasetFamily, read_image, voc_palette

MHPV1_CLASSNAMES = [
    "__background__", "hat", "hair", "sunglasses", "upper clothes", "skirt", "pants",
    "dress", "belt", "left shoe", "right shoe", "face", "left leg", "right leg",
    "left arm", "right arm", "bag", "scarf", "torso skin",
]  # fmt: skip
MHPV2_CLASSNAMES = [
    "__background__", "cap/hat", "helmet", "face", "hair", "left-arm", "right-arm", "left-hand", "right-hand",
    "protector", "bikini/bra", "jacket/windbreaker/hoodie", "t-shirt", "polo-shirt", "sweater", "sin-glet",
    "torso-skin", "pants", "shorts/swim-shorts", "skirt", "stock-ings", "socks", "left-boot", "right-boot",
    "left-shoe", "right-shoe", "left-highheel", "right-highheel", "left-sandal", "right-sandal", "left-leg",
    "right-leg", "left-foot", "right-foot", "coat", "dress", "robe", "jumpsuits", "other-full-body-clothes",
    "headwear", "backpack", "ball", "bats", "belt", "bottle", "carrybag", "cases", "sunglasses", "eyewear",
    "gloves", "scarf", "umbrella", "wallet/purse", "watch", "wristband", "tie", "other-accessaries",
    "other-upper-body-clothes", "other-lower-body-clothes",
]  # fmt: skip


def read_person_mask(path: str) -> np.ndarray:
    """One person's part mask as stored (palette indices for palette PNGs; first channel of colour masks)."""
    try:
        with Image.open(path) as pil:
            mask = np.array(pil)
    except FileNotFoundError:
        raise DataError(f"annotation not found: {path}") from None
    except (UnidentifiedImageError, OSError):
        raise DataError(f"cannot read annotation (corrupt or unsupported format): {path}") from None
    return mask[:, :, 0] if mask.ndim == 3 else mask


def merge_person_masks(paths: Sequence[str], shape: tuple[int, int]) -> np.ndarray:
    """Overlay the masks in order: each one's non-zero pixels overwrite the map (0 stays background)."""
    parts = [read_person_mask(path) for path in paths]
    merged = np.zeros(shape, dtype=np.result_type(np.uint8, *parts))
    for path, part in zip(paths, parts, strict=True):
        if part.shape != shape:
            raise DataError(
                f"{path}: person mask is {part.shape[1]}x{part.shape[0]} but its image is {shape[1]}x{shape[0]}"
            )
        person = part != 0
        merged[person] = part[person]
    return merged


class MultiHumanParsingDataset(DatasetFamily):
    """Images with one mask per person; a subclass says where an image's masks are (:meth:`annotation_stem`)."""

    def annotation_stem(self, imageid: str) -> str:
        """The file-name prefix shared by the person masks of ``imageid`` (followed by ``_``)."""
        return imageid

    def read(self, imageid: str) -> dict[str, Any]:
        image = read_image(self.image_path(imageid))
        pattern = os.path.join(self.ann_dir, glob.escape(self.annotation_stem(imageid)) + "_*")
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise DataError(f"no person annotations match {pattern}")
        height, width = image.shape[:2]
        seg_target = self.remap(merge_person_masks(paths, (height, width)), pattern)
        return {"image": image, "seg_target": seg_target, "width": width, "height": height, "id": imageid}


@DATASETS.register("MHPv1Dataset")
class MHPv1Dataset(MultiHumanParsingDataset):
    """LV-MHP v1: 19 classes (background + 18 parts and clothes), labels stored as class ids.

    Layout::

        rootdir/images/<id>                    id = the image file name (``12.jpg``)
        rootdir/annotations/<stem>_*.png       one mask per person (``12_03_01.png`` ... ``12_03_03.png``)
        rootdir/<set>_list.txt                 image file names, one per line
    """

    num_classes = 19
    classnames = MHPV1_CLASSNAMES
    palette = voc_palette(19)

    def layout(self) -> dict[str, Any]:
        return {
            "image_dir": "images",
            "ann_dir": "annotations",
            "image_ext": "",
            "imageids": self.split_ids(f"{self.set}_list.txt"),
        }

    def annotation_stem(self, imageid: str) -> str:
        return os.path.splitext(imageid)[0]


@DATASETS.register("MHPv2Dataset")
class MHPv2Dataset(MultiHumanParsingDataset):
    """LV-MHP v2: 59 classes (background + 58 parts, clothes and accessories), labels stored as class ids.

    Layout::

        rootdir/<set>/images/<id>.jpg
        rootdir/<set>/parsing_annos/<id>_*.png one mask per person (``7_02_01.png``, ``7_02_02.png``)
        rootdir/list/<set>.txt                 ids, one per line
    """

    num_classes = 59
    classnames = MHPV2_CLASSNAMES
    palette = voc_palette(59)

    def layout(self) -> dict[str, Any]:
        return {
            "image_dir": os.path.join(self.set, "images"),
            "ann_dir": os.path.join(self.set, "parsing_annos"),
            "imageids": self.split_ids("list", f"{self.set}.txt"),
        }
