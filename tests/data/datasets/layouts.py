"""Miniature copies of public datasets in their real on-disk layouts (file names, split files, label encodings).

Each ``write_*`` function writes a few small images with label maps and returns the raw label maps it stored,
keyed by the id the dataset should report, so that tests can compute the labels they expect independently.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# cityscapesScripts labels.py: trainId of label ids 0..33 (255 = not a train class)
CITYSCAPES_TRAINIDS = [
    255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10, 11, 12, 13,
    14, 15, 255, 255, 16, 17, 18,
]  # fmt: skip


# --------------------------------------------------------------------------- pixels
def tiles(height: int, width: int, values: list[int], seed: int, block: int = 4) -> np.ndarray:
    """A label map of ``block`` x ``block`` tiles drawn from ``values`` (int64)."""
    rng = np.random.default_rng(seed)
    grid = rng.choice(np.asarray(values), size=(-(-height // block), -(-width // block)))
    return np.kron(grid, np.ones((block, block), np.int64))[:height, :width].astype(np.int64)


def with_borders(labels: np.ndarray, border: int = 255) -> np.ndarray:
    """``labels`` with ``border`` on the pixels next to a different label (VOC's object outlines)."""
    out = labels.copy()
    edge = np.zeros(labels.shape, bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    out[edge] = border
    return out


def write_image(path: Path, height: int, width: int, seed: int) -> None:
    """A noisy BGR image (content does not matter to the labels), JPEG or PNG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def write_gray_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), labels.astype(np.uint8))


def write_palette_png(path: Path, labels: np.ndarray, palette: list[tuple[int, int, int]]) -> None:
    """A ``P``-mode PNG (indices = labels), as the official VOC ``SegmentationClass`` masks are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))
    flat = [c for rgb in palette for c in rgb]
    image.putpalette(flat + [224, 224, 192] * (256 - len(palette)))  # 255 is VOC's cream outline colour
    image.save(path)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


# --------------------------------------------------------------------------- PASCAL
def write_voc(root: Path, palette: list[tuple[int, int, int]], size=(24, 32)) -> dict[str, np.ndarray]:
    """VOCdevkit/VOC2012: train/val with palette PNGs (255 borders), trainaug adding SBD grayscale masks."""
    height, width = size
    raws = {}
    official = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}
    for split, ids in official.items():
        for i, imageid in enumerate(ids):
            raws[imageid] = with_borders(tiles(height, width, [0, 0, 1, 7, 15, 20], seed=i + 10 * len(split)))
            write_image(root / "JPEGImages" / f"{imageid}.jpg", height, width, seed=i)
            write_palette_png(root / "SegmentationClass" / f"{imageid}.png", raws[imageid], palette)
        write_lines(root / "ImageSets" / "Segmentation" / f"{split}.txt", ids)
    sbd_id = "2008_000002"  # SBD masks: grayscale PNGs, no outlines
    raws[sbd_id] = tiles(height, width, [0, 3, 12, 19], seed=99)
    write_image(root / "JPEGImages" / f"{sbd_id}.jpg", height, width, seed=5)
    write_gray_png(root / "SegmentationClass" / f"{sbd_id}.png", raws[sbd_id])
    write_lines(root / "ImageSets" / "Segmentation" / "trainaug.txt", official["train"] + [sbd_id])
    return raws


def write_pascal_context(root: Path, size=(20, 28)) -> dict[str, np.ndarray]:
    """VOCdevkit/VOC2010 with SegmentationClassContext (0 = background, 1..59, and some 255)."""
    height, width = size
    raws = {}
    for split, ids in {"train": ["2008_000008", "2008_000015"], "val": ["2008_000019"]}.items():
        for i, imageid in enumerate(ids):
            raws[imageid] = tiles(height, width, [0, 1, 2, 30, 58, 59, 255], seed=20 + i + len(split))
            write_image(root / "JPEGImages" / f"{imageid}.jpg", height, width, seed=i)
            write_gray_png(root / "SegmentationClassContext" / f"{imageid}.png", raws[imageid])
        write_lines(root / "ImageSets" / "SegmentationContext" / f"{split}.txt", ids)
    return raws


# --------------------------------------------------------------------------- ADE20k, Cityscapes
def write_ade20k(root: Path, size=(24, 20), split_files: bool = True) -> dict[str, np.ndarray]:
    """ADE20k/ADEChallengeData2016 with 0 = void, 1..150 = classes."""
    height, width = size
    raws = {}
    base = root / "ADEChallengeData2016"
    for split, folder, count in [("train", "training", 2), ("val", "validation", 1)]:
        ids = [f"ADE_{split}_{i + 1:08d}" for i in range(count)]
        for i, imageid in enumerate(ids):
            raws[imageid] = tiles(height, width, [0, 1, 2, 75, 149, 150], seed=30 + i + count)
            write_image(base / "images" / folder / f"{imageid}.jpg", height, width, seed=i)
            write_gray_png(base / "annotations" / folder / f"{imageid}.png", raws[imageid])
        if split_files:
            write_lines(base / f"{split}.txt", ids)
    return raws


def write_cityscapes(root: Path, split: str = "val", size=(16, 24), split_file: bool = True) -> dict:
    """CityScapes: leftImg8bit/gtFine per city; the first image holds every label id 0..33 and 255."""
    height, width = size
    raws = {}
    names = [("frankfurt", "frankfurt_000000_000294"), ("lindau", "lindau_000000_000019")]
    for i, (city, name) in enumerate(names):
        if i == 0:
            raw = np.resize(np.append(np.arange(34), 255), (height, width)).astype(np.int64)
        else:
            raw = tiles(height, width, [0, 7, 8, 26, 33], seed=40 + i)
        write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", height, width, seed=i)
        write_gray_png(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", raw)
        write_gray_png(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png", raw * 0 + 1)
        raws[f"{city}/{name}_leftImg8bit"] = raw
    if split_file:
        write_lines(root / f"{split}.txt", list(raws))
    return raws


# --------------------------------------------------------------------------- COCO
def write_cocostuff10k(root: Path, size=(18, 22)) -> dict[str, np.ndarray]:
    """COCOStuff10k with annotations as MATLAB files (key 'S', 0 = unlabeled, 1..182), written with scipy."""
    from scipy.io import savemat

    height, width = size
    raws = {}
    for split, ids in {
        "train": ["COCO_train2014_000000000077"],
        "test": ["COCO_train2014_000000000009"],
    }.items():
        for i, imageid in enumerate(ids):
            raws[imageid] = tiles(height, width, [0, 1, 2, 92, 181, 182], seed=50 + i + len(split))
            write_image(root / "images" / f"{imageid}.jpg", height, width, seed=i)
            (root / "annotations").mkdir(parents=True, exist_ok=True)
            labels = {"S": raws[imageid].astype(np.uint16), "names": np.array(["unlabeled"], dtype=object)}
            savemat(str(root / "annotations" / f"{imageid}.mat"), labels)
        write_lines(root / "imageLists" / f"{split}.txt", ids)
    return raws


def write_cocostuff164k(root: Path, size=(18, 22), json_file: bool = True) -> dict[str, np.ndarray]:
    """COCO with stuffthingmaps PNGs next to the JPEGs (0..181 = classes, 255 = unlabeled)."""
    height, width = size
    raws = {}
    images = []
    for i, coco_id in enumerate([139, 285]):
        stem = f"{coco_id:012d}"
        raws[stem] = tiles(height, width, [0, 1, 90, 180, 181, 255], seed=60 + i)
        raws[stem][:4, :4], raws[stem][-4:, -4:] = 0, 181  # person and wood, the first and last class
        write_image(root / "val2017" / f"{stem}.jpg", height, width, seed=i)
        write_gray_png(root / "val2017" / f"{stem}.png", raws[stem])
        images.append({"id": coco_id, "file_name": f"{stem}.jpg", "height": height, "width": width})
    if json_file:
        write_json(root / "annotations" / "stuff_val2017.json", {"images": images, "annotations": []})
    return raws


def write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def rle_string(counts: list[int]) -> str:
    """Compress RLE run lengths the way pycocotools' ``rleToString`` does (written here from its description)."""
    chars = []
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = value != -1 if group & 0x10 else value != 0
            chars.append(chr(group + (0x20 if more else 0) + 48))
    return "".join(chars)


def rle_runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE of a boolean mask: column-major runs starting with zeros."""
    flat = mask.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0, *runs]


def box_polygon(x0: int, y0: int, x1: int, y1: int) -> list[int]:
    """A rectangle as a COCO polygon; OpenCV fills columns x0..x1 and rows y0..y1 (borders included)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def box_mask(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def write_coco_instances(root: Path, size=(48, 64)) -> dict[str, np.ndarray]:
    """COCO train2017 with instances_train2017.json: polygons (one with two parts), a compressed RLE, a crowd's
    uncompressed RLE, a non-VOC object and overlaps; two more images have too little VOC foreground.

    Returns the VOC label map expected for each image that qualifies (> 1000 foreground pixels), keyed by id.
    """
    height, width = size
    dog = box_mask(height, width, 20, 20, 60, 45)
    car = box_mask(height, width, 40, 0, 63, 5)
    annotations = [  # (category, segmentation, iscrowd); order matters: the first object keeps a pixel
        (1, [box_polygon(2, 2, 30, 40)], 0),  # person -> 15
        (18, {"counts": rle_string(rle_runs(dog)), "size": [height, width]}, 0),  # dog -> 12
        (10, [box_polygon(0, 42, 10, 47)], 0),  # traffic light: not a VOC class
        (3, {"counts": rle_runs(car), "size": [height, width]}, 1),  # car -> 7 (crowd, uncompressed)
        (1, [box_polygon(50, 30, 55, 35), box_polygon(58, 40, 62, 46)], 0),  # person in two parts
        (1, [box_polygon(5, 5, 14, 14)], 0),  # image 2: 100 px of person only
        (10, [box_polygon(0, 0, 63, 47)], 0),  # image 2: a non-VOC object covering everything
        (10, [box_polygon(0, 0, 63, 47)], 0),  # image 3: only a non-VOC object
    ]
    image_of = [1, 1, 1, 1, 1, 2, 2, 3]
    expected = np.zeros((height, width), np.uint8)
    boxes = [((2, 2, 30, 40), 15), ((20, 20, 60, 45), 12), ((40, 0, 63, 5), 7), ((50, 30, 55, 35), 15)]
    boxes.append(((58, 40, 62, 46), 15))
    for (x0, y0, x1, y1), label in boxes:
        region = expected[y0 : y1 + 1, x0 : x1 + 1]
        region[region == 0] = label
    images, anns = [], []
    for coco_id in (1, 2, 3, 4):
        name = f"{coco_id:012d}.jpg"
        write_image(root / "train2017" / name, height, width, seed=coco_id)
        images.append({"id": coco_id, "file_name": name, "height": height, "width": width})
    for ann_id, ((category, segmentation, crowd), image_id) in enumerate(
        zip(annotations, image_of, strict=True), start=1
    ):
        anns.append({"id": ann_id, "image_id": image_id, "category_id": category, "iscrowd": crowd,
                     "segmentation": segmentation, "area": 0.0, "bbox": [0, 0, 1, 1]})  # fmt: skip
    categories = [{"id": i, "name": f"category{i}"} for i in (1, 3, 10, 18)]
    content = {"images": images, "annotations": anns, "categories": categories}
    write_json(root / "annotations" / "instances_train2017.json", content)
    return {"1": expected}
