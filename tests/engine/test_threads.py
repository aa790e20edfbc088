"""CPU threads and DataLoader workers: never more than each process's share of the CPUs by default, explicit
recipe overrides, and the line in the run header."""

from __future__ import annotations

import itertools
import os
from types import SimpleNamespace

import pytest
import torch

from segkit.engine import threads
from segkit.engine.threads import plan_cpu


@pytest.mark.parametrize(
    ("cpus", "processes", "asked", "threads_", "workers"),
    [
        (2, 1, 2, 1, 1),  # this box: one thread computes, one worker loads
        (2, 2, 2, 1, 0),  # --nproc 2 on 2 CPUs: one CPU each, data loaded in the process
        (16, 1, 16, 1, 15),  # a GPU box: SSSegmentation's 16 workers capped to leave the main process a CPU
        (16, 4, 2, 2, 2),  # 4 CPUs each
        (16, 1, 0, 16, 0),  # no workers: every CPU computes
        (8, 3, 4, 1, 1),  # 8 // 3 = 2 CPUs each
        (1, 1, 4, 1, 0),
        (4, 8, 2, 1, 0),  # more processes than CPUs: one thread each, no workers
    ],
)
def test_chosen_threads_and_workers(cpus, processes, asked, threads_, workers):
    plan = plan_cpu(cpus, processes, asked)
    assert (plan.threads, plan.workers) == (threads_, workers)
    assert not plan.threads_set and not plan.workers_set


def test_defaults_never_oversubscribe():
    for cpus, processes, asked in itertools.product(range(1, 40), range(1, 9), range(0, 20)):
        plan = plan_cpu(cpus, processes, asked)
        assert plan.threads >= 1 and plan.workers >= 0
        assert plan.threads + plan.workers <= max(1, cpus // processes)
        if cpus >= processes:
            assert processes * (plan.threads + plan.workers) <= cpus
        assert plan.workers == min(asked, max(0, cpus // processes - 1))  # as many as asked, when they fit


def test_explicit_numbers_override_and_the_other_fills_the_rest():
    plan = plan_cpu(8, 1, 16, num_threads=3)
    assert (plan.threads, plan.workers) == (3, 5)
    plan = plan_cpu(8, 2, 16, num_workers=1)
    assert (plan.threads, plan.workers) == (3, 1)
    assert plan.workers_for(0) == 1  # an explicit number applies to every loader
    plan = plan_cpu(2, 1, 0, num_threads=4, num_workers=2)  # both given: as given, and the header says so
    assert (plan.threads, plan.workers) == (4, 2)
    assert "more than the 2 CPU(s)" in plan.describe()


def test_omp_num_threads_caps_the_automatic_threads_only():
    plan = plan_cpu(8, 1, 2, thread_cap=1)
    assert (plan.threads, plan.workers) == (1, 2)
    assert "1 torch thread (OMP_NUM_THREADS=1)" in plan.describe()
    assert plan_cpu(8, 1, 2, thread_cap=16).threads == 6
    assert plan_cpu(8, 1, 2, num_threads=4, thread_cap=1).threads == 4  # the recipe's number wins


def test_test_loader_is_capped_like_the_training_one():
    plan = plan_cpu(4, 1, 2)
    assert (plan.threads, plan.workers) == (2, 2)
    assert plan.workers_for(8) == 3 and plan.workers_for(1) == 1


def test_describe_names_the_numbers_and_the_override():
    line = plan_cpu(16, 2, 16).describe()
    assert line == ("cpu: 16 CPUs / 2 processes; each process: 1 torch thread + 7 dataloader workers "
                    "(recipe asks 16; capped to fit, runtime.num_workers overrides)")
    assert plan_cpu(2, 1, 0, num_threads=2).describe() == (
        "cpu: 2 CPUs; each process: 2 torch threads (runtime.num_threads) + 0 dataloader workers")


def test_available_cpus_follows_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.available_cpus() == 3
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1.5)
    assert threads.available_cpus() == 2


def test_local_processes_from_torchrun(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.local_processes() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads.local_processes() == 4


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_configure_sets_torch_threads(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    recipe = SimpleNamespace(runtime=SimpleNamespace(num_threads=None, num_workers=None, retain_freed_memory=False),
                             dataloader=SimpleNamespace(train=SimpleNamespace(num_workers_per_gpu=1)))
    plan = threads.configure_cpu(recipe, cpus=4, processes=1)
    assert (plan.threads, plan.workers) == (3, 1) and torch.get_num_threads() == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    plan = threads.configure_cpu(recipe, cpus=4)
    assert (plan.threads, plan.workers) == (1, 1) and torch.get_num_threads() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    plan = threads.configure_cpu(recipe, cpus=8)
    assert (plan.threads, plan.workers) == (2, 1) and torch.get_num_threads() == 2


def test_recipe_keys_are_validated(tiny_recipe):
    from segkit.errors import SegkitError
    from segkit.recipe import load_recipe

    rec = load_recipe(tiny_recipe, ["runtime.num_threads=3", "runtime.num_workers=0"])
    assert (rec.runtime.num_threads, rec.runtime.num_workers) == (3, 0)
    assert load_recipe(tiny_recipe).runtime.num_threads is None
    with pytest.raises(SegkitError, match="runtime.num_threads"):
        load_recipe(tiny_recipe, ["runtime.num_threads=0"])


def test_run_header_and_loaders_use_the_plan(tiny_recipe, capsys, monkeypatch, restore_threads):
    from segkit.cli import main

    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # as in a 2-process job on this machine: 2 CPUs each
    seen = {}
    from segkit.engine import trainer as trainer_module

    real_build = trainer_module.build_dataloader

    def spy(dataset, cfg, *, mode, **kwargs):
        loader = real_build(dataset, cfg, mode=mode, **kwargs)
        seen[mode] = loader.num_workers
        return loader

    monkeypatch.setattr(trainer_module, "build_dataloader", spy)
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tiny_recipe), "--set", "dataloader.train.num_workers_per_gpu=3",
              "--set", "scheduler.max_epochs=1"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, out + err
    line = ("cpu: 4 CPUs / 2 processes; each process: 1 torch thread + 1 dataloader worker "
            "(recipe asks 3; capped to fit, runtime.num_workers overrides)")
    assert line in " ".join(out.split())  # the console may wrap it
    assert line in (tiny_recipe.parent / "run" / "log.txt").read_text()
    assert seen == {"TRAIN": 1, "TEST": 0} and torch.get_num_threads() == 1


ROUNDS = """
import resource
import torch


def rounds(count):  # like forward passes: tensors of 4-48 MiB made and freed; the page faults of each round
    faults = []
    for _ in range(count):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        kept = []
        for mib in (4, 16, 48, 16, 4):
            kept.append(torch.empty(mib * 2**18).fill_(1.0))
            if len(kept) > 2:
                kept.pop(0)
        del kept
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults
"""
"""The allocation rounds both probe scripts below run (the first in a process, the second in a loader worker)."""

RETENTION_PROBE = ROUNDS + """
import sys
from segkit.engine.threads import retain_freed_memory
if sys.argv[1] == "worker":  # a loader worker's set-up in a fresh process (spawn, forkserver): told by the parent
    from segkit.data.loader import seed_worker

    seed_worker(0)
applied = retain_freed_memory() if sys.argv[1] == "on" else False
print(applied, *rounds(8))
"""


def _glibc() -> bool:
    import ctypes
    import sys

    try:
        return sys.platform.startswith("linux") and bool(ctypes.CDLL(None).gnu_get_libc_version)
    except (OSError, AttributeError):
        return False


def test_retained_memory_is_reused_without_page_faults():
    """Rounds of 4-48 MiB tensors made and freed: without retention every round maps fresh memory (over 20000
    pages of 4 KiB, each faulted in and zeroed by the kernel); with it, once the heap has grown to the rounds'
    peak, freed memory serves the next round."""
    import os
    import subprocess
    import sys

    def probe(mode, **env):
        out = subprocess.run([sys.executable, "-c", RETENTION_PROBE, mode], check=True, capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **env}).stdout.split()
        return out[0] == "True", [int(v) for v in out[1:]]

    applied, faults = probe("on")
    if not _glibc():  # nothing to tune: the function says so and changes nothing
        assert not applied
        return
    assert applied and sum(faults[-3:]) < 1000, faults
    applied, faults = probe("off")
    assert not applied and min(faults) > 15000, faults
    _, faults = probe("worker", **{threads.RETAIN_ENV: "1"})  # the worker set-up applied it, told by the variable
    assert sum(faults[-3:]) < 1000, faults


@pytest.mark.parametrize("retain", [True, False])
def test_configure_retains_freed_memory_unless_the_recipe_says_not(monkeypatch, restore_threads, retain):
    calls = []
    monkeypatch.setattr(threads, "retain_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.delenv(threads.RETAIN_ENV, raising=False)
    recipe = SimpleNamespace(runtime=SimpleNamespace(num_threads=1, num_workers=0, retain_freed_memory=retain),
                             dataloader=SimpleNamespace(train=SimpleNamespace(num_workers_per_gpu=0)))
    plan = threads.configure_cpu(recipe, cpus=2, processes=1)
    assert plan.retains_memory is retain and bool(calls) is retain
    assert ("freed memory kept for reuse" in plan.describe()) is retain
    assert (os.environ.get(threads.RETAIN_ENV) == "1") is retain  # what workers not forked from here read


SPAWNED_WORKERS = ROUNDS + """
import os
from torch.utils.data import DataLoader, Dataset
from segkit.data.loader import seed_worker
from segkit.engine.threads import RETAIN_ENV


class Rounds(Dataset):  # in the worker: page faults of the last of several allocation rounds
    def __len__(self):
        return 1

    def __getitem__(self, index):
        return rounds(6)[-1]


if __name__ == "__main__":
    for setting in ("1", None):  # a spawned worker reads the variable the parent has when it starts the worker
        if setting:
            os.environ[RETAIN_ENV] = setting
        else:
            os.environ.pop(RETAIN_ENV, None)
        loader = DataLoader(Rounds(), num_workers=1, worker_init_fn=seed_worker, multiprocessing_context="spawn")
        print(int(next(iter(loader))))
"""


@pytest.mark.slow  # about 30 s: three processes import torch
def test_spawned_loader_workers_keep_freed_memory_when_the_parent_does(tmp_path):
    """Workers of a ``spawn`` context (like Python 3.14's default ``forkserver``) do not inherit the allocator
    setting; ``seed_worker`` applies it again when ``configure_cpu`` applied it in the parent."""
    import subprocess
    import sys

    if not _glibc():
        return  # nothing to apply (the probe above checks that the function says so)
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED_WORKERS)
    out = subprocess.run([sys.executable, str(script)], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300).stdout.split()
    kept, system = int(out[0]), int(out[1])
    assert kept < 1000 and system > 15000, (kept, system)
