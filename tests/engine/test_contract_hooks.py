"""The engine drives a segmentor's declared hooks: targets in forward, training progress, and a cross-rank mean for
the state it keeps. A toy stateful segmentor (from a plugin, as a user would write one) records what it saw; under
2-process gloo DDP both ranks must end every step with the same state, equal to the mean of their own updates."""

from __future__ import annotations

import subprocess
import sys

import torch

TOY_PLUGIN = '''
import os
import torch
from segkit import SEGMENTORS
from segkit.models.segmentors import FCN


@SEGMENTORS.register("ToyStateful")
class ToyStateful(FCN):
    """FCN that keeps a running class histogram of the ground truth it is given (as MCIBI keeps its memory)."""

    uses_targets = True
    uses_progress = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("class_hist", torch.zeros(self.head.classifier.out_channels))
        self.record = {"local": [], "state": [], "progress": [], "target_shapes": []}
        self._progress = None

    def set_progress(self, *, epoch, iteration, lr, max_epochs, max_iters):
        self._progress = (epoch, iteration, lr, max_epochs, max_iters)

    def forward(self, images, targets=None):
        outputs = super().forward(images, targets)
        if self.training:
            seg = targets["seg_target"]
            valid = seg[(seg >= 0) & (seg < self.class_hist.numel())]
            local = torch.bincount(valid, minlength=self.class_hist.numel()).float() / max(valid.numel(), 1)
            with torch.no_grad():
                self.class_hist.mul_(0.5).add_(0.5 * self.reduce_mean(local))
            self.record["local"].append(local)
            self.record["state"].append(self.class_hist.clone())
            self.record["progress"].append(self._progress)
            self.record["target_shapes"].append(tuple(seg.shape))
            torch.save(self.record, os.path.join(os.environ["TOY_RECORD_DIR"], f"rank{os.environ.get('RANK', 0)}.pt"))
        return outputs
'''


def _train(tiny_recipe, tmp_path, *extra):
    (tmp_path / "toy_plugin.py").write_text(TOY_PLUGIN)
    env = {"PYTHONPATH": str(tmp_path), "TOY_RECORD_DIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    work = tmp_path / "run_toy"
    proc = subprocess.run([sys.executable, "-m", "segkit", "--plugin", "toy_plugin", "train", str(tiny_recipe),
                           "--set", 'type="ToyStateful"', "--set", "scheduler.max_epochs=1", "--work-dir", str(work),
                           *extra], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


def test_targets_progress_and_state_in_one_process(tiny_recipe, tmp_path):
    work = _train(tiny_recipe, tmp_path)
    record = torch.load(tmp_path / "rank0.pt", weights_only=False)
    steps = len(record["state"])
    assert steps == 3 and all(len(shape) == 3 for shape in record["target_shapes"])
    assert [p[1] for p in record["progress"]] == [0, 1, 2]  # iteration before each step
    assert all(p[0] == 1 and p[2] > 0 and p[4] == 3 for p in record["progress"])
    state = torch.zeros_like(record["state"][0])
    for local, recorded in zip(record["local"], record["state"], strict=True):
        state = 0.5 * state + 0.5 * local  # the identity reduce_mean in one process
        assert torch.allclose(state, recorded)
    saved = torch.load(work / "checkpoints" / "last.pt", weights_only=True)["model"]["class_hist"]
    assert torch.allclose(saved, record["state"][-1])


def test_state_is_identical_on_two_gloo_ranks_and_averages_both(tiny_recipe, tmp_path):
    _train(tiny_recipe, tmp_path, "--nproc", "2")
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert len(rank0["state"]) == len(rank1["state"]) >= 1
    state = torch.zeros_like(rank0["state"][0])
    for local0, local1, s0, s1 in zip(rank0["local"], rank1["local"], rank0["state"], rank1["state"], strict=True):
        assert not torch.equal(local0, local1)  # the ranks see different images...
        assert torch.equal(s0, s1)  # ...and still end each step with the same state
        state = 0.5 * state + 0.5 * (local0 + local1) / 2
        assert torch.allclose(s0, state, atol=1e-6)
