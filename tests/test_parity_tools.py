"""The parity runner's own pieces that need no SSSegmentation: randomisation and the summary table."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from parity import compare, report  # noqa: E402


class _Memory(nn.Module):
    """MCIBI++'s ``FeaturesMemoryV2.memory`` layout: ``[num_classes, 2]`` means and stds (zeros and ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = nn.Parameter(torch.cat([torch.zeros(50, 1), torch.ones(50, 1)], dim=1), requires_grad=False)
        self.other = nn.Parameter(torch.cat([torch.zeros(50, 1), torch.ones(50, 1)], dim=1))


def test_randomise_keeps_the_memory_stds_positive():
    model = nn.Module()
    model.memory_module = _Memory()
    compare.randomise(model, seed=0)
    memory, other = model.memory_module.memory.data, model.memory_module.other.data
    # the std column is U[0.5, 1.5); the means are re-drawn and take both signs
    assert ((memory[:, 1] >= 0.5) & (memory[:, 1] < 1.5)).all()
    assert (memory[:, 0] < 0).any() and (memory[:, 0] > 0).any()
    assert torch.normal(memory[:, 0], memory[:, 1]).isfinite().all()
    # a parameter of the same shape under another name is randomised as before (negative entries in column 1)
    assert (other[:, 1] < 0).any()


def test_randomise_leaves_a_features_memory_of_the_same_name_alone():
    # MCIBI's FeaturesMemory.memory is [num_classes, 1, channels] of features: randomised like any parameter
    model = nn.Module()
    model.memory_module = nn.Module()
    model.memory_module.memory = nn.Parameter(torch.zeros(5, 1, 16), requires_grad=False)
    compare.randomise(model, seed=0)
    memory = model.memory_module.memory.data
    assert (memory < 0).any() and (memory > 0).any() and memory.abs().max() < 1


def test_summary_counts_ok_rows_per_segmentor():
    recipes = {
        "recipes/a/x.toml": {"segmentor": "CCNet", "status": "ok (segkit's op on SSSeg's side, see note)"},
        "recipes/a/y.toml": {"segmentor": "CCNet", "status": "error (forward)"},
        "recipes/b/z.toml": {"segmentor": "APCNet", "status": "ok"},
        "recipes/b/w.toml": {"segmentor": "APCNet", "status": "params differ"},
        "recipes/b/v.toml": {"segmentor": "APCNet", "status": "okay"},
    }
    lines = report.summary(recipes)
    assert lines[2] == "| APCNet | 3 | 1 | `recipes/b/w.toml`, `recipes/b/v.toml` |"
    assert lines[3] == "| CCNet | 2 | 1 | `recipes/a/y.toml` |"
    assert lines[-1] == "| **all** | **5** | **2** | 3 |"
