"""``segkit browse-data``: what the network is fed. Augmented samples of a split (after the recipe's pipeline)
with their label maps drawn over them, written as PNGs (image | labels over it, legend), no model needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .draw import legend, overlay, side_by_side, stack, upscale_small, write_png


def to_viewable(image: Any, normalize: tuple[list[float], list[float], bool] | None) -> np.ndarray:
    """A pipeline output (CHW tensor, normalised; or HWC BGR array) back to ``uint8`` RGB."""
    import torch

    if isinstance(image, torch.Tensor):
        array = image.detach().float().cpu().permute(1, 2, 0).numpy()
        if normalize is not None:
            mean, std, to_rgb = normalize
            array = array * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
            if not to_rgb:
                array = array[:, :, ::-1]
        elif array.max() <= 1.0:
            array = array * 255.0
    else:
        array = np.asarray(image, np.float32)[:, :, ::-1]  # OpenCV BGR
    return np.clip(array, 0, 255).round().astype(np.uint8)


def browse_data(recipe: str | Path, overrides: list[str] = (), *, split: str = "train", n: int = 16,
                out: str | Path = "browse", seed: int = 0) -> list[Path]:
    """Write ``n`` samples of ``split`` (``train``: augmented as in training, randomly chosen with ``seed``;
    ``test``: the first ``n``) to ``out/<index>_<id>.png``; returns the files."""
    from ..data.datasets.build import build_dataset
    from ..errors import SegkitError
    from ..export.metadata import test_normalize
    from ..recipe import load_recipe

    if split not in ("train", "test"):
        raise SegkitError(f"--split {split!r}: expected train or test")
    rec = load_recipe(recipe, list(overrides))
    dataset = build_dataset(rec.dataset.model_dump(), mode=split.upper(), seed=rec.seed)
    normalize = normalize_of(rec, split) if split == "train" else test_normalize(rec)
    classnames = list(getattr(dataset, "classnames", None) or [str(i) for i in range(rec.num_classes)])
    palette = getattr(dataset, "palette", None)
    count = min(n, len(dataset))
    if split == "train":
        indices = sorted(np.random.default_rng(seed).choice(len(dataset), size=count, replace=False).tolist())
    else:
        indices = list(range(count))
    written = []
    for index in indices:
        sample = dataset[index]
        rgb = to_viewable(sample["image"], normalize)
        target = sample["seg_target"]
        target = target.numpy() if hasattr(target, "numpy") else np.asarray(target)
        if target.shape != rgb.shape[:2]:  # a test sample: the label map stays at the original size
            import cv2

            rgb = cv2.resize(rgb, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_LINEAR)
        picture = labelled_panel(rgb, target.astype(np.int64), palette, classnames)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(sample.get("id", index)))
        written.append(write_png(Path(out) / f"{index:05d}_{name}.png", picture))
    return written


def normalize_of(rec, split: str) -> tuple[list[float], list[float], bool] | None:
    for step in rec.dataset.model_dump()[split].get("data_pipelines", []) or []:
        if step.get("type") == "Normalize":
            return [float(v) for v in step["mean"]], [float(v) for v in step["std"]], bool(step.get("to_rgb", True))
    return None


def labelled_panel(rgb: np.ndarray, target: np.ndarray, palette, classnames: list[str]) -> np.ndarray:
    """image | its labels over it, with a legend of the classes present (void is grey)."""
    import cv2

    from ..data.datasets.base import voc_palette

    palette = palette or voc_palette(len(classnames))
    big = upscale_small(rgb)
    labels = cv2.resize(target.astype(np.int32), (big.shape[1], big.shape[0]), interpolation=cv2.INTER_NEAREST)
    row = side_by_side([big, overlay(big, labels, palette, len(classnames), 0.5)], ["augmented image", "labels"])
    present = sorted(int(c) for c in np.unique(labels) if 0 <= c < len(classnames))
    return stack([row, legend(classnames, palette, present, row.shape[1])], gap=0)
