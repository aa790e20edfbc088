"""Miniature copies of real dataset layouts: tiny generated images and masks under the real file names.

Every writer takes the raw (as stored) masks to put on disk; images are random noise of the mask's size, written as
JPEG or PNG according to the real file name. Tests then check what segkit reads back after its label remap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from segkit.data.datasets.base import voc_palette

MEAN_STD = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}
CROP = 16
TRAIN_PIPELINE = [
    {"type": "Resize", "output_size": [40, 24], "keep_ratio": True, "scale_range": [0.75, 1.25]},
    {"type": "RandomCrop", "crop_size": CROP},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "Normalize", **MEAN_STD},
    {"type": "ToTensor"},
    {"type": "Padding", "output_size": CROP, "data_type": "tensor"},
]
TEST_PIPELINE = [
    {"type": "Resize", "output_size": [20, 20], "keep_ratio": False, "scale_range": None},
    {"type": "Normalize", **MEAN_STD},
    {"type": "ToTensor"},
]


# --------------------------------------------------------------------------- files
def blocks(height: int, width: int, values: Sequence[int], seed: int = 0, block: int = 4) -> np.ndarray:
    """A uint8 map of ``block``-sized tiles drawn from ``values``."""
    rng = np.random.default_rng(seed)
    tiles = rng.choice(np.asarray(values, np.uint8), (-(-height // block), -(-width // block)))
    return np.kron(tiles, np.ones((block, block), np.uint8))[:height, :width]


def write_image(path: Path, height: int, width: int, seed: int = 0) -> None:
    """Random BGR noise; JPEG or PNG as ``path``'s suffix says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image), path


def write_mask(path: Path, mask: np.ndarray, mode: str = "L") -> None:
    """A PNG mask: ``"L"`` single channel, ``"P"`` palette (indices = values), ``"RGB"`` values in channel 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = mask.astype(np.uint8)
    if mode == "RGB":
        noise = np.random.default_rng(1).integers(0, 256, mask.shape + (2,), dtype=np.uint8)
        image = Image.fromarray(np.dstack([values, noise]))
    else:
        image = Image.fromarray(values)
        if mode == "P":  # an "L" image given a palette becomes "P" with the same indices
            image.putpalette([c for rgb in voc_palette(256) for c in rgb])
    image.save(path)


def write_pair(image_path: Path, ann_path: Path, mask: np.ndarray, mode: str = "L") -> None:
    write_image(image_path, *mask.shape)
    write_mask(ann_path, mask, mode)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


# --------------------------------------------------------------------------- layouts
def make_lip(root: Path, split: str, masks: dict[str, np.ndarray]) -> Path:
    folder = {"train": "train", "val": "val", "test": "testing"}[split]
    for imageid, mask in masks.items():
        write_pair(
            root / f"{folder}_images/{imageid}.jpg", root / f"{folder}_segmentations/{imageid}.png", mask
        )
    write_lines(root / f"{split}_id.txt", masks)
    return root


def make_cihp(root: Path, split: str, masks: dict[int, np.ndarray]) -> Path:
    """Files are named by the zero-padded number; the id list gives plain numbers (as in the archive)."""
    folder = {"train": "Training", "val": "Validation", "test": "Testing"}[split]
    for number, mask in masks.items():
        name = f"{number:07d}"
        write_pair(root / folder / f"Images/{name}.jpg", root / folder / f"Category_ids/{name}.png", mask)
    write_lines(root / folder / f"{split}_id.txt", (str(n) for n in masks))
    return root


def make_atr(root: Path, split: str, masks: dict[str, np.ndarray]) -> Path:
    for imageid, mask in masks.items():
        write_pair(root / f"JPEGImages/{imageid}.jpg", root / f"SegmentationClassAug/{imageid}.png", mask)
    write_lines(root / f"{split}_id.txt", masks)
    return root


def make_mhp_v1(root: Path, split: str, persons: dict[str, list[np.ndarray]], mode: str = "L") -> Path:
    """``persons[<n>.jpg]`` = that image's person masks, written as ``<n>_<count>_<k>.png``."""
    for name, masks in persons.items():
        write_image(root / "images" / name, *masks[0].shape)
        stem = Path(name).stem
        for k, mask in enumerate(masks, 1):
            write_mask(root / f"annotations/{stem}_{len(masks):02d}_{k:02d}.png", mask, mode)
    write_lines(root / f"{split}_list.txt", persons)
    return root


def make_mhp_v2(root: Path, split: str, persons: dict[str, list[np.ndarray]], mode: str = "RGB") -> Path:
    """``persons[<id>]`` = that image's person masks (3-channel PNGs, as the v2 release stores them)."""
    for imageid, masks in persons.items():
        write_image(root / split / f"images/{imageid}.jpg", *masks[0].shape)
        for k, mask in enumerate(masks, 1):
            write_mask(root / split / f"parsing_annos/{imageid}_{len(masks):02d}_{k:02d}.png", mask, mode)
    write_lines(root / "list" / f"{split}.txt", persons)
    return root


def make_supervisely(root: Path, split: str, masks: dict[str, np.ndarray]) -> Path:
    for imageid, mask in masks.items():
        write_pair(root / f"Images/{split}/{imageid}.jpg", root / f"Anno-Person/{split}/{imageid}.png", mask)
    write_lines(root / f"{split}.txt", masks)
    return root


def make_sbu(root: Path, split: str, masks: dict[str, np.ndarray]) -> Path:
    folder = {"train": "SBUTrain4KRecoveredSmall", "val": "SBU-Test"}[split]
    for imageid, mask in masks.items():
        write_pair(
            root / folder / f"ShadowImages/{imageid}.jpg", root / folder / f"ShadowMasks/{imageid}.png", mask
        )
    write_lines(root / f"{split}.txt", masks)
    return root


RETINAL_SUFFIX = {"HRF": None, "DRIVE": "_manual1.png", "STARE": ".ah.png", "CHASE_DB1": "_1stHO.png"}


def make_retinal(root: Path, kind: str, split: str, masks: dict[str, np.ndarray]) -> Path:
    """``masks[<image file name>]``; the annotation is named per ``kind`` (see ``RETINAL_SUFFIX``)."""
    folder = {"train": "training", "val": "validation"}[split]
    suffix = RETINAL_SUFFIX[kind]
    for name, mask in masks.items():
        ann_name = name if suffix is None else Path(name).stem + suffix
        write_pair(root / "images" / folder / name, root / "annotations" / folder / ann_name, mask)
    write_lines(root / f"{split}.txt", masks)
    return root


def make_vspw(root: Path, split: str, videos: dict[str, dict[str, np.ndarray]]) -> Path:
    """``videos[<video>][<frame>]`` = the frame's stored mask (palette PNG)."""
    for video, frames in videos.items():
        for frame, mask in frames.items():
            write_pair(
                root / f"data/{video}/origin/{frame}.jpg", root / f"data/{video}/mask/{frame}.png", mask, "P"
            )
    write_lines(root / f"{split}.txt", videos)
    return root


def make_darkzurich(root: Path, masks: dict[str, np.ndarray]) -> Path:
    for imageid, mask in masks.items():
        write_pair(
            root / f"rgb_anon/val/night/GOPR0356/{imageid}_rgb_anon.png",
            root / f"gt/val/night/GOPR0356/{imageid}_gt_labelTrainIds.png",
            mask,
        )
    write_lines(root / "lists_file_names/val_filenames.txt", (f"val/night/GOPR0356/{i}" for i in masks))
    return root


def make_nighttime(root: Path, masks: dict[str, np.ndarray]) -> Path:
    for imageid, mask in masks.items():
        write_pair(
            root / f"leftImg8bit/test/night/{imageid}_leftImg8bit.png",
            root / f"gtCoarse_daytime_trainvaltest/test/night/{imageid}_gtCoarse_labelTrainIds.png",
            mask,
        )
    return root


# --------------------------------------------------------------------------- checks
def assert_pipeline_outputs(dataset_cls: type, rootdir: Path, **kwargs) -> None:
    """TRAIN samples are CROP-sized float32 images and int64 labels; TEST keeps labels at original size."""
    train = dataset_cls(str(rootdir), mode="TRAIN", data_pipelines=TRAIN_PIPELINE, **kwargs)
    sample = train[0]
    assert sample["image"].shape == (3, CROP, CROP) and sample["image"].dtype == torch.float32
    assert sample["seg_target"].shape == (CROP, CROP) and sample["seg_target"].dtype == torch.int64
    labels = sample["seg_target"][sample["seg_target"] != -100]
    assert labels.numel() and 0 <= int(labels.min()) and int(labels.max()) < train.num_classes
    test = dataset_cls(str(rootdir), mode="TEST", data_pipelines=TEST_PIPELINE, **kwargs)
    sample = test[0]
    assert sample["image"].shape == (3, 20, 20) and sample["image"].dtype == torch.float32
    assert sample["seg_target"].shape == (sample["height"], sample["width"])
    assert sample["seg_target"].dtype == torch.int64
