"""``segkit check-data``: read every sample of a recipe's splits once and report what would break training.

Each image id of a split is read once (``repeat_times`` does not matter) through the dataset's own read path, before
any augmentation. Three kinds of problems are reported, each naming the file:

* ``unreadable``: an image or label map that is missing, corrupt or in a format OpenCV cannot decode;
* ``size_mismatch``: a label map whose size differs from its image's;
* ``label_out_of_range``: label values that are neither classes (after the dataset's ``clsid2label``) nor its
  ``ignore_index`` (with ``auto_correct_invalid_seg_target = true`` the dataset voids them, so they are not reported).

For datasets that keep :meth:`BaseDataset.read <segkit.data.datasets.base.BaseDataset.read>` every check runs on
every sample; a dataset with its own ``read`` is checked through it, which reports the first problem of a sample.
Files are read by a few threads (OpenCV releases the GIL while decoding).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import DataError, SegkitError
from .datasets.base import BaseDataset, read_image, read_label_map

KINDS = ("unreadable", "size_mismatch", "label_out_of_range")
MODES = {"train": "TRAIN", "test": "TEST"}
Progress = Callable[[str, int, int], None]
"""``progress(split, samples_done, samples_total)``."""


def problem(kind: str, file: str, message: str) -> dict[str, str]:
    """One finding; the file name is not repeated in the message."""
    message = message.removeprefix(f"{file}: ").removesuffix(f": {file}")
    return {"kind": kind, "file": file, "message": message}


def truncation(path: str) -> str | None:
    """Why a JPEG or PNG file is cut short (OpenCV decodes those with a warning and grey rows), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - 64, 0))
            tail = fh.read()
    except OSError:
        return None
    if head[:2] == b"\xff\xd8" and not tail.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return "truncated JPEG: no end-of-image marker (the file was cut short; OpenCV fills the rest with grey)"
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "truncated PNG: no IEND chunk (the file was cut short)"
    return None


def read_checked(reader, path: str) -> tuple[object, str | None]:
    """``reader(path)`` and why the file is unreadable (None when it is fine), decoding errors included."""
    try:
        data = reader(path)
    except DataError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001  (OpenCV's own assertion, e.g. a header claiming 33000x33000)
        text = str(exc).strip().splitlines()
        return None, f"cannot decode it ({text[-1] if text else type(exc).__name__})"
    return data, truncation(path)


def check_standard_sample(dataset: BaseDataset, imageid: str) -> list[dict[str, str]]:
    """Every check on one sample read as ``BaseDataset.read`` does: image, label map, labels, sizes."""
    image_path = os.path.join(dataset.image_dir, imageid + dataset.image_ext)
    ann_path = os.path.join(dataset.ann_dir, imageid + dataset.ann_ext)
    found = []
    image, why = read_checked(read_image, image_path)
    if why:
        found.append(problem("unreadable", image_path, why))
    raw, why = read_checked(read_label_map, ann_path)
    if why:
        found.append(problem("unreadable", ann_path, why))
    if raw is None:
        return found
    try:
        dataset.remap(raw, ann_path)
    except DataError as exc:
        found.append(problem("label_out_of_range", ann_path, str(exc)))
    if image is not None and raw.shape[:2] != image.shape[:2]:
        found.append(problem(
            "size_mismatch", ann_path,
            f"label map is {raw.shape[1]}x{raw.shape[0]} but its image {image_path} is {image.shape[1]}x{image.shape[0]}",
        ))
    return found


def check_custom_sample(dataset: Any, imageid: str) -> list[dict[str, str]]:
    """One sample read through the dataset's own ``read``; its first error is classified by its message."""
    try:
        dataset.read(imageid)
    except DataError as exc:
        text = str(exc)
        kind = ("size_mismatch" if " but its image " in text
                else "label_out_of_range" if "label values" in text else "unreadable")
        return [problem(kind, imageid, text)]
    except Exception as exc:  # noqa: BLE001  (a decoder's own error: the file cannot be used)
        return [problem("unreadable", imageid, f"{type(exc).__name__}: {exc}")]
    return []


def check_dataset(dataset: Any, name: str = "", progress: Progress | None = None,
                  workers: int | None = None) -> dict[str, Any]:
    """Check every distinct image id of ``dataset`` once; return its report (problems in id order)."""
    if not hasattr(dataset, "imageids") or not callable(getattr(dataset, "read", None)):
        raise SegkitError(f"check-data cannot read {type(dataset).__name__}: it has no imageids / read()")
    ids = list(dict.fromkeys(dataset.imageids))
    standard = isinstance(dataset, BaseDataset) and type(dataset).read is BaseDataset.read
    check_one = check_standard_sample if standard else check_custom_sample
    problems: list[dict[str, str]] = []
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, found in enumerate(pool.map(lambda i: check_one(dataset, i), ids), start=1):
            problems.extend(found)
            if progress is not None:
                progress(name, done, len(ids))
    return {
        "dataset": type(dataset).__name__,
        "set": getattr(dataset, "set", ""),
        "rootdir": getattr(dataset, "rootdir", ""),
        "checked": len(ids),
        "counts": {kind: sum(p["kind"] == kind for p in problems) for kind in KINDS},
        "problems": problems,
    }


def check_recipe_data(recipe, split: str = "both", progress: Progress | None = None) -> dict[str, Any]:
    """Build the recipe's ``train`` and/or ``test`` datasets (``split``) and check each; see the module docstring."""
    from .datasets.build import build_dataset

    if split not in (*MODES, "both"):
        raise SegkitError(f"--split {split!r}: expected 'train', 'test' or 'both'")
    splits = list(MODES) if split == "both" else [split]
    reports = {}
    for name in splits:
        dataset = build_dataset(recipe.dataset.model_dump(), mode=MODES[name], seed=recipe.seed)
        reports[name] = check_dataset(dataset, name, progress)
    total = sum(len(r["problems"]) for r in reports.values())
    return {
        "recipe": getattr(recipe, "_source", ""),
        "splits": reports,
        "num_problems": total,
        "summary": summarise(reports, total),
    }


def summarise(reports: dict[str, dict], total: int) -> str:
    checked = sum(r["checked"] for r in reports.values())
    if not total:
        return f"{checked} samples read ({', '.join(reports)}): no unreadable files, size mismatches or bad labels"
    counts = {k: sum(r["counts"][k] for r in reports.values()) for k in KINDS}
    parts = [f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n]
    per_split = ", ".join(f"{name}: {len(r['problems'])}" for name, r in reports.items())
    return f"{total} problem{'s' * (total != 1)} in {checked} samples ({'; '.join(parts)}; {per_split}); see the report above"
