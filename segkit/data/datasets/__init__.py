"""Datasets, registered in ``DATASETS``; :func:`build_dataset` builds one from a recipe's ``dataset`` table."""

from .base import BaseDataset, DatasetFamily, read_image, read_imageids, read_label_map, voc_palette
from .build import build_dataset
from .folder import FolderDataset
from .synthetic import SyntheticDataset, write_synthetic_dataset
from .voc import VOCDataset

__all__ = [
    "BaseDataset",
    "DatasetFamily",
    "FolderDataset",
    "SyntheticDataset",
    "VOCDataset",
    "build_dataset",
    "read_image",
    "read_imageids",
    "read_label_map",
    "voc_palette",
    "write_synthetic_dataset",
]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
