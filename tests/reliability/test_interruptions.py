"""Interruptions: kill -9 at chosen points of checkpoint writing, Ctrl-C with loader workers, a full disk, a full
/dev/shm, a non-finite loss. After any kill, ``segkit train RECIPE --resume`` continues from the newest checkpoint
that loads and, under ``--deterministic`` on the CPU, ends bit-identical to a run that was never interrupted.

The kills are exact: ``SEGKIT_TEST_CRASH_WRITING=NAME:STAGE:N`` makes the process ``os._exit(137)`` during its N-th
write of the file NAME, at STAGE (``open`` / ``half`` / ``written`` / ``renamed``; see :mod:`segkit.fileio`), the
same state a kill -9 at that instant leaves.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segkit import fileio
from segkit.fileio import FAULT_ENV

from .conftest import run_cli, snapshot, write_recipe

EPOCHS = 3
SETS = ["--deterministic", "--set", f"scheduler.max_epochs={EPOCHS}", "--set", "training_logging_manager_cfg.log_interval_iters=1"]


def segkit(recipe: Path, work: Path, *extra: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(FAULT_ENV, None)
    if crash:
        env[FAULT_ENV] = crash
    return subprocess.run([sys.executable, "-m", "segkit", "train", str(recipe), *SETS, "--work-dir", str(work),
                           *extra], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, synthetic_root) -> Path:
    return write_recipe(tmp_path_factory.mktemp("interrupt"), synthetic_root)


@pytest.fixture(scope="module")
def straight(recipe, tmp_path_factory) -> dict:
    """The uninterrupted run's final weights."""
    work = tmp_path_factory.mktemp("straight") / "run"
    proc = segkit(recipe, work)
    assert proc.returncode == 0, proc.stderr
    return torch.load(work / "checkpoints" / "last.pt", weights_only=True)


def assert_identical(work: Path, straight: dict) -> None:
    final = torch.load(work / "checkpoints" / "last.pt", weights_only=True)
    assert final["epoch"] == EPOCHS and final["iteration"] == straight["iteration"]
    assert final["model"].keys() == straight["model"].keys()
    assert all(torch.equal(final["model"][k], straight["model"][k]) for k in final["model"])
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    steps = [r["iter"] for r in records if r["kind"] == "train"]
    assert steps == sorted(set(steps)), "metrics.jsonl repeats the steps of the interrupted attempt"


def killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 137, proc.stdout + proc.stderr


def epoch_of(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["epoch"])


def test_killed_at_three_points_of_writing_last_pt(recipe, straight, tmp_path, capsys):
    """kill -9 (1) as the first last.pt is opened: no checkpoint yet, --resume starts over in the same folder;
    (2) half-way through epoch 2's last.pt; (3) in the resumed run, after epoch 3's last.pt is written and synced
    but not renamed. Each --resume continues from the newest checkpoint; the end is bit-identical."""
    work = tmp_path / "run"
    ckpts = work / "checkpoints"
    killed(segkit(recipe, work, crash="last.pt:open:1"))
    assert not (ckpts / "last.pt").exists() and (work / "recipe.toml").exists()
    code, output = run_cli(capsys, "train", recipe, *SETS, "--work-dir", work)  # without --resume: refused
    assert code == 2 and "--resume" in output and "Traceback" not in output

    proc = segkit(recipe, work, "--resume", crash="last.pt:half:2")
    killed(proc)
    assert "starting from the beginning" in proc.stdout
    assert epoch_of(ckpts / "last.pt") == 1
    assert [p.name for p in ckpts.iterdir() if p.name.endswith(".tmp")]  # the partial file is there

    killed(segkit(recipe, work, "--resume", crash="last.pt:written:2"))  # the resumed run writes epochs 2 and 3
    assert epoch_of(ckpts / "last.pt") == 2
    proc = segkit(recipe, work, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "resumed from" in proc.stdout + proc.stderr
    assert_identical(work, straight)


def test_epoch_checkpoint_newer_than_a_corrupt_last(recipe, straight, tmp_path):
    """With save_interval_epochs: kill -9 after epoch_2.pt is renamed into place, before last.pt; last.pt then
    corrupted too. --resume skips last.pt, names why, and continues from epoch_2.pt."""
    work = tmp_path / "run"
    killed(segkit(recipe, work, "--set", "save_interval_epochs=1", crash="epoch_2.pt:renamed:1"))
    ckpts = work / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("*.pt")) == ["best.pt", "epoch_1.pt", "epoch_2.pt", "last.pt"]
    (ckpts / "last.pt").write_bytes((ckpts / "last.pt").read_bytes()[:1000])
    proc = segkit(recipe, work, "--set", "save_interval_epochs=1", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "last.pt does not load" in proc.stdout and "resuming from" in proc.stdout and "epoch_2.pt" in proc.stdout
    assert_identical(work, straight)


def test_max_keep_ckpts_prunes_and_best_holds_weights_only(recipe, tmp_path, capsys):
    work = tmp_path / "run"
    code, output = run_cli(capsys, "train", recipe, *SETS, "--work-dir", work, "--set", "save_interval_epochs=1",
                           "--set", "max_keep_ckpts=2")
    assert code == 0, output
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["best.pt", "epoch_2.pt", "epoch_3.pt",
                                                                         "last.pt"]
    best = torch.load(work / "checkpoints" / "best.pt", weights_only=True)
    assert "model" in best and "optimizer" not in best and "rng" not in best
    assert (work / "checkpoints" / "best.pt").stat().st_size < 0.6 * (work / "checkpoints" / "last.pt").stat().st_size


@pytest.fixture
def finished_epoch_one(recipe, tmp_path, capsys) -> Path:
    """A run stopped after epoch 1 (through the CLI, in this process), to be resumed by the next case."""
    work = tmp_path / "run"
    code, output = run_cli(capsys, "train", recipe, *SETS, "--set", "scheduler.max_epochs=1", "--work-dir", work)
    assert code == 0, output
    return work


@pytest.mark.parametrize("failure", ["ENOSPC from write", "torch zip writer RuntimeError"])
def test_disk_full_while_writing_a_checkpoint(finished_epoch_one, recipe, capsys, monkeypatch, failure):
    work = finished_epoch_one
    before = snapshot(work / "checkpoints")
    if failure.startswith("ENOSPC"):
        real_write = fileio.RecordingFile.write

        class FullDisk:
            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

        def write(self, data):
            if self.path.name == "last.pt" and self.written > 4096:
                self.fh = FullDisk()  # the file underneath fails as a full disk does
            return real_write(self, data)

        monkeypatch.setattr(fileio.RecordingFile, "write", write)
    else:
        def save(obj, f, *args, **kwargs):
            f.write(b"PK\x03\x04 partial")
            raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")

        monkeypatch.setattr(torch, "save", save)
    code, output = run_cli(capsys, "train", recipe, *SETS, "--work-dir", work, "--resume")
    assert code == 2, output
    last = work / "checkpoints" / "last.pt"
    assert f"disk full while writing {last}; the previous checkpoint is intact" in output
    assert "Traceback" not in output
    assert snapshot(work / "checkpoints") == before  # no temporary file left, last.pt untouched
    assert epoch_of(last) == 1


def test_non_finite_loss_stops_naming_iteration_and_terms(finished_epoch_one, recipe, capsys, monkeypatch):
    from segkit.engine import trainer as trainer_mod

    work = finished_epoch_one
    before = snapshot(work / "checkpoints")
    real_step = trainer_mod.Trainer.train_step

    def step(self, batch):
        terms = real_step(self, batch)
        if self.iteration == 5:  # the second step of epoch 2
            terms = {k: v * float("nan") if k != "loss_aux" else v for k, v in terms.items()}
        return terms

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", step)
    code, output = run_cli(capsys, "train", recipe, *SETS, "--work-dir", work, "--resume")
    assert code == 2, output
    assert "non-finite loss at epoch 2, iteration 5" in output and "loss_cls=nan" in output
    assert "loss_aux=" in output and "last.pt (end of epoch 1) is kept" in output
    assert "Traceback" not in output
    assert snapshot(work / "checkpoints") == before


def test_full_dev_shm_is_found_before_workers_start(recipe, tmp_path, capsys, monkeypatch):
    from segkit.data import workers

    real = workers.shutil.disk_usage
    monkeypatch.setattr(workers.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=1 << 20) if str(p) == "/dev/shm" else real(p))
    work = tmp_path / "run"
    code, output = run_cli(capsys, "train", recipe, *SETS, "--work-dir", work, "--set",
                           "dataloader.train.num_workers_per_gpu=2")
    assert code == 2, output
    assert "/dev/shm has 1 MB free" in output and "--shm-size" in output
    assert "dataloader.train.num_workers_per_gpu=0" in output and "Traceback" not in output
    assert not (work / "checkpoints").exists()


def test_ctrl_c_with_loader_workers(recipe, tmp_path):
    """SIGINT as epoch 2 starts its workers: exit 130, a stop line, no traceback (AttributeError or other)."""
    work = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "segkit", "train", str(recipe), *SETS, "--work-dir", str(work),
                             "--set", "dataloader.train.num_workers_per_gpu=2", "--set", "scheduler.max_epochs=100"],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            # a shell's background job ignores SIGINT and children inherit that: undo it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    last = work / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err and "AttributeError" not in err
    assert epoch_of(last) >= 1


def test_interrupted_loader_iterator_shuts_down_quietly(synthetic_root, monkeypatch):
    """A Ctrl-C inside the iterator's set-up (after its workers started) leaves no 'Exception ignored' trace."""
    import gc

    from torch.utils.data import DataLoader, dataloader

    from segkit.data.workers import install_interrupt_guard

    install_interrupt_guard()
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def interrupted_reset(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "_reset", interrupted_reset)
    loader = DataLoader(list(range(8)), batch_size=2, num_workers=1)
    with pytest.raises(KeyboardInterrupt):
        iter(loader)
    gc.collect()
    assert unraisable == []


def test_checkpoint_files_hash_stable_across_a_refused_resume(recipe, tmp_path, capsys):
    """--resume into a folder whose only checkpoints do not load: exit 2 naming each, nothing changed."""
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "last.pt").write_bytes(b"garbage")
    (ckpts / "epoch_3.pt").write_text("not a checkpoint")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ckpts.iterdir()}
    code, output = run_cli(capsys, "train", recipe, *SETS, "--work-dir", tmp_path / "run", "--resume")
    assert code == 2, output
    assert "no checkpoint in" in output and "last.pt does not load" in output and "epoch_3.pt does not load" in output
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ckpts.iterdir()} == before


def test_trim_run_log_keeps_records_up_to_the_resumed_step(tmp_path):
    """A resumed run's metrics.jsonl loses the records the interrupted attempt wrote after the checkpoint, and the
    line the kill cut short; records without a step stay."""
    from segkit.engine.checkpoint import trim_run_log

    lines = ['{"kind": "train", "iter": 3}', '{"kind": "eval", "iter": 3}', '{"kind": "note", "iter": null}',
             '{"kind": "train", "iter": 4}', '{"kind": "tra']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    trim_run_log(tmp_path, 3)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == lines[:3]
