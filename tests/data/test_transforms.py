"""Transforms: image and labels move together; values, sizes and randomness are as documented."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from segkit.data.transforms import (
    Normalize,
    Padding,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    Resize,
    ToTensor,
    build_pipeline,
)
from segkit.errors import RecipeError

from .helpers import blocky_labels, decode, encode, sample_of


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


class FixedRNG:
    """Stands in for a Generator: every coin says "apply", every range gives its upper end."""

    def random(self) -> float:
        return 0.0

    def uniform(self, low: float, high: float) -> float:
        return high

    def integers(self, low: int, high: int) -> int:
        return high - 1


# --------------------------------------------------------------------------- Resize
def test_resize_keep_ratio_size_and_correspondence():
    labels = blocky_labels(48, 64)
    out = Resize((128, 96), scale_range=None, image_interpolation="nearest")(sample_of(labels), rng())
    assert out["image"].shape == (96, 128, 3) and out["image"].dtype == np.uint8
    assert out["seg_target"].shape == (96, 128) and out["seg_target"].dtype == np.int64
    np.testing.assert_array_equal(decode(out["image"]), out["seg_target"])
    np.testing.assert_array_equal(out["seg_target"][::2, ::2], labels)  # exact 2x upscale


def test_resize_bilinear_image_stays_aligned_with_nearest_labels():
    labels = blocky_labels(48, 64)
    out = Resize((100, 75), scale_range=None)(sample_of(labels), rng())
    seg, agree = out["seg_target"], decode(out["image"]) == out["seg_target"]
    one_hot = (seg[..., None] == np.arange(5)).astype(np.uint8)
    interior = cv2.erode(one_hot, np.ones((3, 3), np.uint8)).any(-1)  # 3x3 neighbourhood of one label
    assert agree[interior].all() and agree.mean() > 0.95


@pytest.mark.parametrize("shape, expected", [((48, 64), (96, 128)), ((64, 48), (128, 96))])
def test_resize_without_keep_ratio_follows_orientation(shape, expected):
    out = Resize((96, 128), keep_ratio=False, scale_range=None)(sample_of(blocky_labels(*shape)), rng())
    assert out["image"].shape[:2] == expected and out["seg_target"].shape == expected


def test_resize_scale_range_and_min_size():
    sizes = set()
    for seed in range(8):
        out = Resize(64, scale_range=(0.5, 2.0))(sample_of(blocky_labels(32, 32)), rng(seed))
        assert 32 <= out["image"].shape[0] <= 128 and out["image"].shape[:2] == out["seg_target"].shape
        sizes.add(out["image"].shape[0])
    assert len(sizes) > 4
    out = Resize((400, 10), scale_range=None, min_size=20)(sample_of(blocky_labels(40, 80)), rng())
    assert out["image"].shape[:2] == (20, 40)


# --------------------------------------------------------------------------- RandomCrop
def _find_window(big: np.ndarray, small: np.ndarray) -> list[tuple[int, int]]:
    h, w = small.shape
    return [
        (t, left)
        for t in range(big.shape[0] - h + 1)
        for left in range(big.shape[1] - w + 1)
        if np.array_equal(big[t : t + h, left : left + w], small)
    ]


def test_random_crop_is_a_window_of_image_and_labels():
    labels = blocky_labels(48, 64, block=3)
    out = RandomCrop((32, 40), one_category_max_ratio=1.0)(sample_of(labels), rng(3))
    assert out["image"].shape == (32, 40, 3) and out["seg_target"].shape == (32, 40)
    np.testing.assert_array_equal(decode(out["image"]), out["seg_target"])
    assert len(_find_window(labels, out["seg_target"])) == 1


def test_random_crop_clips_to_small_images_and_always_crops_unlabelled_ones():
    out = RandomCrop(100)(sample_of(blocky_labels(20, 30)), rng())
    assert out["image"].shape[:2] == (20, 30)
    sample = sample_of(blocky_labels(64, 64))
    sample["seg_target"][:] = -100  # no labelled pixel anywhere (SSSeg 1.7.0 returned it uncropped)
    out = RandomCrop(16)(sample, rng())
    assert out["image"].shape[:2] == (16, 16) and out["seg_target"].shape == (16, 16)


def test_random_crop_honours_one_category_max_ratio():
    labels = np.zeros((100, 200), np.int64)
    labels[:, 100:] = 1  # a 100x100 crop is balanced enough only when its left edge is in (25, 75)

    def largest_share(ratio: float, seed: int) -> float:
        seg = RandomCrop(100, one_category_max_ratio=ratio)(sample_of(labels), rng(seed))["seg_target"]
        return np.bincount(seg.ravel()).max() / seg.size

    constrained = [largest_share(0.75, seed) for seed in range(40)]
    free = [largest_share(1.0, seed) for seed in range(40)]
    assert sum(share < 0.75 for share in constrained) >= 38
    assert sum(share < 0.75 for share in free) < 30


# --------------------------------------------------------------------------- RandomFlip
def test_random_flip_moves_image_and_labels_together():
    labels = blocky_labels(48, 64)
    out = RandomFlip(prob=1.0)(sample_of(labels), rng())
    np.testing.assert_array_equal(out["seg_target"], labels[:, ::-1])
    np.testing.assert_array_equal(decode(out["image"]), out["seg_target"])
    unflipped = RandomFlip(prob=0.0)(sample_of(labels), rng())
    np.testing.assert_array_equal(unflipped["seg_target"], labels)
    flips = sum(
        RandomFlip(prob=0.5)(sample_of(labels), rng(s))["seg_target"][0, 0] != labels[0, 0] for s in range(40)
    )
    assert 0 < flips < 40


def test_random_flip_swaps_fixed_pairs():
    labels = blocky_labels(48, 64)
    out = RandomFlip(prob=1.0, fixed_seg_target_pairs=[(1, 2)])(sample_of(labels), rng())
    expected = labels[:, ::-1].copy()
    expected[labels[:, ::-1] == 1], expected[labels[:, ::-1] == 2] = 2, 1
    np.testing.assert_array_equal(out["seg_target"], expected)


# --------------------------------------------------------------------------- photometric
def test_photometric_distortion_values_with_every_step_applied():
    grey = {"image": np.full((4, 4, 3), 100, np.uint8)}
    out = PhotoMetricDistortion()(grey, FixedRNG())["image"]
    assert out.dtype == np.uint8 and (out == round((100 + 32) * 1.5)).all()  # brightness, then contrast


def test_photometric_hue_uses_bgr_order():
    red = {"image": np.zeros((4, 4, 3), np.uint8)}
    red["image"][..., 2] = 255
    distort = PhotoMetricDistortion(
        brightness_delta=0, contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=10
    )
    b, g, r = distort(red, FixedRNG())["image"][0, 0]
    assert r == 255 and g > 50 and b == 0  # red + 20 degrees is orange (the RGB/BGR mix-up gives magenta)


def test_photometric_distortion_is_seeded_and_leaves_labels():
    labels = blocky_labels(32, 32)
    first = PhotoMetricDistortion()(sample_of(labels), rng(1))
    again = PhotoMetricDistortion()(sample_of(labels), rng(1))
    other = [PhotoMetricDistortion()(sample_of(labels), rng(s))["image"] for s in range(2, 6)]
    np.testing.assert_array_equal(first["image"], again["image"])
    assert any(not np.array_equal(first["image"], o) for o in other)
    np.testing.assert_array_equal(first["seg_target"], labels)


def test_normalize_converts_to_rgb_float():
    image = np.zeros((2, 2, 3), np.uint8)
    image[...] = (10, 20, 30)  # BGR
    out = Normalize(mean=(1, 2, 3), std=(2, 4, 8))({"image": image.copy()}, rng())["image"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [(30 - 1) / 2, (20 - 2) / 4, (10 - 3) / 8])
    kept = Normalize(mean=(0, 0, 0), std=(1, 1, 1), to_rgb=False)({"image": image.copy()}, rng())["image"]
    np.testing.assert_allclose(kept[0, 0], [10, 20, 30])


# --------------------------------------------------------------------------- tensors and padding
def test_to_tensor_types():
    out = ToTensor()(sample_of(blocky_labels(6, 10)), rng())
    assert out["image"].shape == (3, 6, 10) and out["image"].dtype == torch.float32
    assert out["seg_target"].shape == (6, 10) and out["seg_target"].dtype == torch.int64


@pytest.mark.parametrize("data_type", ["numpy", "tensor"])
def test_padding_is_centred_with_void_labels(data_type):
    labels = blocky_labels(30, 40)
    sample = sample_of(labels)
    if data_type == "tensor":
        sample = ToTensor()(sample, rng())
    out = Padding((51, 61), data_type=data_type)(sample, rng())
    seg = np.asarray(out["seg_target"])
    image = out["image"].permute(1, 2, 0).numpy() if data_type == "tensor" else out["image"]
    assert seg.shape == (51, 61) and image.shape == (51, 61, 3)
    np.testing.assert_array_equal(seg[10:40, 10:50], labels)  # top = 21 // 2, left = 21 // 2
    assert (seg == -100).sum() == 51 * 61 - 30 * 40
    assert image[:10].max() == 0 and image[40:].max() == 0
    np.testing.assert_array_equal(decode(np.asarray(image, np.uint8)), seg)


def test_padding_adapts_orientation_and_never_crops():
    portrait = Padding((50, 60))(sample_of(blocky_labels(40, 30)), rng())
    assert portrait["image"].shape[:2] == (60, 50)
    fixed = Padding((50, 60), output_size_auto_adaptive=False)(sample_of(blocky_labels(40, 30)), rng())
    assert fixed["image"].shape[:2] == (50, 60)
    big = Padding(16)(sample_of(blocky_labels(40, 30)), rng())
    assert big["image"].shape[:2] == (40, 30)


def test_padding_rejects_the_wrong_data_type():
    with pytest.raises(TypeError, match="data_type"):
        Padding(8, data_type="tensor")(sample_of(blocky_labels(4, 4)), rng())


# --------------------------------------------------------------------------- building
def test_build_pipeline_runs_the_standard_train_chain():
    pipeline = build_pipeline(
        [
            {"type": "Resize", "output_size": [128, 64], "scale_range": [0.5, 2.0]},
            {"type": "RandomCrop", "crop_size": [48, 48], "one_category_max_ratio": 0.75},
            {"type": "RandomFlip", "prob": 0.5},
            {"type": "PhotoMetricDistortion"},
            {"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
            {"type": "ToTensor"},
            {"type": "Padding", "output_size": [48, 48], "data_type": "tensor"},
        ],
        path="dataset.train.data_pipelines",
    )
    for seed in range(5):
        out = pipeline(sample_of(blocky_labels(40, 60, seed=seed)), rng(seed))
        assert out["image"].shape == (3, 48, 48) and out["seg_target"].shape == (48, 48)
        assert out["image"].dtype == torch.float32 and out["seg_target"].dtype == torch.int64


@pytest.mark.parametrize(
    "cfg, message",
    [
        (
            {"type": "RandomCrop", "crop_sise": 8},
            "p[1].crop_sise: RandomCrop takes no 'crop_sise'; did you mean 'crop_size'?",
        ),
        ({"type": "RandomFlip", "prob": "often"}, "p[1].prob: "),
        ({"type": "RandomFlip", "prob": 3}, "p[1]: RandomFlip: prob must be in [0, 1]"),
        (
            {"type": "Resise", "output_size": 8},
            "p[1].type: unknown transform 'Resise'; did you mean 'Resize'?",
        ),
    ],
)
def test_build_pipeline_errors_name_the_entry(cfg, message):
    with pytest.raises(RecipeError) as info:
        build_pipeline([{"type": "ToTensor"}, cfg], path="p")
    assert message in str(info.value)


def test_encode_decode_helpers_round_trip():
    labels = blocky_labels(9, 7)
    np.testing.assert_array_equal(decode(encode(labels)), labels)
