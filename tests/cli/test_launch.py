"""Launch semantics: ``--nproc N`` means N CPU processes (gloo) even where GPUs are visible; ``--gpus N`` beyond the
visible GPUs exits 2 saying how many there are. Checked on CPU with torch.cuda's answers monkeypatched."""

from __future__ import annotations

import pytest
import torch

from segkit.cli import main
from segkit.engine import distributed
from segkit.engine.distributed import DEVICE_KIND_ENV, init_distributed


@pytest.fixture
def one_gpu(monkeypatch):
    """torch.cuda says one GPU is visible; set_device records instead of touching a device."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv(DEVICE_KIND_ENV, "")  # restored (removed) after the test, whatever the launcher sets
    return chosen


@pytest.fixture
def launched(monkeypatch):
    """Replaces torchrun: records the argv and device kind each launch would give its children."""
    calls = []

    def relaunch(argv, nproc, nnodes=1, node_rank=0, rdzv_endpoint=None):
        import os

        calls.append({"argv": argv, "nproc": nproc, "kind": os.environ.get(DEVICE_KIND_ENV)})
        return 0

    monkeypatch.setattr(distributed, "relaunch", relaunch)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return calls


def run(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code, capsys.readouterr().err


def test_nproc_launches_cpu_processes_on_a_gpu_machine(one_gpu, launched, tiny_recipe, capsys):
    code, err = run(capsys, "train", str(tiny_recipe), "--nproc", "2")
    assert code == 0, err
    assert launched == [{"argv": ["train", str(tiny_recipe)], "nproc": 2, "kind": "cpu"}]


def test_gpus_launch_gpu_processes(one_gpu, launched, tiny_recipe, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    code, err = run(capsys, "train", str(tiny_recipe), "--gpus", "2")
    assert code == 0, err
    assert launched[0]["kind"] == "cuda" and launched[0]["nproc"] == 2


@pytest.mark.parametrize("argv, needle", [
    (["--gpus", "2"], "--gpus 2: only 1 CUDA GPU is visible"),
    (["--gpus", "2", "--nproc", "2"], "give one"),
    (["--nproc", "2", "--device", "cuda"], "--nproc runs CPU processes"),
])
def test_impossible_launches_exit_2(one_gpu, launched, tiny_recipe, capsys, argv, needle):
    code, err = run(capsys, "train", str(tiny_recipe), *argv)
    assert code == 2 and needle in err and "Traceback" not in err
    assert launched == []


def test_gpus_without_a_gpu_exits_2(launched, tiny_recipe, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = run(capsys, "train", str(tiny_recipe), "--gpus", "1")
    assert code == 2 and "no CUDA GPU is visible" in err and "--nproc 1" in err


def test_a_launched_cpu_process_stays_on_the_cpu(one_gpu, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")  # no process group: only the device choice is under test
    monkeypatch.setenv(DEVICE_KIND_ENV, "cpu")
    assert init_distributed().device == torch.device("cpu") and one_gpu == []


def test_without_the_launcher_a_rank_takes_its_gpu_and_an_absent_one_is_a_clear_error(one_gpu, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert init_distributed().device == torch.device("cuda:0") and one_gpu == [torch.device("cuda:0")]
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(Exception, match="process 1 of this node has no GPU: 1 visible"):
        init_distributed()
