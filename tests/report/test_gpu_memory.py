"""GPU memory: shown and tracked when training on CUDA (the number comes from torch.cuda's peak counter)."""

from __future__ import annotations

import json

import pytest
import torch

from segkit import api
from segkit.engine.callbacks import format_logs
from segkit.engine.report.base import train_scalars

LOGS = {"epoch": 1, "iter": 3, "lr": 0.01, "loss_total": 1.0, "imgs_per_s": 5.0, "eta_s": 1.0, "data_time_s": 0.002}


def test_memory_is_displayed_and_tracked_when_logged():
    assert "mem" not in format_logs(LOGS) and "train/gpu_mem_mib" not in train_scalars(LOGS)
    with_memory = {**LOGS, "gpu_mem_mib": 3072.0}
    assert format_logs(with_memory).endswith("data 2ms mem 3.00G")
    assert train_scalars(with_memory)["train/gpu_mem_mib"] == 3072.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU memory exists only on CUDA; the CPU path is above")
def test_cuda_run_logs_peak_memory(tiny_recipe):
    api.train(tiny_recipe, ["report_to=[]", "vis_samples=0"], device="cuda")
    rows = [json.loads(line) for line in (tiny_recipe.parent / "run" / "metrics.jsonl").read_text().splitlines()]
    memory = [r["gpu_mem_mib"] for r in rows if r["kind"] == "train"]
    assert memory and all(m > 0 for m in memory)
