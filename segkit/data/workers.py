"""DataLoader worker processes: enough shared memory before they start, and a quiet shutdown on Ctrl-C.

* :func:`check_shared_memory`: worker processes hand batches over through ``/dev/shm``; when it is too small
  (Docker's default is 64 MB) training hangs or dies with a bus error. The free space is compared with an estimate
  (one sample's tensors x batch size x prefetch factor x workers, for the train and test loaders) before any
  worker starts, and a shortfall is reported with the fix.
* :func:`install_interrupt_guard`: a Ctrl-C that lands while a multi-process loader iterator starts its workers
  is lost in ``os.fork``'s after-fork callbacks ("Exception ignored in _releaseLock") and the run goes on or hangs;
  one that interrupts the set-up leaves a half-built iterator whose ``__del__`` prints an ``AttributeError``
  traceback. The guard holds SIGINT while the iterator is built (it is raised right after, cleanly) and makes
  ``__del__`` quiet for a half-built iterator, terminating the workers it had started.
"""

from __future__ import annotations

import shutil
import signal
import threading
from typing import Any

from ..errors import DataError

SHM_PATH = "/dev/shm"
SHM_MARGIN = 1.5
"""Head room over the estimate (several batches in flight, pinned-memory copies)."""


def sample_bytes(sample: Any) -> int:
    """Bytes of the tensors and arrays in one sample (nested dicts/lists/tuples)."""
    if hasattr(sample, "element_size") and hasattr(sample, "numel"):
        return int(sample.element_size() * sample.numel())
    if hasattr(sample, "nbytes") and hasattr(sample, "dtype"):
        return int(sample.nbytes)
    if isinstance(sample, dict):
        return sum(sample_bytes(v) for v in sample.values())
    if isinstance(sample, (list, tuple)):
        return sum(sample_bytes(v) for v in sample)
    return 0


def first_sample(dataset: Any) -> Any:
    """``dataset[0]``, leaving the global random states as they were (a resumed run restored them)."""
    import random

    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        return dataset[0]
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def shared_memory_need(loaders: dict[str, Any]) -> tuple[int, list[str]]:
    """Bytes the loaders' workers may hold in shared memory at once, and how each was counted."""
    total, parts = 0, []
    for name, loader in loaders.items():
        workers = int(getattr(loader, "num_workers", 0) or 0)
        if workers <= 0 or len(loader.dataset) == 0:
            continue
        one = sample_bytes(first_sample(loader.dataset))
        batch = int(getattr(loader, "batch_size", None) or 1)
        prefetch = int(getattr(loader, "prefetch_factor", None) or 2)
        need = one * batch * prefetch * workers
        total += need
        parts.append(f"{name}: {one / 1e6:.1f} MB a sample x batch {batch} x prefetch {prefetch} x {workers} workers")
    return total, parts


def check_shared_memory(loaders: dict[str, Any], path: str = SHM_PATH) -> None:
    """Raise :class:`DataError` with the fix when ``path`` (``/dev/shm``) has less room than the loaders need."""
    need, parts = shared_memory_need(loaders)
    if not need:
        return
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return  # no /dev/shm (not Linux): PyTorch uses another mechanism
    if need * SHM_MARGIN > free:
        raise DataError(
            f"{path} has {free / 1e6:.0f} MB free but the DataLoader workers need about {need * SHM_MARGIN / 1e6:.0f} MB "
            f"({'; '.join(parts)}); the workers would hang or crash. Give the container more shared memory "
            "(docker run --shm-size=8g ...), or use fewer workers: --set dataloader.train.num_workers_per_gpu=0 "
            "(and dataloader.test.num_workers_per_gpu)")


def install_interrupt_guard() -> None:
    """Make PyTorch's multi-process loader iterator skip its shutdown when its ``__init__`` never finished."""
    from torch.utils.data import dataloader

    cls = dataloader._MultiProcessingDataLoaderIter
    if getattr(cls.__del__, "_segkit_guard", False):
        return
    original, original_init = cls.__del__, cls.__init__

    def __init__(self, *args, **kwargs) -> None:
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
            original_init(self, *args, **kwargs)
            return
        # a Ctrl-C while the workers are forked lands in os.fork's after-fork callbacks, which swallow it (and can
        # leave logging's lock held): hold it until the iterator is built, then it raises here, cleanly
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            original_init(self, *args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def __del__(self) -> None:
        try:
            original(self)
        except AttributeError:  # interrupted while starting: stop the workers it had started, quietly
            for worker in self.__dict__.get("_workers", []):
                if worker.is_alive():
                    worker.terminate()

    __del__._segkit_guard = True  # type: ignore[attr-defined]
    cls.__del__ = __del__
    cls.__init__ = __init__
