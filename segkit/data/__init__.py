"""Data: datasets, transforms and loaders.

Importing this package registers the built-in datasets (``DATASETS``) and transforms (``TRANSFORMS``).

A *sample* is a dict: ``image`` HxWx3 ``uint8`` BGR (as ``cv2.imread`` gives it), ``seg_target`` HxW ``int64``
(void = ``ignore_index``, default -100), ``width``/``height`` (the original size) and ``id``. Transforms keep images
``uint8`` until ``Normalize`` (float32, RGB, ``(x - mean) / std``); ``ToTensor`` gives a CHW float32 ``image`` and an
int64 ``seg_target``.
"""

from . import prepare  # noqa: E402,F401  (registers the dataset preparers)
from .datasets import (
    BaseDataset,
    FolderDataset,
    SyntheticDataset,
    build_dataset,
    voc_palette,
    write_synthetic_dataset,
)
from .loader import ShardSampler, build_dataloader, collate_test, collate_train, set_epoch
from .transforms import Compose, build_pipeline

__all__ = [
    "BaseDataset",
    "Compose",
    "FolderDataset",
    "ShardSampler",
    "SyntheticDataset",
    "build_dataloader",
    "build_dataset",
    "build_pipeline",
    "collate_test",
    "collate_train",
    "set_epoch",
    "voc_palette",
    "write_synthetic_dataset",
]
