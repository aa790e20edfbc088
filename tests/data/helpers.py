"""Test helpers: label maps whose image colours encode the label, and tiny on-disk datasets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

NUM_CLASSES = 5
# one distinct BGR colour per label; none is black, so black padding decodes as "no label"
COLOURS = np.array([(40, 200, 90), (250, 30, 30), (30, 250, 30), (30, 30, 250), (200, 200, 200)], np.uint8)


def blocky_labels(height: int, width: int, seed: int = 0, block: int = 8) -> np.ndarray:
    """An int64 label map of random ``block`` x ``block`` tiles (no symmetry, every class likely present)."""
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, NUM_CLASSES, (-(-height // block), -(-width // block)))
    return np.kron(tiles, np.ones((block, block), np.int64))[:height, :width].astype(np.int64)


def encode(labels: np.ndarray) -> np.ndarray:
    """The HxWx3 uint8 BGR image whose pixel colours are the labels' colours."""
    return COLOURS[labels].copy()


def decode(image: np.ndarray) -> np.ndarray:
    """Labels from an encoded image, by nearest colour; black (padding) decodes to -100."""
    pixels = image.reshape(-1, 1, 3).astype(np.int32)
    distance = np.abs(pixels - COLOURS[None].astype(np.int32)).sum(-1)
    labels = distance.argmin(-1)
    labels[np.abs(pixels[:, 0]).sum(-1) == 0] = -100
    return labels.reshape(image.shape[:2])


def sample_of(labels: np.ndarray, imageid: str = "x") -> dict:
    """A pipeline sample (image encodes labels)."""
    height, width = labels.shape
    return {
        "image": encode(labels),
        "seg_target": labels.copy(),
        "width": width,
        "height": height,
        "id": imageid,
    }


def write_pairs(root: Path, split: str, pairs: dict[str, np.ndarray], split_file: bool = True) -> None:
    """Write ``root/images/<split>/<id>.png`` (encoded) and ``root/annotations/<split>/<id>.png`` (uint8 raw)."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    for imageid, raw in pairs.items():
        labels = np.clip(raw, 0, NUM_CLASSES - 1)
        cv2.imwrite(str(root / "images" / split / f"{imageid}.png"), encode(labels))
        cv2.imwrite(str(root / "annotations" / split / f"{imageid}.png"), raw.astype(np.uint8))
    if split_file:
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in pairs))


def make_folder(
    root: Path, sizes: list[tuple[int, int]], split: str = "train", split_file: bool = True
) -> Path:
    """A FolderDataset layout with one encoded image per (height, width) in ``sizes``."""
    pairs = {f"img{i:02d}": blocky_labels(h, w, seed=i) for i, (h, w) in enumerate(sizes)}
    write_pairs(root, split, pairs, split_file=split_file)
    return root


CLASSNAMES = [f"c{i}" for i in range(NUM_CLASSES)]
