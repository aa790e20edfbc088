"""A small synthetic dataset (textured shapes on textured backgrounds), generated on first use.

Each image holds 2-4 shapes (``disc``, ``square``, ``triangle``, ``ring``) that may overlap (later ones occlude
earlier ones). Every class has a characteristic hue and texture (grain, checkerboard, stripes, speckle) with
per-image jitter; the background is low-saturation noise with blotches. So classes are learnable from colour, texture
and shape, but no single pixel value identifies one. Images are fully determined by ``(seed, split, index)``.

Layout written (the ``BaseDataset`` defaults)::

    rootdir/images/{train,val}/<id>.png        BGR images
    rootdir/annotations/{train,val}/<id>.png   uint8 class ids 0..4
    rootdir/{train,val}.txt                    ids, one per line
    rootdir/meta.json                          generator version and parameters (a change regenerates)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from ...errors import DataError
from ...fileio import current_umask
from ...registry import DATASETS
from .base import DatasetFamily

GENERATOR_VERSION = 1
CLASSNAMES = ["background", "disc", "square", "triangle", "ring"]
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25)]
CLASS_HUES = {1: 0.0, 2: 120.0, 3: 220.0, 4: 55.0}  # degrees: red, green, blue, yellow
SPLITS = {"train": 0, "val": 1}


# --------------------------------------------------------------------------- drawing
def _hsv_to_bgr(hue_deg: float, saturation: float, value: float) -> np.ndarray:
    pixel = np.array([[[hue_deg % 360.0, saturation, value]]], dtype=np.float32)
    return cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0] * 255.0


def _texture(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A brightness modulation in about [-0.3, 0.3] characteristic of class ``kind``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 1:  # disc: fine grain
        return rng.normal(0.0, 0.12, (size, size)).astype(np.float32)
    if kind == 2:  # square: checkerboard
        period = rng.uniform(5, 9)
        return 0.22 * np.where(((xx // period + yy // period) % 2) == 0, 1.0, -1.0).astype(np.float32)
    if kind == 3:  # triangle: stripes at a random angle
        angle, period = rng.uniform(0, np.pi), rng.uniform(5, 9)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
        return (0.25 * np.sin(phase)).astype(np.float32)
    speckle = (rng.random((size, size)) < 0.18).astype(np.float32)  # ring: bright speckle
    return 0.35 * cv2.dilate(speckle, np.ones((2, 2), np.uint8)) - 0.1


def _shape_mask(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A filled mask of one shape of class ``kind`` at a random place, size and rotation."""
    mask = np.zeros((size, size), np.uint8)
    radius = rng.uniform(0.16, 0.30) * size
    cx, cy = rng.uniform(0.15 * size, 0.85 * size, 2)
    angle = rng.uniform(0, 2 * np.pi)
    if kind in (1, 4):
        cv2.circle(mask, (round(cx), round(cy)), round(radius), 1, -1)
        if kind == 4:
            cv2.circle(mask, (round(cx), round(cy)), round(radius * rng.uniform(0.45, 0.6)), 0, -1)
        return mask
    corners, scale = (4, radius * 1.1) if kind == 2 else (3, radius * 1.25)
    angles = angle + np.arange(corners) * 2 * np.pi / corners
    points = np.stack([cx + scale * np.cos(angles), cy + scale * np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Low-saturation noise with soft blotches, float32 BGR in [0, 255]."""
    base = _hsv_to_bgr(rng.uniform(0, 360), rng.uniform(0.0, 0.18), rng.uniform(0.35, 0.75))
    blotches = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 12)
    blotches *= 0.25 / max(float(np.abs(blotches).max()), 1e-6)
    grain = rng.normal(0, 0.06, (size, size, 3)).astype(np.float32)
    return base * (1.0 + blotches[..., None] + grain)


def make_sample(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image, label)`` pair: HxWx3 uint8 BGR and HxW uint8 class ids."""
    image = _background(size, rng)
    label = np.zeros((size, size), np.uint8)
    for kind in rng.integers(1, len(CLASSNAMES), size=int(rng.integers(2, 5))):
        kind = int(kind)
        mask = _shape_mask(kind, size, rng).astype(bool)
        colour = _hsv_to_bgr(
            CLASS_HUES[kind] + rng.uniform(-12, 12), rng.uniform(0.55, 0.95), rng.uniform(0.5, 0.9)
        )
        modulation = 1.0 + _texture(kind, size, rng) + rng.normal(0, 0.04, (size, size)).astype(np.float32)
        image[mask] = colour * modulation[mask][:, None]
        label[mask] = kind
    image = cv2.GaussianBlur(image, (3, 3), 0.6)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


# --------------------------------------------------------------------------- writing
def _meta(num_train: int, num_val: int, image_size: int, seed: int) -> dict:
    return {
        "generator": "segkit.synthetic",
        "version": GENERATOR_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "image_size": image_size,
        "seed": seed,
        "classnames": CLASSNAMES,
    }


def _is_complete(root: Path, meta: dict) -> bool:
    try:
        found = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    splits = all((root / f"{s}.txt").is_file() and (root / "images" / s).is_dir() for s in SPLITS)
    return found == meta and splits


def _write_split(root: Path, split: str, count: int, image_size: int, seed: int) -> None:
    (root / "images" / split).mkdir(parents=True)
    (root / "annotations" / split).mkdir(parents=True)
    ids = [f"{split}_{i:05d}" for i in range(count)]
    for i, imageid in enumerate(ids):
        image, label = make_sample(image_size, np.random.default_rng([seed, SPLITS[split], i]))
        cv2.imwrite(str(root / "images" / split / f"{imageid}.png"), image)
        cv2.imwrite(str(root / "annotations" / split / f"{imageid}.png"), label)
    (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


def _install(tmp: Path, root: Path, meta: dict) -> None:
    """Move the finished ``tmp`` to ``root``, replacing an older generated dataset; tolerate a concurrent writer."""
    old = None
    if root.exists():
        old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(root, old)
        except FileNotFoundError:  # another process moved it first
            old = None
    try:
        os.rename(tmp, root)
    except OSError:
        if not _is_complete(root, meta):  # not a concurrent writer of the same data: give up
            raise DataError(f"could not write the synthetic dataset to {root}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_synthetic_dataset(
    root: str | Path,
    num_train: int = 400,
    num_val: int = 80,
    image_size: int = 96,
    seed: int = 0,
    *,
    force: bool = False,
) -> Path:
    """Write the synthetic dataset under ``root`` (atomically) and return ``root``.

    Nothing is written when ``root`` already holds a complete dataset from the same generator version and
    parameters (unless ``force``). A ``root`` that holds other files and no ``meta.json`` is never replaced.
    """
    root = Path(root)
    meta = _meta(num_train, num_val, image_size, seed)
    if not force and _is_complete(root, meta):
        return root
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file, not a folder; set dataset.rootdir to a folder")
    if root.exists() and not (root / "meta.json").is_file() and any(root.iterdir()):
        raise DataError(
            f"{root} exists and is not a segkit synthetic dataset (no meta.json); choose another root"
        )
    if min(num_train, num_val) < 1 or image_size < 16:
        raise DataError("the synthetic dataset needs num_train, num_val >= 1 and image_size >= 16")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
        os.chmod(tmp, 0o777 & ~current_umask())  # the dataset folder gets the umask's mode, not mkdtemp's 0700
    except OSError as exc:
        raise DataError(f"cannot write the synthetic dataset to {root}: {exc.strerror or exc}") from None
    try:
        _write_split(tmp, "train", num_train, image_size, seed)
        _write_split(tmp, "val", num_val, image_size, seed)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        _install(tmp, root, meta)
    except OSError as exc:
        raise DataError(f"cannot write the synthetic dataset to {root}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


@DATASETS.register("SyntheticDataset")
class SyntheticDataset(DatasetFamily):
    """Textured shapes (disc, square, triangle, ring) on textured backgrounds; 5 classes, written on first use.

    ``num_train``, ``num_val``, ``image_size`` and ``data_seed`` select the generated data (see
    :func:`write_synthetic_dataset`); ``seed`` only drives the augmentations. The data is (re)generated when
    ``rootdir`` is missing or empty, or holds generated data (``meta.json``) of other parameters; a ``rootdir`` with
    other content and no ``meta.json`` (e.g. an extracted archive) is used as it is. With ``auto_generate = false``
    missing data is an error asking for ``segkit prepare-data synthetic``.
    """

    num_classes = len(CLASSNAMES)
    classnames = CLASSNAMES
    palette = PALETTE
    prepare_hint = "segkit prepare-data synthetic"

    def __init__(
        self,
        rootdir: str,
        set: Literal["train", "val"] = "train",  # noqa: A002  (SSSegmentation's name)
        data_pipelines: Callable[[dict, np.random.Generator], dict] | Sequence[dict] | None = None,
        mode: Literal["TRAIN", "TEST"] = "TRAIN",
        num_train: int = 400,
        num_val: int = 80,
        image_size: int = 96,
        data_seed: int = 0,
        auto_generate: bool = True,
        repeat_times: int = 1,
        ignore_index: int = -100,
        auto_correct_invalid_seg_target: bool = False,
        record_img2aug_pos_mapper: bool = False,
        eval_env: Literal["local", "server"] = "local",
        seed: int = 0,
    ) -> None:
        root = Path(rootdir)
        foreign = root.is_dir() and not (root / "meta.json").is_file() and any(root.iterdir())
        if auto_generate and not foreign:
            write_synthetic_dataset(root, num_train, num_val, image_size, data_seed)
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            record_img2aug_pos_mapper=record_img2aug_pos_mapper,
            eval_env=eval_env,
            seed=seed,
        )

    def layout(self) -> dict[str, Any]:
        """``BaseDataset``'s default folders (``images/<set>``, ``annotations/<set>``, ids from ``<set>.txt``)."""
        return {"image_ext": ".png"}
