"""All 20 SSSegmentation transforms are registered with its argument names and defaults, and build from tables."""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest
import torch

from segkit.data.transforms import build_pipeline
from segkit.errors import RecipeError
from segkit.registry import TRANSFORMS

from .common import assert_image_matches_labels, mapped_sample, rng

REQUIRED = inspect.Parameter.empty
# SSSegmentation 1.7.0 (reference facts §8.2); segkit may add arguments, never drop or rename these
SSSEG_SIGNATURES = {
    "Resize": {"output_size": REQUIRED, "keep_ratio": True, "min_size": None, "scale_range": (0.5, 2.0),
               "image_interpolation": "bilinear", "seg_target_interpolation": "nearest",
               "img2aug_pos_mapper_interpolation": "nearest"},
    "RandomCrop": {"crop_size": REQUIRED, "ignore_index": -100, "one_category_max_ratio": 0.75},
    "RandomFlip": {"prob": REQUIRED, "fixed_seg_target_pairs": None},
    "RandomRotation": {"prob": 0.5, "angle_upper": 30, "image_fill_value": 0.0, "seg_target_fill_value": -100,
                       "image_interpolation": "bicubic", "seg_target_interpolation": "nearest",
                       "img2aug_pos_mapper_fill_value": -1, "img2aug_pos_mapper_interpolation": "nearest"},
    "EdgeExtractor": {"edge_width": 3, "ignore_index": -100},
    "PhotoMetricDistortion": {"brightness_delta": 32, "contrast_range": (0.5, 1.5),
                              "saturation_range": (0.5, 1.5), "hue_delta": 18},
    "Padding": {"output_size": REQUIRED, "data_type": "numpy", "image_fill_value": 0, "seg_target_fill_value": -100,
                "edge_target_fill_value": -100, "img2aug_pos_mapper_fill_value": -1,
                "output_size_auto_adaptive": True},
    "ToTensor": {},
    "ResizeShortestEdge": {"short_edge_length": REQUIRED, "max_size": REQUIRED},
    "Normalize": {"mean": REQUIRED, "std": REQUIRED, "to_rgb": True},
    "RandomChoiceResize": {"scales": REQUIRED, "resize_type": "Resize"},
    "Rerange": {"min_value": 0, "max_value": 255},
    "CLAHE": {"clip_limit": 40.0, "tile_grid_size": (8, 8)},
    "RandomCutOut": {"prob": REQUIRED, "n_holes": REQUIRED, "cutout_shape": None, "cutout_ratio": None,
                     "image_fill_value": (0, 0, 0), "seg_target_fill_value": -100,
                     "img2aug_pos_mapper_fill_value": -1},
    "AlbumentationsWrapper": {"albu_cfg": REQUIRED, "transform_keys": ("image", "seg_target")},
    "RGB2Gray": {"out_channels": None, "weights": (0.299, 0.587, 0.114)},
    "AdjustGamma": {"gamma": 1.0},
    "RandomGaussianBlur": {"prob": 0.5, "sigma": (0.0, 1.0), "kernel_size": 3},
    "RandomShortestEdgeResize": {"short_edge_range": REQUIRED, "max_size": REQUIRED},
    "PILRandomGaussianBlur": {"prob": 0.5, "radius": (0.0, 1.0)},
}


def test_exactly_the_twenty_transforms_are_registered():
    assert sorted(TRANSFORMS.names()) == sorted(SSSEG_SIGNATURES)


@pytest.mark.parametrize("name", sorted(SSSEG_SIGNATURES))
def test_argument_names_and_defaults_match_sssegmentation(name):
    params = TRANSFORMS.parameters(name)
    for arg, default in SSSEG_SIGNATURES[name].items():
        assert arg in params, f"{name} lacks {arg}"
        got = params[arg].default
        assert (tuple(got) if isinstance(got, (list, tuple)) else got) == default, f"{name}.{arg}"


def test_albumentations_forward_args_default_to_none():
    assert TRANSFORMS.parameters("AlbumentationsWrapper")["albu_forward_args"].default in (None, {})


EVERY_TRANSFORM = [
    {"type": "RandomChoiceResize", "scales": [[96, 64], [80, 48]], "scale_range": None},
    {"type": "ResizeShortestEdge", "short_edge_length": [48, 56], "max_size": 100},
    {"type": "RandomShortestEdgeResize", "short_edge_range": [40, 56], "max_size": 100},
    {"type": "Resize", "output_size": [96, 64], "scale_range": [0.8, 1.2]},
    {"type": "RandomCrop", "crop_size": 40},
    {"type": "RandomFlip", "prob": 0.5, "fixed_seg_target_pairs": [[1, 2]]},
    {"type": "RandomRotation", "prob": 1.0, "angle_upper": 20},
    {"type": "RandomCutOut", "prob": 1.0, "n_holes": [1, 3], "cutout_shape": [[6, 6], [4, 8]]},
    {"type": "AlbumentationsWrapper", "albu_cfg": {"type": "VerticalFlip", "p": 1.0}},
    {"type": "PhotoMetricDistortion"},
    {"type": "AdjustGamma", "gamma": 1.2},
    {"type": "CLAHE", "clip_limit": 2.0},
    {"type": "RandomGaussianBlur", "prob": 1.0},
    {"type": "PILRandomGaussianBlur", "prob": 1.0},
    {"type": "Rerange"},
    {"type": "RGB2Gray"},
    {"type": "EdgeExtractor"},
    {"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    {"type": "ToTensor"},
    {"type": "Padding", "output_size": 48, "data_type": "tensor"},
]


def test_every_transform_builds_from_a_table_and_runs_in_one_chain():
    assert {cfg["type"] for cfg in EVERY_TRANSFORM} == set(SSSEG_SIGNATURES)
    pipeline = build_pipeline(EVERY_TRANSFORM, path="dataset.train.data_pipelines")
    for seed in range(3):
        sample, _ = mapped_sample(48, 64, seed=seed)
        out = pipeline(sample, rng(seed))
        shapes = {key: tuple(out[key].shape[-2:]) for key in ("image", "seg_target", "edge_target",
                                                               "img2aug_pos_mapper")}
        assert set(shapes.values()) == {(48, 48)}, shapes
        assert out["image"].shape[0] == 3 and np.isfinite(out["image"].numpy()).all()


def test_every_transform_pickles_for_worker_processes():
    pipeline = build_pipeline(EVERY_TRANSFORM)
    clone = pickle.loads(pickle.dumps(pipeline))
    first, again = (p(mapped_sample(48, 64)[0], rng(1)) for p in (pipeline, clone))
    for key in ("image", "seg_target", "edge_target", "img2aug_pos_mapper"):
        assert torch.equal(first[key], again[key]), key


def test_geometric_chain_keeps_image_and_labels_aligned():
    pipeline = build_pipeline(
        [
            {"type": "RandomChoiceResize", "scales": [[96, 64], [80, 48]], "scale_range": None,
             "image_interpolation": "nearest"},
            {"type": "RandomCrop", "crop_size": 40},
            {"type": "RandomFlip", "prob": 0.5},
            {"type": "RandomRotation", "prob": 1.0, "image_interpolation": "nearest"},
            {"type": "RandomCutOut", "prob": 1.0, "n_holes": 2, "cutout_ratio": [0.2, 0.3]},
            {"type": "Padding", "output_size": 48},
        ]
    )
    for seed in range(4):
        sample, _ = mapped_sample(48, 64, seed=seed)
        out = pipeline(sample, rng(seed))
        assert_image_matches_labels(out["image"], out["seg_target"])


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"type": "RandomRotation", "angle_uper": 10}, "angle_uper: RandomRotation takes no 'angle_uper'"),
        ({"type": "Resize", "output_size": 8, "seg_target_interpolation": "bilinear"}, "seg_target_interpolation"),
        ({"type": "RandomCutOut", "prob": 0.5, "n_holes": 1}, "exactly one of cutout_shape and cutout_ratio"),
        ({"type": "RandomChoiceResize", "scales": [8], "output_sise": 3}, "output_sise"),
        ({"type": "AlbumentationsWrapper", "albu_cfg": {"type": "NoSuchAug"}}, "albumentations transform"),
    ],
)
def test_bad_arguments_name_the_entry(cfg, message):
    with pytest.raises(RecipeError) as info:
        build_pipeline([cfg], path="p")
    assert "p[0]" in str(info.value) and message in str(info.value)
