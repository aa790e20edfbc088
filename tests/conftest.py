"""Shared fixtures: a tiny but real recipe on a small synthetic dataset, written per test session."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]

TINY_RECIPE = """
extends = ["{repo}/recipes/_base/segmentors/fcn.toml", "{repo}/recipes/_base/datasets/synthetic.toml"]
num_classes = 5
work_dir = "{work_dir}"
eval_interval_epochs = 1
norm_cfg = {{ type = "BatchNorm2d" }}

[backbone]
depth = 18
structure_type = "resnet18"
use_conv3x3_stem = false
base_channels = 16
stem_channels = 16
pretrained = false
outstride = 8

[head]
feats_channels = 16

[auxiliary]
out_channels = 16

[dataset]
rootdir = "{data}"
num_train = 24
num_val = 8
image_size = 48

[scheduler]
max_epochs = 2

[scheduler.optimizer]
lr = 0.02

[dataloader]
expected_total_train_bs_for_assert = 8

[dataloader.train]
batch_size_per_gpu = 8
num_workers_per_gpu = 0
shuffle = true
drop_last = true

[dataloader.test]
batch_size_per_gpu = 4
num_workers_per_gpu = 0
"""


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset shared by the tests (written once)."""
    from segkit.data.datasets.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic_dataset(root, num_train=24, num_val=8, image_size=48, seed=0)
    return root


@pytest.fixture
def tiny_recipe(tmp_path, synthetic_root) -> Path:
    """A runnable recipe: FCN on a slim ResNet-18, 2 epochs of 3 iterations on 48x48 images."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE.format(repo=REPO, work_dir=tmp_path / "run", data=synthetic_root))
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Every DNS lookup and TCP connect fails at once, as on an offline machine."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def hub_dir(tmp_path):
    """A private, empty torch.hub directory (restored afterwards)."""
    import torch

    previous = torch.hub.get_dir()
    directory = tmp_path / "hub"
    torch.hub.set_dir(str(directory))
    try:
        yield directory
    finally:
        torch.hub.set_dir(previous)
