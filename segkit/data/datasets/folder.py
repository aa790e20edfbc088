"""``FolderDataset``: your own images and label maps, described entirely by the recipe."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ...registry import DATASETS
from .base import BaseDataset, Palette


@DATASETS.register("FolderDataset")
class FolderDataset(BaseDataset):
    """Images and label maps in folders, classes named in the recipe.

    Layout (defaults; ``{set}`` is replaced by the split)::

        rootdir/images/{set}/<id>.jpg
        rootdir/annotations/{set}/<id>.png      single-channel PNG of class ids (0..N-1; void = ignore_index,
                                                 or map values such as 255 with clsid2label = {255 = -100})
        rootdir/{set}.txt                        optional: one id per line (else every image in the folder)

    ``num_classes = len(classnames)``; ``palette`` (RGB triples) defaults to the VOC colour map.
    """

    def __init__(
        self,
        rootdir: str,
        set: str = "train",  # noqa: A002  (SSSegmentation's name)
        data_pipelines: Callable[[dict, np.random.Generator], dict] | Sequence[dict] | None = None,
        mode: Literal["TRAIN", "TEST"] = "TRAIN",
        *,
        classnames: list[str],
        image_dir: str = "images/{set}",
        ann_dir: str = "annotations/{set}",
        image_ext: str = ".jpg",
        ann_ext: str = ".png",
        imageids: list[str] | None = None,
        palette: Palette | None = None,
        clsid2label: dict[int, int] | None = None,
        repeat_times: int = 1,
        ignore_index: int = -100,
        auto_correct_invalid_seg_target: bool = False,
        record_img2aug_pos_mapper: bool = False,
        eval_env: Literal["local", "server"] = "local",
        seed: int = 0,
    ) -> None:
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            image_dir=image_dir,
            ann_dir=ann_dir,
            image_ext=image_ext,
            ann_ext=ann_ext,
            imageids=imageids,
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            num_classes=len(classnames),
            classnames=classnames,
            palette=palette,
            clsid2label=clsid2label,
            seed=seed,
            record_img2aug_pos_mapper=record_img2aug_pos_mapper,
            eval_env=eval_env,
        )
