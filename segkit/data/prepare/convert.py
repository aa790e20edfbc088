"""Conversion helpers shared by the preparers: id lists, label maps from other formats, merging trees, checksums.

Everything here writes inside the staging folder of a preparation; nothing touches the final dataset folder.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError, DownloadError

DIGESTS = ("md5", "sha1", "sha256")


# ----------------------------------------------------------------------------------------- files and trees
def merge_tree(source: Path, dest: Path) -> None:
    """Move everything under ``source`` into ``dest``: folders are merged, a file replaces one of the same name."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        target = dest / entry.name
        if target.is_dir() and entry.is_dir() and not entry.is_symlink():
            merge_tree(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def locate(tree: Path, markers: tuple[str, ...], max_depth: int = 4) -> Path | None:
    """The shallowest folder under ``tree`` (``tree`` included) holding every relative path of ``markers``."""
    level = [tree]
    for _ in range(max_depth + 1):
        for folder in level:
            if all((folder / marker).exists() for marker in markers):
                return folder
        level = [p for folder in level for p in sorted(folder.iterdir()) if p.is_dir() and not p.is_symlink()]
    return None


def link_or_copy(source: Path, dest: Path) -> None:
    """A hard link where the file system allows one, else a copy."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_digests(path: Path, source: dict) -> None:
    """Check every published digest (``md5``, ``sha1``, ``sha256``) ``source`` gives for ``path``.

    A mismatch raises :class:`DownloadError`; a downloaded file is removed then (a resume would only repeat it),
    a file the user supplied is left alone.
    """
    for algorithm in DIGESTS:
        expected = source.get(algorithm)
        if expected and (actual := file_digest(path, algorithm)) != expected.lower():
            if source.get("downloaded"):
                path.unlink(missing_ok=True)
            raise DownloadError(
                f"{path}: checksum mismatch: expected {algorithm} {expected.lower()}, got {actual} "
                f"(published by {source.get('checksum_from', 'the dataset authors')}); the file is corrupt "
                "or another version"
            )


# ----------------------------------------------------------------------------------------- id lists
def write_id_list(path: Path, ids: Iterable[str]) -> int:
    """Write one id per line (sorted, no duplicates); return how many."""
    unique = sorted(set(ids))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in unique), encoding="utf-8")
    return len(unique)


def read_id_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"id list not found: {path}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ids_in(folder: Path, suffix: str, keep_suffix: bool = False) -> list[str]:
    """The names in ``folder`` ending with ``suffix`` (without it unless ``keep_suffix``), sorted."""
    if not folder.is_dir():
        return []
    names = sorted(n for n in os.listdir(folder) if n.endswith(suffix) and not n.startswith("."))
    return names if keep_suffix else [n[: -len(suffix)] for n in names]


def ensure_id_lists(root: Path, lists: dict[str, tuple[str, str, bool]]) -> dict[str, int]:
    """Write ``root/<list>`` from the files of a folder for every list that does not exist yet.

    ``lists`` maps a list file (relative) to ``(folder, suffix, keep_suffix)``; returns the lists written.
    """
    written = {}
    for list_file, (folder, suffix, keep_suffix) in lists.items():
        path = root / list_file
        ids = ids_in(root / folder, suffix, keep_suffix)
        if not path.is_file() and ids:
            written[list_file] = write_id_list(path, ids)
    return written


# ----------------------------------------------------------------------------------------- label maps
def read_any_image(path: Path) -> np.ndarray:
    """Read an image OpenCV or Pillow can decode (also ``.gz``-compressed, e.g. STARE's ``.ppm.gz``)."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        from PIL import Image  # GIF (DRIVE's masks) and anything else OpenCV cannot decode

        try:
            with Image.open(io.BytesIO(data)) as pil:
                image = np.array(pil.convert("RGB") if pil.mode not in ("L", "RGB") else pil)
        except OSError:
            raise DataError(f"cannot read image (corrupt or unsupported format): {path}") from None
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return image


def write_png(image: np.ndarray, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(dest), image):
        raise DataError(f"cannot write {dest}")


def binary_mask(image: np.ndarray) -> np.ndarray:
    """A 0/1 ``uint8`` vessel mask from a hand-drawn one: ``value >= 128`` is foreground.

    Some official masks are not strictly 0/255; thresholding at 128 (first channel) is the convention of the
    mmsegmentation converters (tools/dataset_converters/{drive,stare,chase_db1,hrf}.py) that SSSegmentation's
    retinal archives follow.
    """
    channel = image[..., 0] if image.ndim == 3 else image
    return (channel >= 128).astype(np.uint8)


def convert_pairs(pairs: Iterable[tuple[Path, Path]], convert: Callable[[np.ndarray], np.ndarray]) -> int:
    """Read each source, convert it and write it as PNG to its destination; return how many."""
    count = 0
    for source, dest in pairs:
        write_png(convert(read_any_image(source)), dest)
        count += 1
    return count


def as_is(image: np.ndarray) -> np.ndarray:
    return image


# ----------------------------------------------------------------------------------------- .mat annotations
def load_mat(path: Path, what: str) -> dict:
    """A MATLAB file's variables (structs as attribute objects); scipy is optional, so its absence is explained."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(
            f"reading the {what} annotations (.mat) needs scipy: pip install scipy "
            "(or prepare from SSSegmentation's archive, which has them as PNGs)"
        ) from None
    try:
        return loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read this .mat file: {exc}") from None


def load_sbd_segmentation(path: Path) -> np.ndarray:
    """The class map of one SBD ``cls/<id>.mat`` (``GTcls.Segmentation``) as ``uint8``."""
    try:
        return np.asarray(load_mat(path, "SBD")["GTcls"].Segmentation, dtype=np.uint8)
    except (KeyError, AttributeError) as exc:
        raise DataError(f"{path}: not an SBD class annotation (GTcls.Segmentation): {exc}") from None


def sbd_to_png(cls_dir: Path, out_dir: Path) -> list[str]:
    """Convert every SBD ``cls/*.mat`` to ``out_dir/<id>.png`` (class indices); return the ids."""
    ids = ids_in(cls_dir, ".mat")
    if not ids:
        raise DataError(f"{cls_dir}: no SBD annotations (*.mat)")
    load_sbd_segmentation(cls_dir / f"{ids[0]}.mat")  # a missing scipy fails before anything is written
    for imageid in ids:
        write_png(load_sbd_segmentation(cls_dir / f"{imageid}.mat"), out_dir / f"{imageid}.png")
    return ids


def voc_trainaug_ids(sbd_train: list[str], sbd_val: list[str], voc_train: list[str], voc_val: list[str]) -> list[str]:
    """The "trainaug" split: SBD train + SBD val + VOC train, minus VOC val (10582 ids for the official data)."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))
