"""AlbumentationsWrapper: any albumentations transform, seg_target as mask, other label maps alongside, seeded
from the sample's generator."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segkit.data.transforms import AlbumentationsWrapper

from ..helpers import decode
from .common import assert_image_matches_labels, assert_mapper_consistent, mapped_sample, rng


def test_horizontal_flip_moves_image_mask_and_mapper():
    sample, labels = mapped_sample(20, 30)
    out = AlbumentationsWrapper({"type": "HorizontalFlip", "p": 1.0})(sample, rng())
    np.testing.assert_array_equal(out["seg_target"], labels[:, ::-1])
    assert out["seg_target"].dtype == np.int64
    assert_image_matches_labels(out["image"], out["seg_target"])
    assert_mapper_consistent(labels, out["seg_target"], out["img2aug_pos_mapper"])


def test_spatial_transform_fills_labels_and_mapper():
    cfg = {"type": "Rotate", "limit": (20, 30), "p": 1.0, "interpolation": cv2.INTER_NEAREST, "fill_mask": -100}
    sample, labels = mapped_sample(40, 40)
    sample["edge_target"] = np.ones_like(labels)
    out = AlbumentationsWrapper(cfg)(sample, rng(3))
    seg = out["seg_target"]
    assert (seg == -100).any()
    # albumentations warps images and masks along slightly different paths: a stray boundary pixel may differ
    assert (decode(out["image"]) == seg).mean() > 0.99
    assert_mapper_consistent(labels, seg, out["img2aug_pos_mapper"])
    assert ((out["edge_target"] == -100) == (seg == -100)).all()


def test_results_depend_only_on_the_generator():
    wrapper = AlbumentationsWrapper({"type": "Affine", "rotate": (-30, 30), "scale": (0.8, 1.2), "p": 1.0,
                                     "fill_mask": -100})
    first = wrapper(mapped_sample(32, 32)[0], rng(7))["seg_target"]
    again = wrapper(mapped_sample(32, 32)[0], rng(7))["seg_target"]
    np.testing.assert_array_equal(first, again)
    others = [wrapper(mapped_sample(32, 32)[0], rng(s))["seg_target"] for s in range(3)]
    assert any(not np.array_equal(first, other) for other in others)


def test_image_only_keys_leave_labels_and_config_alone():
    cfg = {"type": "RandomBrightnessContrast", "p": 1.0}
    sample, labels = mapped_sample(16, 16)
    image = sample["image"].copy()
    out = AlbumentationsWrapper(cfg, transform_keys=["image"])(sample, rng())
    assert not np.array_equal(out["image"], image)
    np.testing.assert_array_equal(out["seg_target"], labels)
    assert cfg == {"type": "RandomBrightnessContrast", "p": 1.0}


def test_bad_keys_and_types_are_errors():
    with pytest.raises(ValueError, match="transform_keys"):
        AlbumentationsWrapper({"type": "HorizontalFlip"}, transform_keys=["image", "segmentation"])
    with pytest.raises(ValueError, match="albumentations transform"):
        AlbumentationsWrapper({"p": 1.0})
