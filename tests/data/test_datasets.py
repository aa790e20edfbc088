"""BaseDataset, FolderDataset and build_dataset: reading, label remapping, modes, determinism, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segkit import DATASETS
from segkit.data import BaseDataset, FolderDataset, build_dataset
from segkit.errors import DataError, RecipeError

from .helpers import CLASSNAMES, blocky_labels, decode, make_folder, write_pairs

AUGMENT = [
    {"type": "Resize", "output_size": 64, "scale_range": [0.5, 2.0], "image_interpolation": "nearest"},
    {"type": "RandomCrop", "crop_size": 24},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "Padding", "output_size": 24},
]


def folder(root: Path, **kwargs) -> FolderDataset:
    return FolderDataset(rootdir=str(root), classnames=CLASSNAMES, image_ext=".png", **kwargs)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "ds", [(40, 48), (32, 56), (48, 40)])


def test_reads_bgr_uint8_and_int64_labels(root):
    dataset = folder(root)
    assert len(dataset) == 3 and dataset.num_classes == 5 and len(dataset.palette) == 5
    sample = dataset[1]
    assert sample["image"].dtype == np.uint8 and sample["image"].shape == (32, 56, 3)
    assert sample["seg_target"].dtype == np.int64
    assert (sample["width"], sample["height"], sample["id"]) == (56, 32, "img01")
    np.testing.assert_array_equal(sample["seg_target"], blocky_labels(32, 56, seed=1))
    np.testing.assert_array_equal(decode(sample["image"]), sample["seg_target"])


def test_imageids_from_folder_without_split_file_and_repeat_times(tmp_path):
    make_folder(tmp_path, [(8, 8), (8, 8)], split="val", split_file=False)
    dataset = folder(tmp_path, set="val", repeat_times=3)
    assert dataset.imageids == ["img00", "img01"] and len(dataset) == 6
    assert dataset[5]["id"] == "img01"
    with pytest.raises(IndexError):
        dataset[6]


def test_clsid2label_remap_by_lookup_table(tmp_path):
    raw = np.array([[0, 1, 255, 7], [7, 255, 1, 0]], np.uint8)
    write_pairs(tmp_path, "train", {"a": raw})
    dataset = BaseDataset(str(tmp_path), image_ext=".png", num_classes=3, clsid2label={255: -100, 7: 2})
    expected = np.array([[0, 1, -100, 2], [2, -100, 1, 0]])
    np.testing.assert_array_equal(dataset[0]["seg_target"], expected)


def test_subclass_class_attributes_are_used(tmp_path):
    write_pairs(tmp_path, "train", {"a": np.array([[0, 10], [20, 255]], np.uint8)})

    class Custom(BaseDataset):
        num_classes = 2
        classnames = ["bg", "thing"]
        palette = [(0, 0, 0), (255, 0, 0)]
        clsid2label = {10: 1, 20: 1, 255: -100}

    dataset = Custom(str(tmp_path), image_ext=".png")
    assert dataset.classnames == ["bg", "thing"] and dataset.palette == [(0, 0, 0), (255, 0, 0)]
    np.testing.assert_array_equal(dataset[0]["seg_target"], [[0, 1], [1, -100]])


def test_invalid_labels_raise_naming_the_file_or_are_voided(tmp_path):
    write_pairs(tmp_path, "train", {"bad": np.array([[0, 1], [9, 255]], np.uint8)})
    with pytest.raises(DataError, match=r"bad\.png.*\[9, 255\].*auto_correct_invalid_seg_target"):
        folder(tmp_path)[0]
    fixed = folder(tmp_path, auto_correct_invalid_seg_target=True)[0]["seg_target"]
    np.testing.assert_array_equal(fixed, [[0, 1], [-100, -100]])


def test_test_mode_keeps_ground_truth_at_original_resolution(root):
    pipeline = [
        {"type": "Resize", "output_size": [20, 20], "keep_ratio": False, "scale_range": None},
        {"type": "ToTensor"},
    ]
    sample = folder(root, mode="TEST", data_pipelines=pipeline)[1]
    assert sample["image"].shape == (3, 20, 20)
    assert sample["seg_target"].dtype == torch.int64 and sample["seg_target"].shape == (32, 56)
    np.testing.assert_array_equal(sample["seg_target"].numpy(), blocky_labels(32, 56, seed=1))


def test_augmentation_is_deterministic_per_seed_epoch_and_index(root):
    dataset = folder(root, data_pipelines=AUGMENT, seed=7)
    first, again = dataset[0], dataset[0]
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["seg_target"], again["seg_target"])
    np.testing.assert_array_equal(decode(first["image"]), first["seg_target"])
    epochs = []
    for epoch in range(1, 5):
        dataset.set_epoch(epoch)
        epochs.append(dataset[0]["seg_target"])
    assert any(not np.array_equal(first["seg_target"], seg) for seg in epochs)
    dataset.set_epoch(0)
    np.testing.assert_array_equal(dataset[0]["seg_target"], first["seg_target"])
    other_seed = folder(root, data_pipelines=AUGMENT, seed=8)
    assert not all(np.array_equal(dataset[i]["image"], other_seed[i]["image"]) for i in range(3))


def test_missing_image_dir_and_split_file(tmp_path):
    with pytest.raises(DataError, match="image directory not found: .*nowhere"):
        folder(tmp_path / "nowhere")
    (tmp_path / "images" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        folder(tmp_path)


def test_corrupt_and_missing_files_raise_naming_them(root):
    (root / "images" / "train" / "img00.png").write_bytes(b"not a png")
    dataset = folder(root)
    with pytest.raises(DataError, match=r"cannot read image .*img00\.png"):
        dataset[0]
    (root / "annotations" / "train" / "img01.png").unlink()
    with pytest.raises(DataError, match=r"annotation not found: .*img01\.png"):
        dataset[1]


def test_palette_png_annotations_give_indices(tmp_path):
    from PIL import Image

    write_pairs(tmp_path, "train", {"p": np.zeros((4, 6), np.uint8)})
    indices = np.array([[0, 1, 2, 3, 4, 1]] * 4, np.uint8)
    pil = Image.fromarray(indices, mode="P")
    pil.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [0] * 240 * 3)
    pil.save(tmp_path / "annotations" / "train" / "p.png")
    np.testing.assert_array_equal(folder(tmp_path)[0]["seg_target"], indices)


def test_mismatched_sizes_are_reported(root):
    cv2.imwrite(str(root / "annotations" / "train" / "img00.png"), np.zeros((5, 5), np.uint8))
    with pytest.raises(DataError, match="label map is 5x5"):
        folder(root)[0]


# --------------------------------------------------------------------------- build_dataset
def dataset_cfg(root: Path, **train) -> dict:
    return {
        "type": "FolderDataset",
        "rootdir": str(root),
        "classnames": CLASSNAMES,
        "image_ext": ".png",
        "train": {"set": "train", "data_pipelines": AUGMENT, **train},
        "test": {"set": "val", "data_pipelines": [{"type": "ToTensor"}]},
    }


def test_build_dataset_merges_the_mode_section(root):
    make_folder(root, [(16, 16)], split="val")
    train = build_dataset(dataset_cfg(root), "TRAIN", seed=3)
    test = build_dataset(dataset_cfg(root), "TEST")
    assert (
        isinstance(train, FolderDataset)
        and train.mode == "TRAIN"
        and train.set == "train"
        and train.seed == 3
    )
    assert len(train.pipeline) == 4 and train[0]["image"].shape == (24, 24, 3)
    assert test.mode == "TEST" and test.set == "val" and len(test) == 1
    assert DATASETS.get("FolderDataset") is FolderDataset


@pytest.mark.parametrize(
    "train, message",
    [
        ({"sett": "val"}, "dataset.train.sett: FolderDataset takes no 'sett'; did you mean 'set'?"),
        (
            {
                "data_pipelines": [
                    {"type": "Resize", "output_size": 8},
                    {"type": "RandomCrop", "crop_sise": 8},
                ]
            },
            "dataset.train.data_pipelines[1].crop_sise: RandomCrop takes no 'crop_sise'; did you mean 'crop_size'?",
        ),
        (
            {"data_pipelines": [{"type": "RandomFlip", "prob": "often"}]},
            "dataset.train.data_pipelines[0].prob: ",
        ),
        ({"repeat_times": "many"}, "dataset.train.repeat_times: "),
    ],
)
def test_build_dataset_errors_name_the_recipe_path(root, train, message):
    with pytest.raises(RecipeError) as info:
        build_dataset(dataset_cfg(root, **train), "TRAIN")
    assert message in str(info.value)


def test_build_dataset_top_level_error_path(root):
    cfg = dataset_cfg(root)
    cfg["ignore_indx"] = 255
    with pytest.raises(RecipeError, match=r"^dataset\.ignore_indx: .*did you mean 'ignore_index'"):
        build_dataset(cfg, "TRAIN")
