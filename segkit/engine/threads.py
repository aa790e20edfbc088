"""CPU threads and DataLoader workers per process, chosen so that a job never oversubscribes its CPUs.

Each process of a job gets ``cpus // local processes`` CPUs (its *budget*; ``cpus`` is what the process may run on:
its affinity mask, and a cgroup CPU quota when one is set). By default the DataLoader gets what the recipe's
``dataloader.*.num_workers_per_gpu`` asks, but at most ``budget - 1`` workers, and torch's intra-op threads get the
rest: ``threads + workers <= budget`` in every process. An ``OMP_NUM_THREADS`` in the environment caps the
automatic thread count (segkit's ``--nproc`` launcher sets it to the budget; a bare ``torchrun`` sets 1).
``runtime.num_threads`` / ``runtime.num_workers`` set either number explicitly (then the other one fills what is
left of the budget).

PyTorch's DataLoader already runs each worker with one torch thread; segkit's worker init gives OpenCV one thread
too, so a worker is one busy core.

Freed memory is kept for reuse (``runtime.retain_freed_memory``, on by default; glibc only, see
:func:`retain_freed_memory`): torch's CPU tensors of more than a few MiB otherwise come from fresh memory maps that
the kernel must fault in and zero on every allocation, which on CPU inference cost a fifth of the forward time on
the 2-core development box.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuPlan:
    """What one process of a job uses: ``threads`` torch intra-op threads and up to ``worker_cap`` workers."""

    cpus: int
    processes: int
    threads: int
    worker_cap: int
    requested_workers: int
    threads_set: bool = False
    workers_set: bool = False
    thread_cap: int | None = None
    retains_memory: bool = False

    @property
    def budget(self) -> int:
        """CPUs for each process of the job on this machine."""
        return max(1, self.cpus // self.processes)

    @property
    def workers(self) -> int:
        """DataLoader workers of the training loader."""
        return self.workers_for(self.requested_workers)

    def workers_for(self, requested: int) -> int:
        """Workers for a loader whose recipe table asks for ``requested`` (the explicit number when set)."""
        return self.worker_cap if self.workers_set else min(requested, self.worker_cap)

    def describe(self) -> str:
        """One line for the run header."""
        per = f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}"
        if self.processes > 1:
            per += f" / {self.processes} processes"
        threads = f"{self.threads} torch thread{'s' if self.threads != 1 else ''}"
        threads += " (runtime.num_threads)" if self.threads_set else ""
        if not self.threads_set and self.thread_cap is not None and self.threads == self.thread_cap \
                and self.threads < self.budget - self.workers:
            threads += f" (OMP_NUM_THREADS={self.thread_cap})"
        workers = f"{self.workers} dataloader worker{'s' if self.workers != 1 else ''}"
        if self.workers_set:
            workers += " (runtime.num_workers)"
        elif self.workers < self.requested_workers:
            workers += f" (recipe asks {self.requested_workers}; capped to fit, runtime.num_workers overrides)"
        line = f"cpu: {per}; each process: {threads} + {workers}"
        if self.threads + self.workers > self.budget:
            line += f" - more than the {self.budget} CPU(s) each process has"
        if self.retains_memory:
            line += "; freed memory kept for reuse"
        return line


def plan_cpu(cpus: int, processes: int, requested_workers: int, num_threads: int | None = None,
             num_workers: int | None = None, thread_cap: int | None = None) -> CpuPlan:
    """The threads and workers of each of ``processes`` processes sharing ``cpus`` CPUs (see the module doc);
    ``thread_cap`` (``OMP_NUM_THREADS``) bounds the automatic thread count."""
    if cpus < 1 or processes < 1 or requested_workers < 0:
        raise ValueError(f"bad CPU plan inputs: cpus={cpus}, processes={processes}, workers={requested_workers}")
    budget = max(1, cpus // processes)
    if num_workers is not None:
        worker_cap = num_workers
        threads = num_threads if num_threads is not None else max(1, budget - num_workers)
    elif num_threads is not None:
        threads = num_threads
        worker_cap = max(0, budget - num_threads)
    else:
        worker_cap = max(0, budget - 1)
        threads = max(1, budget - min(requested_workers, worker_cap))
    if num_threads is None and thread_cap is not None:
        threads = max(1, min(threads, thread_cap))
    return CpuPlan(cpus=cpus, processes=processes, threads=threads, worker_cap=worker_cap,
                   requested_workers=requested_workers, threads_set=num_threads is not None,
                   workers_set=num_workers is not None, thread_cap=thread_cap)


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, lowered to a cgroup (v2 or v1) CPU quota when one is set."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(count, math.ceil(quota))) if quota else max(1, count)


def _cgroup_quota() -> float | None:
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if fields and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def local_processes() -> int:
    """Processes of this job on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without torchrun)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def omp_num_threads() -> int | None:
    """``OMP_NUM_THREADS`` when it is set to a positive int."""
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return value if value >= 1 else None


RETAIN_ENV = "SEGKIT_RETAIN_FREED_MEMORY"
"""Set to ``1`` by :func:`configure_cpu` once it kept freed memory for reuse: DataLoader workers started by a
``forkserver`` or ``spawn`` context (Python 3.14's default on Linux is ``forkserver``) do not inherit the allocator
setting as forked ones do, and apply it again (``segkit.data.loader.seed_worker``)."""

MMAP_THRESHOLD = 1 << 30
"""Allocations up to this size come from the heap once :func:`retain_freed_memory` ran (glibc's default: 128 KiB,
raised on the fly up to 32 MiB)."""

TRIM_THRESHOLD = 1 << 30
"""Free memory at the top of the heap handed back to the system only beyond this (glibc's default: 128 KiB)."""


def retain_freed_memory() -> bool:
    """Keep freed memory in this process for reuse instead of handing it back to the system; ``True`` where applied
    (glibc on Linux), ``False`` elsewhere (nothing changes).

    glibc serves allocations above its mmap threshold with fresh memory maps and unmaps them when freed, so every
    large tensor (activations, logits, slide-inference outputs) costs one page fault per 4 KiB, in which the kernel
    zeroes the page. Raising the threshold to :data:`MMAP_THRESHOLD` and the trim threshold to
    :data:`TRIM_THRESHOLD` with ``mallopt`` (glibc's documented knobs; the in-process equivalent of running under
    jemalloc or tcmalloc, as PyTorch's CPU performance guide advises) makes freed memory serve the next allocation
    already mapped. The process keeps the memory it peaked at, as a caching allocator does. DataLoader workers forked
    afterwards inherit the setting."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return mallopt(m_mmap_threshold, MMAP_THRESHOLD) == 1 and mallopt(m_trim_threshold, TRIM_THRESHOLD) == 1


def configure_cpu(recipe, *, cpus: int | None = None, processes: int | None = None) -> CpuPlan:
    """Plan this process's threads and workers from ``recipe.runtime`` and its training loader, and set torch's
    (and OpenCV's) intra-op threads accordingly; keep freed memory for reuse unless
    ``runtime.retain_freed_memory = false``."""
    import dataclasses

    import cv2
    import torch

    runtime = recipe.runtime
    plan = plan_cpu(cpus or available_cpus(), processes or local_processes(),
                    recipe.dataloader.train.num_workers_per_gpu, runtime.num_threads, runtime.num_workers,
                    omp_num_threads())
    if torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)
    cv2.setNumThreads(plan.threads)
    if runtime.retain_freed_memory and retain_freed_memory():
        plan = dataclasses.replace(plan, retains_memory=True)
        os.environ[RETAIN_ENV] = "1"  # loader workers not forked from here (forkserver, spawn) apply it themselves
    return plan
