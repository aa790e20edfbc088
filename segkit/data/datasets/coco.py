"""COCO-based datasets: COCO-Stuff 10k (``.mat`` labels), COCO-Stuff 164k (PNG labels) and COCO's VOC classes.

Layouts::

    COCOStuff10kDataset   rootdir/images/<id>.jpg, rootdir/annotations/<id>.mat (key 'S': 0 = unlabeled,
                          1..182 = classes), rootdir/imageLists/<set>.txt (set: train, test, all)
    COCOStuffDataset      rootdir/<set>2017/<name>.jpg with rootdir/<set>2017/<name>.png next to it (the
                          stuffthingmaps: 0..181 = classes, 255 = unlabeled); ids from the images of
                          rootdir/annotations/stuff_<set>2017.json (without it: every <name>.png there)
    COCOVOCSUBDataset     rootdir/<set>2017/<file_name>, masks drawn from rootdir/annotations/instances_<set>2017.json

Reading ``.mat`` files needs scipy (an optional dependency: ``pip install scipy``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from ...errors import DataError
from ...registry import DATASETS
from .base import VOID, DatasetFamily, missing_message, read_image, voc_palette

COCO_STUFF_CLASSNAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "mirror", "dining table", "window", "desk",
    "toilet", "door", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush", "banner", "blanket", "branch", "bridge", "building-other", "bush",
    "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
    "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal",
    "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other",
    "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone",
    "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
]  # fmt: skip
"""The 182 COCO-Stuff ids (91 thing ids, 11 of them never annotated, and 91 stuff classes), in id order."""

COCO_VOC_CLASSNAMES = [
    "__background__", "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorcycle", "person", "potted-plant", "sheep", "sofa", "train", "tv",
]  # fmt: skip


VOC_LABEL_CATEGORIES = [0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72]
COCO_TO_VOC = {coco_id: label for label, coco_id in enumerate(VOC_LABEL_CATEGORIES) if label > 0}
"""COCO category id -> VOC label (airplane 5 -> 1, ..., tv 72 -> 20), SSSegmentation's table."""


# --------------------------------------------------------------------------- COCO annotation files
def load_instances(path: str, hint: str | None = None) -> dict[str, Any]:
    """Read a COCO annotation JSON; a missing or broken file is a ``DataError`` naming it."""
    if not os.path.isfile(path):
        raise DataError(missing_message("annotation file", path, hint))
    try:
        with open(path, encoding="utf-8") as handle:
            coco = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read COCO annotation file {path}: {exc}") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise DataError(f"{path}: not a COCO annotation file (no 'images' list)")
    return coco


def rle_counts(encoded: str | bytes) -> list[int]:
    """Run lengths of a compressed COCO RLE string (the LEB128-like encoding of pycocotools' ``maskApi.c``).

    Each run is stored in 5-bit groups as characters offset by 48, low groups first, bit 0x20 meaning "more
    follows" and bit 0x10 of the last group the sign; from the fourth run on the value is a difference to the run
    two places earlier.
    """
    text = encoded.decode("ascii") if isinstance(encoded, bytes) else encoded
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode_rle(counts: Sequence[int] | str | bytes, height: int, width: int, where: str) -> np.ndarray:
    """A ``bool`` HxW mask from COCO RLE counts (alternating 0/1 runs, column-major, starting with 0s)."""
    runs = np.asarray(rle_counts(counts) if isinstance(counts, (str, bytes)) else counts, dtype=np.int64)
    if runs.sum() != height * width or (runs < 0).any():
        raise DataError(f"{where}: RLE runs cover {runs.sum()} pixels, the image has {height}x{width}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(width, height).T


def object_mask(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """The ``bool`` mask of one annotation: polygons (a list of ``[x0, y0, x1, y1, ...]``) or an RLE dict."""
    if isinstance(segmentation, dict):
        size = segmentation.get("size", [height, width])
        if list(size) != [height, width]:
            raise DataError(f"{where}: RLE size {size} differs from the image size [{height}, {width}]")
        return decode_rle(segmentation["counts"], height, width, where)
    mask = np.zeros((height, width), np.uint8)
    for polygon in segmentation:  # one at a time: the union of the parts, as pycocotools gives
        points = np.round(np.asarray(polygon, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
        cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


def rasterise(objects: Sequence[tuple[int, dict]], height: int, width: int, where: str) -> np.ndarray:
    """A ``uint8`` label map: each ``(label, annotation)`` paints the pixels still 0 (first come keeps them)."""
    seg = np.zeros((height, width), np.uint8)
    for label, annotation in objects:
        mask = object_mask(
            annotation["segmentation"], height, width, f"{where} (annotation {annotation.get('id')})"
        )
        seg[mask & (seg == 0)] = label
    return seg


# --------------------------------------------------------------------------- datasets
class COCOLayoutDataset(DatasetFamily):
    """The constructor the COCO datasets share; a subclass describes its files in :meth:`layout`."""

    preparer = "coco"

    def assemble(self, imageid: str, image_path: str, raw_seg: np.ndarray, ann_path: str) -> dict[str, Any]:
        """A sample from an image file and a raw label map read from ``ann_path`` (remapped and checked here)."""
        image = read_image(image_path)
        seg_target = self.remap(raw_seg, ann_path)
        height, width = image.shape[:2]
        if seg_target.shape != (height, width):
            raise DataError(
                f"{ann_path}: label map is {seg_target.shape[1]}x{seg_target.shape[0]} but its image "
                f"{image_path} is {width}x{height}"
            )
        return {"image": image, "seg_target": seg_target, "width": width, "height": height, "id": imageid}


@DATASETS.register("COCOStuff10kDataset")
class COCOStuff10kDataset(COCOLayoutDataset):
    """COCO-Stuff 10k: 182 classes (SSSegmentation's protocol, not mmsegmentation's 171); ``S`` 0 is void and
    1..182 become 0..181. The 11 thing ids COCO never annotates stay classes that never occur."""

    preparer = "cocostuff10k"
    num_classes = 182
    classnames = COCO_STUFF_CLASSNAMES
    palette = voc_palette(182)
    clsid2label = {0: VOID, 255: VOID, **{i: i - 1 for i in range(1, 183)}}

    def layout(self) -> dict[str, Any]:
        loadmat_or_error()
        ids = self.split_ids("imageLists", f"{self.set}.txt")
        return {"image_dir": "images", "ann_dir": "annotations", "ann_ext": ".mat", "imageids": ids}

    def read(self, imageid: str) -> dict[str, Any]:
        """Read ``images/<id>.jpg`` and the ``S`` label map of ``annotations/<id>.mat``."""
        ann_path = os.path.join(self.ann_dir, imageid + self.ann_ext)
        return self.assemble(imageid, self.image_path(imageid), read_mat_label(ann_path), ann_path)


def loadmat_or_error() -> Callable[..., dict]:
    """``scipy.io.loadmat``, or a ``DataError`` saying how to install scipy."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(
            "COCOStuff10kDataset reads .mat annotations with scipy, which is not installed: pip install scipy"
        ) from None
    return loadmat


def read_mat_label(path: str) -> np.ndarray:
    """The integer label map stored under key ``'S'`` of a MATLAB file."""
    loadmat = loadmat_or_error()
    if not os.path.isfile(path):
        raise DataError(f"annotation not found: {path}")
    try:
        contents = loadmat(path)
    except Exception as exc:  # scipy raises several types for damaged files
        raise DataError(f"cannot read annotation (corrupt or not a MATLAB file): {path} ({exc})") from None
    if "S" not in contents:
        keys = ", ".join(k for k in contents if not k.startswith("__"))
        raise DataError(f"{path}: no label map 'S' in the .mat file (it holds: {keys or 'nothing'})")
    seg = np.asarray(contents["S"])
    if seg.ndim != 2 or not (np.issubdtype(seg.dtype, np.integer) or np.all(np.mod(seg, 1) == 0)):
        raise DataError(f"{path}: 'S' must be a 2-D map of integer class ids, got {seg.dtype} {seg.shape}")
    return seg.astype(np.int64)


@DATASETS.register("COCOStuffDataset")
class COCOStuffDataset(COCOLayoutDataset):
    """COCO-Stuff 164k: 182 classes read from the public ``stuffthingmaps_trainval2017`` PNGs.

    Those PNGs are 0-based (0 = person ... 181 = wood) with 255 = unlabeled (the encoding mmsegmentation's
    ``coco_stuff164k.py`` converter reads). SSSegmentation 1.7.0 applies the 10k dataset's 1-based remap here,
    which would void ``person`` and shift every class by one; segkit keeps the ids and voids only 255.
    The sample ``id`` is the image's file stem (``000000000139``) rather than SSSegmentation's numeric COCO id.
    """

    num_classes = 182
    classnames = COCO_STUFF_CLASSNAMES
    palette = voc_palette(182)
    clsid2label = {255: VOID}

    def layout(self) -> dict[str, Any]:
        rootdir, folder = self.rootdir, f"{self.set}2017"
        json_path = os.path.join(rootdir, "annotations", f"stuff_{self.set}2017.json")
        if os.path.isfile(json_path):
            ids = [
                os.path.splitext(image["file_name"])[0]
                for image in load_instances(json_path, self.prepare_hint)["images"]
            ]
        elif os.path.isdir(os.path.join(rootdir, folder)):
            ids = sorted(n[:-4] for n in os.listdir(os.path.join(rootdir, folder)) if n.endswith(".png"))
        else:
            ids = []
        return {"image_dir": folder, "ann_dir": folder, "imageids": ids}


@DATASETS.register("COCOVOCSUBDataset")
class COCOVOCSUBDataset(COCOLayoutDataset):
    """The 20 VOC classes in COCO (plus background), masks drawn from the instance annotations.

    Objects of the 20 categories are painted in annotation order and the first one painted keeps a pixel;
    every other pixel is background (0). Only images with more than 1000 foreground pixels are used, which means
    drawing every image's masks once when the dataset is built (minutes for ``train2017``). Polygons are filled
    with OpenCV (vertices rounded to pixels, borders included), so boundary pixels can differ from pycocotools';
    RLE masks (crowds) are decoded exactly. The sample ``id`` is the numeric COCO image id.
    """

    num_classes = 21
    classnames = COCO_VOC_CLASSNAMES
    palette = voc_palette(21)
    min_foreground_pixels = 1000

    def layout(self) -> dict[str, Any]:
        json_path = os.path.join(self.rootdir, "annotations", f"instances_{self.set}2017.json")
        coco = load_instances(json_path, self.prepare_hint)
        by_image: dict[int, list[tuple[int, Any]]] = {}
        for ann in coco.get("annotations", []):
            if ann["category_id"] in COCO_TO_VOC:
                by_image.setdefault(ann["image_id"], []).append((COCO_TO_VOC[ann["category_id"]], ann))
        self.image_records = {}
        for image in coco["images"]:
            objects = by_image.get(image["id"], [])
            record = {"file_name": image["file_name"], "height": image["height"], "width": image["width"]}
            self.image_records[str(image["id"])] = {**record, "objects": objects}
        ids = [i for i, record in self.image_records.items() if self._foreground(record, json_path)]
        return {"image_dir": f"{self.set}2017", "ann_dir": "annotations", "imageids": ids}

    def _foreground(self, record: dict[str, Any], json_path: str) -> bool:
        if not record["objects"]:
            return False
        seg = rasterise(record["objects"], record["height"], record["width"], json_path)
        return int(np.count_nonzero(seg)) > self.min_foreground_pixels

    def image_path(self, imageid: str) -> str:
        return os.path.join(self.image_dir, self.image_records[imageid]["file_name"])

    def read(self, imageid: str) -> dict[str, Any]:
        """Read the image and draw its label map from the instance annotations."""
        record = self.image_records[imageid]
        json_path = os.path.join(self.rootdir, "annotations", f"instances_{self.set}2017.json")
        raw = rasterise(record["objects"], record["height"], record["width"], json_path)
        return self.assemble(imageid, self.image_path(imageid), raw, json_path)
