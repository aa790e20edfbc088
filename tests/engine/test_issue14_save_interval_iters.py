"""``save_interval_iters``: ``last.pt`` rewritten inside an epoch, and ``--resume`` continuing from that iteration.

The tiny recipe runs 3 iterations per epoch; with ``save_interval_iters = 2`` over 2 epochs ``last.pt`` is written
at iteration 2 (inside epoch 1), at the end of epoch 1, at iteration 4 (inside epoch 2) and at the end of epoch 2
(iteration 6 is the epoch's last: the end of the epoch writes it). ``SEGKIT_TEST_CRASH_WRITING=last.pt:renamed:N``
kills the process right after the N-th ``last.pt`` is in place, as a kill -9 would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from segkit.data.loader import build_dataloader, remaining_batches, set_epoch
from segkit.fileio import FAULT_ENV

ARGS = ["--deterministic", "--set", "scheduler.max_epochs=2", "--set", "training_logging_manager_cfg.log_interval_iters=1",
        "--set", "save_interval_iters=2"]


def train(recipe: Path, work: Path, *extra: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop(FAULT_ENV, None)
    if crash:
        env[FAULT_ENV] = crash
    return subprocess.run([sys.executable, "-m", "segkit", "train", str(recipe), *ARGS, "--work-dir", str(work),
                           *extra], capture_output=True, text=True, env=env, timeout=600)


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_last_pt_inside_an_epoch_and_resume_from_that_iteration(tiny_recipe, tmp_path):
    straight = tmp_path / "straight"
    proc = train(tiny_recipe, straight)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    reference = load(straight / "checkpoints" / "last.pt")
    assert (reference["epoch"], reference["iteration"], reference.get("epoch_iter", 0)) == (2, 6, 0)

    work = tmp_path / "run"
    ckpt = work / "checkpoints" / "last.pt"
    proc = train(tiny_recipe, work, crash="last.pt:renamed:1")  # killed just after iteration 2's last.pt
    assert proc.returncode == 137, proc.stdout + proc.stderr
    state = load(ckpt)
    assert (state["epoch"], state["epoch_iter"], state["iteration"]) == (0, 2, 2)
    assert {"optimizer", "rng", "scaler", "model"} <= state.keys()
    assert not (work / "checkpoints" / "best.pt").exists()  # no epoch ended: nothing evaluated yet

    # resumed inside epoch 1; killed again just after its second last.pt (end of epoch 1 is the first)
    proc = train(tiny_recipe, work, "--resume", crash="last.pt:renamed:2")
    assert proc.returncode == 137, proc.stdout + proc.stderr
    assert "resumed from" in proc.stdout and "+ 2 iterations of epoch 1 (iteration 2)" in proc.stdout, proc.stdout
    state = load(ckpt)
    assert (state["epoch"], state["epoch_iter"], state["iteration"]) == (1, 1, 4)

    proc = train(tiny_recipe, work, "--resume")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "+ 1 iterations of epoch 2 (iteration 4)" in proc.stdout, proc.stdout
    final = load(ckpt)
    assert (final["epoch"], final["iteration"], final.get("epoch_iter", 0)) == (2, 6, 0)
    # continued from iteration 4, not from the start of epoch 2: same weights as the run never killed
    assert final["model"].keys() == reference["model"].keys()
    assert all(torch.equal(final["model"][k], reference["model"][k]) for k in final["model"])
    steps = [r["iter"] for r in map(json.loads, (work / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_without_the_key_last_pt_is_written_at_epoch_ends_only(tiny_recipe, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", FAULT_ENV: "last.pt:renamed:1"}
    work = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "segkit", "train", str(tiny_recipe), "--work-dir", str(work)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 137, proc.stdout + proc.stderr
    state = load(work / "checkpoints" / "last.pt")
    assert (state["epoch"], state["iteration"], state.get("epoch_iter", 0)) == (1, 3, 0)


class CountingDataset(torch.utils.data.Dataset):
    """16 samples whose image holds their index; remembers which were loaded."""

    def __init__(self) -> None:
        self.loaded: list[int] = []

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> dict:
        self.loaded.append(index)
        return {"image": torch.full((3, 2, 2), float(index)), "seg_target": torch.zeros(2, 2, dtype=torch.long)}


def test_remaining_batches_are_the_epochs_later_batches_and_skip_loading():
    dataset = CountingDataset()
    loader = build_dataloader(dataset, {"batch_size_per_gpu": 3, "num_workers_per_gpu": 0}, mode="TRAIN", seed=7)
    set_epoch(loader, 4)
    full = [batch["image"][:, 0, 0, 0].tolist() for batch in loader]
    assert len(full) == 5  # 16 // 3, drop_last
    set_epoch(loader, 4)
    dataset.loaded.clear()
    rest = [batch["image"][:, 0, 0, 0].tolist() for batch in remaining_batches(loader, 2)]
    assert rest == full[2:]
    assert sorted(dataset.loaded) == sorted(int(i) for batch in full[2:] for i in batch)
