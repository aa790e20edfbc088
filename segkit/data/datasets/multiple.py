"""``MultipleDataset``: several datasets trained (or evaluated) as one, their labels mapped to one label space.

A recipe names each part and gives it a full dataset table plus ``seg_target_remapper``::

    [dataset]
    type = "MultipleDataset"
    [dataset.train.VOCDataset]                      # the key only names the part
    type = "VOCDataset"
    rootdir = "data/VOCdevkit/VOC2012"
    seg_target_remapper = { 0 = 0, 1 = 1, ... }     # part's label -> joint label
    [dataset.train.VOCDataset.train]                # the part's own train/test tables, as for a lone dataset
    set = "trainaug"
    [[dataset.train.VOCDataset.train.data_pipelines]]
    ...
    [dataset.test.VOCDataset]
    ...
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import RecipeError
from ...registry import DATASETS
from .base import voc_palette
from .build import build_dataset

SECTIONS = ("train", "test")


@DATASETS.register("MultipleDataset")
class MultipleDataset(Dataset):
    """The concatenation of sub-datasets, each sample's ``seg_target`` mapped by its part's ``seg_target_remapper``.

    Every keyword other than the ones below is a part: ``name = {type = ..., seg_target_remapper = {...}, ...}``,
    built like a lone dataset (its own ``train``/``test`` tables are merged for ``mode``) by
    :func:`~segkit.data.datasets.build.build_dataset`. Given ``train``/``test`` tables instead of parts (an
    unmerged recipe table), the one for ``mode`` is used. ``rootdir``, if given, is the folder relative
    ``rootdir``s of the parts are resolved against.

    ``num_classes`` is the largest joint label plus one; ``classnames[j]`` is the name of a part class mapped to
    ``j`` (the last one listed wins); the palette is the VOC colour map. The remap runs on the part's output
    (after its pipeline). Labels a part's remapper does not list become ``ignore_index`` (SSSegmentation keeps
    them unchanged, which mixes them into other classes' ids); the parts must share one ``ignore_index``.
    """

    def __init__(
        self,
        rootdir: str | None = None,
        data_pipelines: Callable[[dict, np.random.Generator], dict] | Sequence[dict] | None = None,
        mode: Literal["TRAIN", "TEST"] = "TRAIN",
        seed: int = 0,
        **datasets: Any,
    ) -> None:
        super().__init__()
        self.mode = mode.upper()
        section = self.mode.lower()
        if set(datasets) <= set(SECTIONS) and datasets:  # an unmerged {train: {...}, test: {...}} table
            datasets = dict(datasets.get(section) or {})
        if data_pipelines:
            raise RecipeError(
                "dataset.data_pipelines", "MultipleDataset takes data_pipelines in each part's table"
            )
        if not datasets:
            raise RecipeError(
                f"dataset.{section}", "MultipleDataset needs at least one part: name = {type = ...}"
            )
        self.names = list(datasets)
        self.datasets: list[Dataset] = []
        remappers: list[dict[int, int]] = []
        names_by_label: dict[int, str] = {}
        for name, cfg in datasets.items():
            path = f"dataset.{section}.{name}"
            cfg, remapper = _split_part(cfg, path, rootdir)
            part = build_dataset(cfg, self.mode, seed=seed, path=path)
            self.datasets.append(part)
            for source, target in remapper.items():
                names_by_label[target] = _classname(part, source, f"{path}.seg_target_remapper")
            remappers.append(remapper)
        self.ignore_index = _shared_ignore_index(self.datasets, self.names, section)
        self.luts = [_lookup_table(remapper, self.ignore_index) for remapper in remappers]
        self.num_classes = max(names_by_label) + 1
        missing = [label for label in range(self.num_classes) if label not in names_by_label]
        if missing:
            raise RecipeError(
                f"dataset.{section}",
                f"no part maps a class to joint label(s) {missing[:10]}; labels must be 0..N-1",
            )
        self.classnames = [names_by_label[label] for label in range(self.num_classes)]
        self.palette = voc_palette(self.num_classes)
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.offsets[-1]

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to every part (their augmentations depend on it)."""
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        index %= len(self)
        part = bisect.bisect_right(self.offsets, index) - 1
        sample = self.datasets[part][index - self.offsets[part]]
        if sample.get("seg_target") is not None:
            sample["seg_target"] = _apply(self.luts[part], sample["seg_target"], self.ignore_index)
        sample["id"] = str(sample.get("id", index))
        return sample

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{n}={type(d).__name__}[{len(d)}]" for n, d in zip(self.names, self.datasets, strict=True)
        )
        return f"MultipleDataset({parts}, mode={self.mode!r}, num_classes={self.num_classes})"


def _split_part(cfg: Any, path: str, rootdir: str | None) -> tuple[dict, dict[int, int]]:
    """A part's dataset table without ``seg_target_remapper``, and the remapper with integer keys."""
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise RecipeError(path, "expected a dataset table with 'type' (and seg_target_remapper)")
    cfg = dict(cfg)
    if "seg_target_remapper" not in cfg:
        raise RecipeError(f"{path}.seg_target_remapper", "each part of a MultipleDataset needs one")
    raw = cfg.pop("seg_target_remapper")
    if not isinstance(raw, Mapping) or not raw:
        raise RecipeError(f"{path}.seg_target_remapper", "expected a table {part label = joint label, ...}")
    remapper = {}
    for source, target in raw.items():
        try:
            remapper[int(source)] = int(target)
        except (TypeError, ValueError):
            raise RecipeError(
                f"{path}.seg_target_remapper", f"labels must be integers, got {source!r} = {target!r}"
            ) from None
    if min(remapper) < 0 or min(remapper.values()) < 0:
        raise RecipeError(f"{path}.seg_target_remapper", "labels must be >= 0")
    if rootdir is not None and isinstance(cfg.get("rootdir"), str):
        cfg["rootdir"] = os.path.join(rootdir, cfg["rootdir"])
    return cfg, remapper


def _classname(dataset: Any, label: int, path: str) -> str:
    classnames = getattr(dataset, "classnames", None) or []
    if not 0 <= label < len(classnames):
        raise RecipeError(path, f"{type(dataset).__name__} has no class {label} (it has {len(classnames)})")
    return classnames[label]


def _shared_ignore_index(datasets: list[Any], names: list[str], section: str) -> int:
    values = {name: getattr(d, "ignore_index", -100) for name, d in zip(names, datasets, strict=True)}
    if len(set(values.values())) > 1:
        raise RecipeError(f"dataset.{section}", f"the parts must share one ignore_index, got {values}")
    return next(iter(values.values()))


def _lookup_table(remapper: dict[int, int], ignore_index: int) -> np.ndarray:
    """Part label -> joint label for labels ``0..max(remapper)``; unlisted labels -> ``ignore_index``."""
    table = np.full(max(remapper) + 1, ignore_index, dtype=np.int64)
    for source, target in remapper.items():
        table[source] = target
    return table


def _apply(table: np.ndarray, seg_target: np.ndarray | torch.Tensor, ignore_index: int):
    """Map a label map (numpy or tensor, any integer dtype) through ``table``; keeps its kind."""
    is_tensor = torch.is_tensor(seg_target)
    values = seg_target.cpu().numpy() if is_tensor else np.asarray(seg_target)
    out = np.full(values.shape, ignore_index, dtype=np.int64)
    inside = (values >= 0) & (values < len(table))
    out[inside] = table[values[inside].astype(np.intp)]
    return torch.from_numpy(out) if is_tensor else out
