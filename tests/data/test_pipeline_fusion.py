"""The fast paths of Compose (compact label maps, Normalize -> ToTensor -> Padding in one step) and the 8-bit label
remap give exactly what the transforms give one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.data.datasets import BaseDataset
from segkit.data.transforms import fused
from segkit.data.transforms.compose import build_pipeline

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
ADE = [
    {"type": "Resize", "output_size": [256, 64], "keep_ratio": True, "scale_range": [0.5, 2.0]},
    {"type": "RandomCrop", "crop_size": [64, 64], "one_category_max_ratio": 0.75},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "PhotoMetricDistortion"},
    {"type": "Normalize", "mean": MEAN, "std": STD},
    {"type": "ToTensor"},
    {"type": "Padding", "output_size": [64, 64], "data_type": "tensor"},
]
NUMPY_PADDING = [
    {"type": "Resize", "output_size": [96, 48], "keep_ratio": False, "scale_range": [0.4, 1.6]},
    {"type": "RandomCrop", "crop_size": [40, 56]},
    {"type": "Padding", "output_size": [40, 56], "data_type": "numpy", "seg_target_fill_value": 255},
    {"type": "RandomFlip", "prob": 0.5, "fixed_seg_target_pairs": [[1, 2], [3, 4]]},
    {"type": "Normalize", "mean": MEAN, "std": STD, "to_rgb": False},
    {"type": "ToTensor"},
]


def make_sample(seed: int, labels_dtype=np.int64, height=48, width=70, mapper=True) -> dict:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    seg = rng.integers(0, 6, (height, width)).astype(labels_dtype)
    seg[rng.random((height, width)) < 0.1] = -100 if np.issubdtype(labels_dtype, np.signedinteger) else 255
    sample = {"image": image, "seg_target": seg, "edge_target": (seg % 2).astype(labels_dtype),
              "width": width, "height": height, "id": str(seed)}
    if mapper:
        sample["img2aug_pos_mapper"] = np.arange(height * width, dtype=np.int64).reshape(height, width)
    return sample


def run_both(pipeline_cfg, sample_fn, seed):
    fast, plain = build_pipeline(pipeline_cfg), build_pipeline(pipeline_cfg)
    plain.fast = False
    out_fast = fast(sample_fn(seed), np.random.default_rng(seed))
    out_plain = plain(sample_fn(seed), np.random.default_rng(seed))
    return fast, out_fast, out_plain


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if torch.is_tensor(x):
            assert torch.is_tensor(y) and x.dtype == y.dtype and x.shape == y.shape, key
            assert torch.equal(x, y), key
            assert x.is_contiguous(), key
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), key
        else:
            assert x == y, key


@pytest.mark.parametrize("seed", range(12))
def test_ade_pipeline_fast_equals_one_by_one(seed):
    fast, out_fast, out_plain = run_both(ADE, make_sample, seed)
    assert fast._plan.compact is not None and fast._plan.tail == 4  # both fast paths taken
    assert_same(out_fast, out_plain)
    assert out_fast["image"].shape == (3, 64, 64) and out_fast["seg_target"].dtype == torch.int64


@pytest.mark.parametrize("seed", range(6))
def test_numpy_padding_and_pairs_fast_equals_one_by_one(seed):
    fast, out_fast, out_plain = run_both(NUMPY_PADDING, make_sample, seed)
    assert fast._plan.compact == (-100, 255) and fast._plan.tail is None
    assert_same(out_fast, out_plain)


@pytest.mark.parametrize("seed", range(3))
def test_small_images_are_padded_like_padding_does(seed):
    small = lambda s: make_sample(s, height=20, width=30)  # noqa: E731  (smaller than the crop: padded)
    fast, out_fast, out_plain = run_both(ADE[3:], small, seed)
    assert fast._plan.tail == 1
    assert_same(out_fast, out_plain)
    assert (out_fast["seg_target"][:, 0] == -100).all()


def test_labels_that_do_not_fit_int16_stay_int64_and_still_match():
    def wide(seed):
        sample = make_sample(seed)
        sample["seg_target"][0, 0] = 40000
        return sample

    _, out_fast, out_plain = run_both(ADE, wide, 0)
    assert_same(out_fast, out_plain)
    sample = wide(0)
    fused.compact_labels(sample, (-100, -1))
    assert sample["seg_target"].dtype == np.int64 and sample["edge_target"].dtype == np.int16
    assert sample["img2aug_pos_mapper"].dtype == np.int32


def test_unknown_transforms_turn_compaction_off_and_float_images_skip_the_tail():
    plan = fused.make_plan(build_pipeline([{"type": "RandomRotation", "prob": 1.0}, *ADE]).transforms)
    assert plan.compact is None and plan.tail == 5
    cfg = [{"type": "Normalize", "mean": MEAN, "std": STD}, {"type": "Normalize", "mean": [0, 0, 0],
                                                              "std": [1, 1, 1]}, *ADE[5:]]
    _, out_fast, out_plain = run_both(cfg, lambda s: make_sample(s, mapper=False), 1)  # float image into the tail
    assert_same(out_fast, out_plain)




@pytest.mark.parametrize("lut_copies_bits", [True, False])
@pytest.mark.parametrize("auto_correct", [False, True])
def test_uint8_remap_matches_the_lookup_and_its_check(tmp_path, auto_correct, lut_copies_bits, monkeypatch):
    from segkit.data.datasets import base

    assert base._LUT_COPIES_BITS  # OpenCV's float64 table copies the int64 labels exactly here
    monkeypatch.setattr(base, "_LUT_COPIES_BITS", lut_copies_bits)
    dataset = BaseDataset(rootdir=str(tmp_path), image_dir=".", ann_dir=".", imageids=["x"], num_classes=5,
                          clsid2label={0: -100, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 9: 7},
                          auto_correct_invalid_seg_target=auto_correct)
    rng = np.random.default_rng(0)
    good = rng.integers(0, 6, (33, 47)).astype(np.uint8)
    expected = dataset._lut(256)[good]
    out = dataset.remap(good)
    assert out.dtype == np.int64 and np.array_equal(out, expected)
    bad = good.copy()
    bad[3, 4], bad[5, 6] = 9, 200  # 9 -> 7 and 200 -> 200: neither a class nor ignore
    if auto_correct:
        fixed = dataset.remap(bad)
        reference = dataset._lut(256)[bad]
        reference[(reference >= 5) | ((reference < 0) & (reference != -100))] = -100
        assert np.array_equal(fixed, reference)
    else:
        with pytest.raises(Exception, match=r"label values \[7, 200\]"):
            dataset.remap(bad, "x.png")
