"""Training behaviour: loss falls, deterministic kill-and-resume is bit-identical, 2-process DDP (gloo) runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from segkit import api

SLOW_DATA = ["dataset.num_train=96", "dataset.image_size=64", "training_logging_manager_cfg.log_interval_iters=1"]


def cmd(recipe: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "segkit", "train", str(recipe), *extra]


def sets(items: list[str]) -> list[str]:
    return [tok for item in items for tok in ("--set", item)]


def test_loss_falls(tiny_recipe):
    api.train(tiny_recipe, ["scheduler.max_epochs=6", "scheduler.optimizer.lr=0.05",
                            "training_logging_manager_cfg.log_interval_iters=1"])
    rows = [json.loads(x) for x in (tiny_recipe.parent / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss_total"] for r in rows if r["kind"] == "train"]
    assert len(losses) == 18
    assert sum(losses[-3:]) / 3 < 0.75 * sum(losses[:3]) / 3


def test_killed_mid_epoch_then_resumed_is_bit_identical(tiny_recipe, tmp_path):
    common = ["--deterministic", *sets([*SLOW_DATA, "scheduler.max_epochs=3",
                                        f'dataset.rootdir="{tmp_path}/data"'])]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    subprocess.run(cmd(tiny_recipe, *common, "--work-dir", str(straight)), check=True, capture_output=True)

    proc = subprocess.Popen(cmd(tiny_recipe, *common, "--work-dir", str(broken)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = broken / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        if any(r["kind"] == "train" and r["epoch"] == 2 and r["iter"] >= 14 for r in rows):
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (broken / "checkpoints" / "epoch_2.pt").exists(), "the kill came after epoch 2 ended"
    assert torch.load(broken / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1

    subprocess.run(cmd(tiny_recipe, *common, "--work-dir", str(broken), "--resume"), check=True,
                   capture_output=True)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(broken / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_gloo_ddp(tiny_recipe, tmp_path):
    work = tmp_path / "ddp"
    proc = subprocess.run(cmd(tiny_recipe, "--nproc", "2", "--work-dir", str(work)), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x 2 proc" in proc.stdout  # the summary line: per-process batch x 2 processes
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["mIoU"] <= 1.0
    # 8 images per step in total: 4 per process, 3 steps per epoch
    assert torch.load(work / "checkpoints" / "last.pt", weights_only=True)["iteration"] == 6


def test_normalizing_on_the_device_trains_the_same_weights(tiny_recipe, tmp_path, monkeypatch):
    from segkit.data.transforms.fused import DeviceNormalize

    calls = []
    finish = DeviceNormalize.__call__
    monkeypatch.setattr(DeviceNormalize, "__call__", lambda self, *a, **k: calls.append(1) or finish(self, *a, **k))
    weights = {}
    for flag in ("true", "false"):  # "auto" is "false" on a CPU
        work = tmp_path / f"on_device_{flag}"
        api.train(tiny_recipe, [f"normalize_on_device={flag}", "scheduler.max_epochs=1", "eval_interval_epochs=2"],
                  work_dir=str(work), deterministic=True)
        where = "device" if flag == "true" else "workers"
        assert f"normalize={where}" in (work / "log.txt").read_text()  # the run header says which
        weights[flag] = torch.load(work / "checkpoints" / "last.pt", weights_only=True)["model"]
        assert len(calls) == 3, flag  # one per iteration of the "true" run, none in the other
    assert weights["true"].keys() == weights["false"].keys()
    assert all(torch.equal(weights["true"][k], weights["false"][k]) for k in weights["false"])
