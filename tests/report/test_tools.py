"""segkit benchmark (speed and memory of eval forward and train step) and segkit browse-data (augmented
samples with their labels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segkit import api
from segkit.viz.browse import to_viewable


def test_benchmark_a_run_and_a_recipe(trained_run, tiny_recipe):
    report = api.benchmark(trained_run, input_size=(48, 64), iters=3, batch_size=2)
    assert report["weights"].endswith("best.pt") and report["input_size"] == [48, 64]
    for name in ("eval", "train_step"):
        row = report[name]
        assert "error" not in row, row
        assert row["imgs_per_s"] > 0 and row["calls"] == 3
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"]
        assert row["imgs_per_s"] == pytest.approx(2 * 1000 / row["latency_ms_p50"], rel=1.0)
    assert report["peak_rss_mib"] > 50
    assert report["cpu"].startswith("cpu: ") and "torch thread" in report["cpu"]  # the plan train/eval use
    fresh = api.benchmark(tiny_recipe, input_size=(32, 32), iters=2, train=False)
    assert fresh["weights"] == "random weights (recipe)" and "train_step" not in fresh


def test_to_viewable_undoes_normalize():
    from segkit.data.transforms import build_pipeline

    pipeline = build_pipeline([{"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
                               {"type": "ToTensor"}], path="p")
    bgr = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    sample = pipeline({"image": bgr, "seg_target": np.zeros((20, 30), np.int64)}, np.random.default_rng(0))
    assert isinstance(sample["image"], torch.Tensor)
    back = to_viewable(sample["image"], ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375], True))
    assert np.abs(back.astype(int) - bgr[:, :, ::-1].astype(int)).max() <= 1


def test_browse_data_writes_augmented_samples(tiny_recipe, tmp_path):
    files = api.browse_data(tiny_recipe, n=3, out=tmp_path / "b", seed=1)
    assert len(files) == 3 and all(p.parent == tmp_path / "b" for p in files)
    for path in files:
        with Image.open(path) as image:
            assert image.size[0] > 2 * 192  # augmented image | labels, enlarged from 48 px
    again = api.browse_data(tiny_recipe, n=3, out=tmp_path / "c", seed=1)
    assert [p.name for p in again] == [p.name for p in files]  # the seed picks the samples
    assert all(Image.open(a).tobytes() == Image.open(b).tobytes() for a, b in zip(files, again, strict=True))
    test_files = api.browse_data(tiny_recipe, split="test", n=100, out=tmp_path / "t")
    assert len(test_files) == 8  # capped at the split's size
