"""img2aug_pos_mapper end to end: the dataset option, every geometric step, padding, tensors and batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from segkit.data import BaseDataset, collate_test, collate_train
from segkit.data.transforms import Padding, ToTensor

from ..helpers import blocky_labels, write_pairs
from .common import assert_mapper_consistent, mapped_sample, rng

TRAIN = [
    {"type": "Resize", "output_size": 64, "scale_range": [0.5, 2.0]},
    {"type": "RandomCrop", "crop_size": 32},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "RandomRotation", "prob": 0.5, "angle_upper": 15},
    {"type": "PhotoMetricDistortion"},
    {"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    {"type": "ToTensor"},
    {"type": "Padding", "output_size": 32, "data_type": "tensor"},
]


def dataset(root: Path, mode: str = "TRAIN", pipeline=TRAIN, **kwargs) -> BaseDataset:
    return BaseDataset(str(root), image_ext=".png", num_classes=5, data_pipelines=pipeline, mode=mode, **kwargs)


def test_dataset_records_the_mapper_and_it_tracks_every_pixel(tmp_path):
    sizes = [(24, 20), (40, 48), (30, 26)]
    pairs = {f"p{i}": blocky_labels(h, w, seed=i, block=4) for i, (h, w) in enumerate(sizes)}
    write_pairs(tmp_path, "train", pairs)
    data = dataset(tmp_path, record_img2aug_pos_mapper=True)
    samples = [data[i] for i in range(3)]
    for sample, original in zip(samples, pairs.values(), strict=True):
        mapper = sample["img2aug_pos_mapper"]
        assert mapper.dtype == torch.int64 and mapper.shape == (32, 32)
        assert_mapper_consistent(original, sample["seg_target"].numpy(), mapper.numpy())
        assert len(torch.unique(mapper)) > 20  # a real map of positions, not a constant
    batch = collate_train(samples)
    assert batch["img2aug_pos_mapper"].shape == (3, 32, 32)
    assert "img2aug_pos_mapper" not in dataset(tmp_path)[0]  # off by default, as in SSSegmentation


def test_test_mode_mapper_follows_the_image_while_labels_stay_original(tmp_path):
    labels = blocky_labels(20, 30, block=5)
    write_pairs(tmp_path, "val", {"v": labels})
    pipeline = [{"type": "Resize", "output_size": [60, 40], "scale_range": None}, {"type": "ToTensor"}]
    data = dataset(tmp_path, mode="TEST", set="val", pipeline=pipeline, record_img2aug_pos_mapper=True)
    sample = data[0]
    assert tuple(sample["img2aug_pos_mapper"].shape) == tuple(sample["image"].shape[1:]) == (40, 60)
    assert tuple(sample["seg_target"].shape) == (20, 30)
    rows, cols = np.divmod(sample["img2aug_pos_mapper"].numpy(), 30)
    np.testing.assert_array_equal(rows[::2, 0], np.arange(20))
    np.testing.assert_array_equal(cols[0, ::2], np.arange(30))
    assert collate_test([sample])["img2aug_pos_mapper"].shape == (1, 40, 60)


def test_padding_and_to_tensor_fill_and_convert_the_mapper():
    sample, labels = mapped_sample(10, 12)
    out = Padding((14, 16))(sample, rng())
    assert out["img2aug_pos_mapper"].dtype == np.int64
    assert (out["img2aug_pos_mapper"][:2] == -1).all() and out["img2aug_pos_mapper"][2, 2] == 0
    assert_mapper_consistent(labels, out["seg_target"], out["img2aug_pos_mapper"])
    tensors = ToTensor()(out, rng())
    assert tensors["img2aug_pos_mapper"].dtype == torch.int64
    padded = Padding((16, 20), data_type="tensor", img2aug_pos_mapper_fill_value=-7)(tensors, rng())
    assert padded["img2aug_pos_mapper"][0, 0] == -7 and padded["seg_target"][0, 0] == -100
