"""Cityscapes (fine annotations), 19 train classes, and export of predictions for the evaluation server.

Layout (``set`` is ``train``, ``val`` or ``test``)::

    rootdir/leftImg8bit/<set>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    rootdir/gtFine/<set>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png      raw label ids 0..33
    rootdir/<set>.txt                  ids ``<city>/<city>_<seq>_<frame>_leftImg8bit``, one per line

The id lists come with SSSegmentation's packaged archive; the official ``leftImg8bit_trainvaltest.zip`` has none,
and then every ``*_leftImg8bit.png`` under ``leftImg8bit/<set>`` is used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ...registry import DATASETS
from .base import VOID, DatasetFamily
from .voc import imageids_or_listing

IMAGE_SUFFIX = "_leftImg8bit"
LABEL_SUFFIX = "_gtFine_labelIds"

CITYSCAPES_CLASSNAMES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip
CITYSCAPES_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip
"""RGB colours of the 19 train classes (those of cityscapesScripts' ``labels.py``)."""

LABELID_TO_TRAINID = {
    -1: VOID, 0: VOID, 1: VOID, 2: VOID, 3: VOID, 4: VOID, 5: VOID, 6: VOID, 7: 0, 8: 1, 9: VOID, 10: VOID,
    11: 2, 12: 3, 13: 4, 14: VOID, 15: VOID, 16: VOID, 17: 5, 18: VOID, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: VOID, 30: VOID, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
"""cityscapesScripts' ``id -> trainId`` (``labels.py``); its trainIds 255 and -1 are void here."""

LABELID_COLOURS = [
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81), (128, 64, 128),
    (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (180, 165, 180), (150, 100, 100), (150, 120, 90), (153, 153, 153), (153, 153, 153), (250, 170, 30),
    (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142),
    (0, 0, 70), (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip
"""RGB colour of each label id 0..33 (``labels.py``), the palette of the PNGs written by ``formatresults``."""


def trainid_to_labelid(trainids: np.ndarray) -> np.ndarray:
    """Map trainIds 0..18 back to label ids (``uint8``); anything else becomes 0 (``unlabeled``)."""
    lut = np.zeros(256, np.uint8)
    for labelid, trainid in LABELID_TO_TRAINID.items():
        if trainid != VOID:
            lut[trainid] = labelid
    trainids = np.asarray(trainids)
    inside = (trainids >= 0) & (trainids < 19)
    return np.where(inside, lut[np.clip(trainids, 0, 255).astype(np.intp)], 0).astype(np.uint8)


@DATASETS.register("CityScapesDataset")
class CityScapesDataset(DatasetFamily):
    """Cityscapes fine: 19 classes; the raw label ids 0..33 become trainIds, the 15 unused ids are void.

    ``-1`` (license plate, in int label maps) and ``255`` (how 8-bit tools store -1) are void too; SSSegmentation
    has no entry for 255 and rejects it. The sample ``id`` is SSSegmentation's ``<city>/<name>_leftImg8bit``.
    With ``eval_env = "server"`` and mode ``'TEST'`` no label map is read (the test set has none worth reading):
    ``seg_target`` is all ``ignore_index`` (SSSegmentation uses zeros, which would count as ``road``), and the
    predictions are meant for :meth:`formatresults`.
    """

    num_classes = 19
    classnames = CITYSCAPES_CLASSNAMES
    palette = CITYSCAPES_PALETTE
    clsid2label = {**LABELID_TO_TRAINID, 255: VOID}
    sets = ("train", "val", "trainval", "test")
    """``trainval`` (MCIBI's Cityscapes configs) reads ``leftImg8bit/trainval`` and ``gtFine/trainval`` as
    SSSegmentation does: folders holding train and val together (``cp -rl train/* val/* trainval/`` in both)."""
    preparer = "cityscapes"

    def layout(self) -> dict[str, Any]:
        image_dir = os.path.join("leftImg8bit", self.set)
        listed = imageids_or_listing(
            os.path.join(self.rootdir, f"{self.set}.txt"),
            os.path.join(self.rootdir, image_dir),
            f"{IMAGE_SUFFIX}.png",
        )
        return {
            "image_dir": image_dir,
            "ann_dir": os.path.join("gtFine", self.set),
            "image_ext": f"{IMAGE_SUFFIX}.png",
            "ann_ext": f"{LABEL_SUFFIX}.png",
            "imageids": [strip_suffix(imageid) for imageid in listed],
        }

    def read(self, imageid: str) -> dict[str, Any]:
        """Read ``<imageid>_leftImg8bit.png`` and its ``_gtFine_labelIds.png``."""
        return {**super().read(imageid), "id": imageid + IMAGE_SUFFIX}

    def read_unlabelled(self, imageid: str) -> dict[str, Any]:
        return {**super().read_unlabelled(imageid), "id": imageid + IMAGE_SUFFIX}

    @staticmethod
    def formatresults(
        results: Sequence[np.ndarray | torch.Tensor],
        filenames: Sequence[str],
        savedir: str = "results",
        *,
        to_label_id: bool = True,
    ) -> list[str]:
        """Write predictions as the evaluation server wants them; return the paths written.

        ``results`` are HxW trainId maps (numpy or tensors), ``filenames`` the matching sample ids or paths. Each
        becomes ``savedir/<basename without extension>.png``, an 8-bit PNG of label ids (``to_label_id``; else the
        values as given) with the Cityscapes colours as its palette.
        """
        from PIL import Image

        if len(results) != len(filenames):
            raise DataError(f"formatresults: {len(results)} results but {len(filenames)} filenames")
        os.makedirs(savedir, exist_ok=True)
        palette = np.zeros((256, 3), np.uint8)
        palette[: len(LABELID_COLOURS)] = LABELID_COLOURS
        written = []
        for result, filename in zip(results, filenames, strict=True):
            pred = result.detach().cpu().numpy() if torch.is_tensor(result) else np.asarray(result)
            pred = trainid_to_labelid(pred) if to_label_id else pred.astype(np.uint8)
            path = os.path.join(savedir, os.path.splitext(os.path.basename(filename))[0] + ".png")
            image = Image.fromarray(pred)  # mode "L"; putpalette makes it "P"
            image.putpalette(palette.ravel().tolist())
            image.save(path)
            written.append(path)
        return written


def strip_suffix(imageid: str) -> str:
    """``city/name_leftImg8bit`` (SSSegmentation's id; ``.png`` allowed) -> ``city/name``."""
    imageid = imageid.removesuffix(".png")
    return imageid.removesuffix(IMAGE_SUFFIX)
