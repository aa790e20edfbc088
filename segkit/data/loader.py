"""DataLoaders for training and evaluation, one mechanism for any number of processes.

Training always samples through ``DistributedSampler`` (also with one process); evaluation shards the dataset
without padding (``indices[rank::world_size]``) so that no sample is counted twice. Augmentation randomness lives in
the dataset (``default_rng([seed, epoch, index])``), so batches do not depend on the number of workers; the
loader's own ``torch.Generator`` is seeded from ``(seed, epoch)``, so starting an epoch never draws from the global
torch RNG. Call :func:`set_epoch` before each epoch.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sized
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..errors import DataError, RecipeError, SegkitError, did_you_mean
from .transforms.fused import DEFERRED_KEYS

LOADER_DEFAULTS = {
    "TRAIN": {
        "batch_size_per_gpu": 1,
        "num_workers_per_gpu": 2,
        "shuffle": True,
        "pin_memory": True,
        "drop_last": True,
    },
    "TEST": {
        "batch_size_per_gpu": 1,
        "num_workers_per_gpu": 2,
        "shuffle": False,
        "pin_memory": True,
        "drop_last": False,
    },
}


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` in order: every sample on exactly one process, no padding."""

    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.indices = range(rank, len(dataset), num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """Evaluation order does not change between epochs."""


class SegkitDataLoader(DataLoader):
    """A ``DataLoader`` whose errors from worker processes read as the original ``SegkitError``.

    PyTorch re-raises a worker's exception with the worker's traceback pasted into its message; for a
    ``SegkitError`` (a user-facing problem such as an unreadable image) only the original message is kept.
    """

    def __iter__(self) -> Iterator[Any]:
        return _without_worker_tracebacks(super().__iter__())


def _without_worker_tracebacks(iterator: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from iterator
    except SegkitError as exc:
        raise _original_error(exc) from None


def _original_error(exc: SegkitError) -> SegkitError:
    """``DataError("Caught DataError in DataLoader worker ... segkit.errors.DataError: msg")`` -> ``DataError(msg)``."""
    text = str(exc)
    if "Original Traceback" not in text:
        return exc
    last = text.rstrip().splitlines()[-1]
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    try:
        return type(exc)(last[len(prefix) :] if last.startswith(prefix) else last)
    except TypeError:  # an error class with another constructor
        return exc


def per_process_batch_size(
    batch_size_per_gpu: int, world_size: int, expected_total_train_bs: int | None, auto_adapt: bool
) -> int:
    """SSSegmentation's rule: with ``auto_adapt`` the batch is ``expected_total // world_size``; either way the
    total must equal ``batch * world_size``."""
    if expected_total_train_bs is None:
        return batch_size_per_gpu
    batch = expected_total_train_bs // world_size if auto_adapt else batch_size_per_gpu
    if batch < 1 or batch * world_size != expected_total_train_bs:
        fix = (
            f"use a number of processes that divides {expected_total_train_bs}, or change the expected total"
            if auto_adapt
            else "set dataloader.train.batch_size_per_gpu accordingly, or enable auto-adapting"
        )
        raise SegkitError(
            f"the total training batch size must be {expected_total_train_bs}, but {world_size} process(es) x "
            f"batch_size_per_gpu {batch} = {batch * world_size}; {fix}"
        )
    return batch


def _loader_options(loader_cfg: dict, mode: str) -> dict[str, Any]:
    options = dict(LOADER_DEFAULTS[mode])
    for key, value in (loader_cfg or {}).items():
        if key not in options:
            raise RecipeError(
                f"dataloader.{mode.lower()}.{key}", f"unknown option{did_you_mean(key, options)}"
            )
        options[key] = value
    return options


def _generator_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


def seed_worker(worker_id: int) -> None:
    """Worker setup: one OpenCV thread per worker, distinct global seeds for third-party code, and freed memory kept
    for reuse where the process that started the workers keeps it (a worker not forked from it does not inherit
    that; see ``segkit.engine.threads.RETAIN_ENV``).

    segkit's own transforms draw only from the per-sample generator, so results do not depend on this.
    """
    from ..engine.threads import RETAIN_ENV, retain_freed_memory

    if os.environ.get(RETAIN_ENV) == "1":
        retain_freed_memory()
    cv2.setNumThreads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_dataloader(
    dataset,
    loader_cfg: dict,
    *,
    mode: str,
    world_size: int = 1,
    rank: int = 0,
    seed: int = 0,
    expected_total_train_bs: int | None = None,
    auto_adapt: bool = True,
    num_workers: int | None = None,
) -> DataLoader:
    """A DataLoader for this process from a ``dataloader.train``/``dataloader.test`` table.

    Keys: ``batch_size_per_gpu``, ``num_workers_per_gpu``, ``shuffle``, ``pin_memory`` (used only with CUDA),
    ``drop_last``. In ``'TRAIN'`` mode the batch follows :func:`per_process_batch_size`. In ``'TEST'`` mode
    ``shuffle`` is ignored: evaluation visits ``indices[rank::world_size]`` in order (SSSegmentation puts a
    padding ``DistributedSampler`` there too, which counts some samples twice when the sizes do not divide).
    ``num_workers`` replaces ``num_workers_per_gpu`` (the number :mod:`segkit.engine.threads` chose).
    """
    mode = mode.upper()
    if mode not in LOADER_DEFAULTS:
        raise ValueError(f"mode must be 'TRAIN' or 'TEST', got {mode!r}")
    options = _loader_options(loader_cfg, mode)
    if num_workers is not None:
        options["num_workers_per_gpu"] = num_workers
    if mode == "TRAIN":
        batch_size = per_process_batch_size(
            options["batch_size_per_gpu"], world_size, expected_total_train_bs, auto_adapt
        )
        sampler: Sampler = DistributedSampler(
            dataset,
            num_replicas=world_size,
            rank=rank,
            shuffle=options["shuffle"],
            seed=seed,
            drop_last=options["drop_last"],
        )
    else:
        batch_size = options["batch_size_per_gpu"]
        sampler = ShardSampler(dataset, num_replicas=world_size, rank=rank)
    generator = torch.Generator()
    generator.manual_seed(_generator_seed(seed, 0))
    loader = SegkitDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=options["num_workers_per_gpu"],
        collate_fn=collate_train if mode == "TRAIN" else collate_test,
        pin_memory=bool(options["pin_memory"]) and torch.cuda.is_available(),
        drop_last=options["drop_last"],
        worker_init_fn=seed_worker,
        generator=generator,
    )
    loader.segkit_seed = seed
    return loader


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Start epoch ``epoch``: reshuffle the sampler, select the dataset's augmentations, reseed the generator."""
    for owner in (loader.sampler, loader.dataset):
        if hasattr(owner, "set_epoch"):
            owner.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(_generator_seed(getattr(loader, "segkit_seed", 0), epoch))


def remaining_batches(loader, skip: int):
    """The batches of ``loader``'s current epoch after the first ``skip`` (call after ``set_epoch``): a loader of
    the same kind and settings over the sampler's remaining indices, so the skipped images are never loaded. The
    batches are the ones the full epoch would give (the sampler's order depends only on seed and epoch, each
    sample's augmentation only on seed, epoch and index)."""
    indices = list(loader.sampler)[skip * loader.batch_size:]
    options = {"batch_size": loader.batch_size, "sampler": indices, "num_workers": loader.num_workers,
               "collate_fn": loader.collate_fn, "pin_memory": loader.pin_memory, "drop_last": loader.drop_last,
               "worker_init_fn": loader.worker_init_fn, "generator": loader.generator, "timeout": loader.timeout,
               "multiprocessing_context": loader.multiprocessing_context}
    if loader.num_workers:
        options.update(prefetch_factor=loader.prefetch_factor, persistent_workers=loader.persistent_workers)
    resumed = type(loader)(loader.dataset, **options)
    resumed.segkit_seed = getattr(loader, "segkit_seed", 0)
    return resumed


# --------------------------------------------------------------------------- collation
def _stack(samples: list[dict], key: str, advice: str) -> torch.Tensor:
    values = [sample[key] for sample in samples]
    if not all(torch.is_tensor(v) for v in values):
        raise DataError(f"'{key}' is not a tensor: end data_pipelines with ToTensor (after Normalize)")
    shapes = sorted({tuple(v.shape) for v in values})
    if len(shapes) > 1:
        raise DataError(f"cannot batch '{key}' of different sizes {shapes}; {advice}")
    return torch.stack(values)


def _collate(samples: list[dict], stack_keys: tuple[str, ...], advice: str) -> dict[str, Any]:
    batch: dict[str, Any] = {}
    for key in samples[0]:
        if key in stack_keys:
            batch[key] = _stack(samples, key, advice)
        else:
            batch[key] = [sample[key] for sample in samples]
    return batch


def collate_train(samples: list[dict]) -> dict[str, Any]:
    """``image`` [B,3,H,W] float32, ``seg_target`` [B,H,W] int64 (plus ``edge_target`` and
    ``img2aug_pos_mapper`` when present); other keys as lists.

    Samples left for the device to normalise (see :meth:`~segkit.data.transforms.compose.Compose.defer_normalization`)
    give ``image`` [B,H,W,C] uint8, ``image_levels`` [B,256] and ``image_window`` [B,4], and label maps in the
    integer type they travelled in (the trainer makes them int64 on the device)."""
    advice = "make the train pipeline end at a fixed size (RandomCrop, then Padding to the crop size)"
    deferred = sum("image_levels" in sample for sample in samples)
    if 0 < deferred < len(samples):
        raise DataError(
            f"{deferred} of {len(samples)} samples of this batch left their 8-bit image to be normalised on the "
            "device and the others did not (their images were not 8-bit when Normalize came); set "
            "normalize_on_device = false in the recipe"
        )
    return _collate(samples, ("image", "seg_target", "edge_target", "img2aug_pos_mapper", *DEFERRED_KEYS), advice)


def collate_test(samples: list[dict]) -> dict[str, Any]:
    """``image`` (and ``img2aug_pos_mapper``, which has its size) stacked; ``seg_target`` a list of original-size
    [H,W] int64 tensors; other keys as lists."""
    advice = "set dataloader.test.batch_size_per_gpu = 1, or resize test images to one size"
    return _collate(samples, ("image", "img2aug_pos_mapper"), advice)
