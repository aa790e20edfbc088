"""Dark Zurich (night-time driving, evaluation only), with Cityscapes' 19 train classes."""

from __future__ import annotations

from typing import Any

from ...errors import DataError
from ...registry import DATASETS
from .base import VOID, DatasetFamily
from .cityscapes import CITYSCAPES_CLASSNAMES, CITYSCAPES_PALETTE

TRAINID_VOID = {255: VOID}
"""Cityscapes ``*_labelTrainIds.png`` store void as 255. SSSegmentation has no remap here, so its label check
rejects 255 unless ``auto_correct_invalid_seg_target`` is set; segkit maps it to ``ignore_index`` directly."""


def require_val(dataset: str, set: str) -> None:  # noqa: A002  (SSSegmentation's name)
    """Evaluation-only datasets have a ``val`` set and nothing else."""
    if set != "val":
        raise DataError(f"{dataset} is evaluation-only: set must be 'val', got {set!r}")


class EvaluationOnlyDataset(DatasetFamily):
    """A dataset with a ``val`` set only (the default, with mode ``'TEST'``); 255 (void in trainId maps) is void."""

    clsid2label = TRAINID_VOID
    sets = ("val",)
    default_set = "val"
    default_mode = "TEST"

    def check_set(self) -> None:
        require_val(type(self).__name__, self.set)


@DATASETS.register("DarkZurichDataset")
class DarkZurichDataset(EvaluationOnlyDataset):
    """Dark Zurich ``val`` (night, sequence GOPR0356): 19 Cityscapes classes stored as trainIds (255 = void).

    Layout of ``Dark_Zurich_val_anon.zip``::

        rootdir/rgb_anon/val/night/GOPR0356/<id>_rgb_anon.png
        rootdir/gt/val/night/GOPR0356/<id>_gt_labelTrainIds.png
        rootdir/lists_file_names/val_filenames.txt     paths; the id is the last component

    Only ``set = "val"`` exists (any other set is a ``DataError``); use it in ``'TEST'`` mode.
    """

    num_classes = 19
    classnames = CITYSCAPES_CLASSNAMES
    palette = CITYSCAPES_PALETTE
    clsid2label = TRAINID_VOID

    def layout(self) -> dict[str, Any]:
        listed = self.split_ids("lists_file_names", "val_filenames.txt")
        return {
            "image_dir": "rgb_anon/val/night/GOPR0356",
            "ann_dir": "gt/val/night/GOPR0356",
            "image_ext": "_rgb_anon.png",
            "ann_ext": "_gt_labelTrainIds.png",
            "imageids": [line.rstrip("/").split("/")[-1] for line in listed],
        }
