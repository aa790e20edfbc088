"""Predicting label maps: :class:`Segmenter` (``segkit.load(...)``, for notebooks and scripts) and
:func:`run_inference` (``segkit infer``: palette PNGs, overlays with a class legend, optional side-by-side
panels, the input folders' structure kept, ``predictions.jsonl``).

Every prediction goes through the recipe's test pipeline and its inference settings (whole or slide, TTA), as
``segkit eval`` does, and comes back at the input's own size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ..data.datasets.base import voc_palette
from ..errors import DataError, SegkitError
from ..recipe.schema import Recipe
from ..registry import DATASETS
from .checkpoint import atomic_write_bytes
from .evaluator import inference_kwargs

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
LEGEND_MIN_WIDTH = 200
"""Overlays of narrower images get a legend this wide (the picture padded with white), so names stay readable."""


# ---------------------------------------------------------------------- classes and colours
def recipe_palette(rec: Recipe) -> np.ndarray:
    """RGB palette: the recipe's ``dataset.palette``, else the dataset class's, else the VOC bit palette."""
    palette = rec.dataset.model_extra.get("palette") if rec.dataset.model_extra else None
    if palette is None:
        palette = getattr(DATASETS.get(rec.dataset.type, path="dataset.type"), "palette", None)
    if palette is None or len(palette) < rec.num_classes:
        return np.asarray(voc_palette(rec.num_classes), dtype=np.uint8)
    return np.asarray(palette, dtype=np.uint8)[:, :3]


def recipe_classnames(rec: Recipe) -> list[str]:
    """Class names: the recipe's ``dataset.classnames``, else the dataset class's, else ``"0"``, ``"1"``, ..."""
    names = rec.dataset.model_extra.get("classnames") if rec.dataset.model_extra else None
    if names is None:
        names = getattr(DATASETS.get(rec.dataset.type, path="dataset.type"), "classnames", None)
    if names is None or len(names) != rec.num_classes:
        return [str(i) for i in range(rec.num_classes)]
    return [str(n) for n in names]


# ---------------------------------------------------------------------- inputs
def to_bgr(image: Any, *, bgr: bool = False) -> np.ndarray:
    """An image as the pipeline reads it (``uint8`` HxWx3 BGR, like ``cv2.imread``).

    Accepts a path, a PIL image, or an array: ``HxWx3`` RGB (as PIL, matplotlib and imageio give it; ``bgr=True``
    for OpenCV's order), ``HxWx4`` (alpha dropped), ``HxW`` greyscale; ``uint8``, or floats in ``[0, 1]``.
    """
    if isinstance(image, (str, Path)):
        from ..data.datasets.base import imread_or_none  # OpenCV's assertions as DataError

        array = imread_or_none(str(image), cv2.IMREAD_COLOR)
        if array is None:
            raise DataError(f"{image}: cannot read this image (missing, corrupt or not an image)")
        return array
    if type(image).__module__.startswith("PIL."):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    if isinstance(image, torch.Tensor):
        raise SegkitError("give a numpy array, a PIL image or a path (HxWx3), not a tensor")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise SegkitError(f"expected an HxWx3 image (or HxW, HxWx4), got an array of shape {array.shape}")
    array = array[:, :, :3]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and float(np.nanmax(array)) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array.astype(np.float64)), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(array if bgr else array[:, :, ::-1])


# ---------------------------------------------------------------------- the notebook predictor
class Segmenter:
    """A trained segmentor ready to predict: ``seg = segkit.load("runs/quickstart"); seg.predict(image)``.

    ``predict`` takes a path, a PIL image, an RGB array or a list of them and returns ``int64`` label maps at
    each input's size. ``overlay`` draws a prediction over the image with a legend. ``classnames``,
    ``palette`` (RGB rows), ``num_classes`` describe the classes; ``recipe`` and ``model`` are the pieces.
    """

    def __init__(self, recipe: Recipe, model: nn.Module, device: torch.device | str = "cpu",
                 tta: str | None = None, checkpoint: str | Path | None = None) -> None:
        from ..data.transforms import build_pipeline
        from ..evaluation.inference import tta_preset

        self.recipe, self.model, self.device = recipe, model.eval(), torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.pipeline = build_pipeline(recipe.dataset.test.get("data_pipelines", []),
                                       path="dataset.test.data_pipelines")
        self.infer_kwargs = inference_kwargs(recipe.inference, recipe.num_classes, recipe.align_corners)
        if tta:
            self.infer_kwargs.update(tta_preset(tta))
        self.classnames = recipe_classnames(recipe)
        self.palette = recipe_palette(recipe)
        self.num_classes = recipe.num_classes
        self._rng = np.random.default_rng(recipe.seed)

    def __repr__(self) -> str:
        source = f", checkpoint={str(self.checkpoint)!r}" if self.checkpoint else ""
        return f"Segmenter({self.recipe.type}, {self.num_classes} classes, device={self.device}{source})"

    @torch.no_grad()
    def logits(self, image: Any, *, bgr: bool = False) -> torch.Tensor:
        """``(num_classes, H, W)`` averaged logits (probabilities with ``use_probs_before_resize``) at the
        input's size, on the model's device."""
        from ..evaluation.inference import predict_logits

        array = to_bgr(image, bgr=bgr)
        height, width = array.shape[:2]
        sample = self.pipeline({"image": array, "width": width, "height": height, "id": "input"}, self._rng)
        batch = sample["image"].unsqueeze(0).to(self.device)
        return predict_logits(self.model, batch, output_size=(height, width), **self.infer_kwargs)[0]

    def predict(self, images: Any, *, bgr: bool = False) -> np.ndarray | list[np.ndarray]:
        """Label maps (``int64``, HxW, the input's size) for one image or a list of them."""
        if isinstance(images, (list, tuple)):
            return [self.predict(image, bgr=bgr) for image in images]
        return self.logits(images, bgr=bgr).argmax(0).cpu().numpy()

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """The label map in the palette's colours (RGB)."""
        from ..viz.draw import colorize

        return colorize(labels, self.palette, self.num_classes)

    def overlay(self, image: Any, labels: np.ndarray | None = None, *, alpha: float = 0.5, legend: bool = True,
                bgr: bool = False) -> np.ndarray:
        """``image`` (RGB) with its prediction (or ``labels``) drawn over it and, below, a legend of the classes
        present (images narrower than 200 pixels are padded on the right for it)."""
        from ..viz.draw import legend as draw_legend
        from ..viz.draw import overlay, stack

        rgb = to_bgr(image, bgr=bgr)[:, :, ::-1]
        labels = self.predict(image, bgr=bgr) if labels is None else np.asarray(labels)
        picture = overlay(rgb, labels, self.palette, self.num_classes, alpha)
        if not legend:
            return picture
        present = [int(c) for c in np.unique(labels) if 0 <= c < self.num_classes]
        width = max(picture.shape[1], LEGEND_MIN_WIDTH)
        return stack([picture, draw_legend(self.classnames, self.palette, present, width)], gap=0)


def load_segmenter(target: str | Path, checkpoint: str | Path | None = None, *, overrides: Sequence[str] = (),
                   device: str | None = None, tta: str | None = None, ema: bool = False) -> Segmenter:
    """A :class:`Segmenter` from a run dir (its recipe and best, else last, checkpoint) or a recipe plus a
    checkpoint."""
    from ..api import load_model, pick_device, resolve_run

    rec, ckpt = resolve_run(target, checkpoint, list(overrides))
    dev = pick_device(device)
    model = load_model(rec, ckpt, dev, ema=ema)
    from .accel import apply_speed_settings

    apply_speed_settings(model, rec)  # the recipe's channels_last / compile_cfg, as in eval
    return Segmenter(rec, model, dev, tta=tta, checkpoint=ckpt)


# ---------------------------------------------------------------------- segkit infer
def collect_images(inputs: list[str | Path]) -> list[tuple[Path, Path]]:
    """``(file, output path without suffix)`` for image files given directly (``<stem>``) or found recursively
    in the given folders (their relative path, under the folder's name when several folders are given)."""
    items: list[tuple[Path, Path]] = []
    folders = [Path(i) for i in inputs if Path(i).is_dir()]
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(item).parts))
            if not found:
                raise SegkitError(f"{item}: no images ({', '.join(sorted(IMAGE_EXTS))}) in this folder")
            prefix = Path(item.resolve().name) if len(folders) > 1 else Path()
            items += [(p, prefix / p.relative_to(item).with_suffix("")) for p in found]
        elif item.is_file():
            items.append((item, Path(item.stem)))
        else:
            raise SegkitError(f"{item}: no such file or folder")
    seen: dict[Path, Path] = {}
    for source, rel in items:
        if rel in seen:
            raise SegkitError(f"{source} and {seen[rel]} would both be written as {rel}.png; give them in "
                              "separate runs or rename one")
        seen[rel] = source
    return items


def encode_png(array: np.ndarray, path: Path) -> None:
    """Write an OpenCV (BGR or single-channel) array as PNG, atomically."""
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise SegkitError(f"cannot encode {path}")
    atomic_write_bytes(path, lambda fh: fh.write(buf.tobytes()))


def run_inference(rec: Recipe, model: nn.Module, inputs: list[str | Path], out_dir: Path, *,
                  device: torch.device, tta: str | None = None, alpha: float = 0.5, side_by_side: bool = False,
                  gt_dir: str | Path | None = None, on_image=None) -> list[dict]:
    """Predict every image at its own resolution and write, under ``out_dir`` (input folders' structure kept):
    ``<name>.png`` (palette PNG: pixel values are the class ids, viewers show the colours), ``<name>_overlay.png``
    (prediction over the image, legend below), with ``side_by_side`` ``<name>_side.png`` (image | prediction
    [| ground truth from ``gt_dir/<name>.png``]) and ``predictions.jsonl`` (one line per image). Returns the
    records of ``predictions.jsonl``."""
    from ..viz.draw import legend, overlay, sample_panel, stack, write_png

    segmenter = Segmenter(rec, model, device, tta=tta)
    names, palette, k = segmenter.classnames, segmenter.palette, rec.num_classes
    records = []
    for path, rel in collect_images(inputs):
        image = to_bgr(path)
        labels = segmenter.predict(image, bgr=True)
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        base = out_dir / rel
        label_path, overlay_path = base.parent / f"{base.name}.png", base.parent / f"{base.name}_overlay.png"
        write_png(label_path, labels, palette=palette, num_classes=k)
        present = [int(c) for c in np.unique(labels) if 0 <= c < k]
        picture = overlay(rgb, labels, palette, k, alpha)
        width = max(picture.shape[1], LEGEND_MIN_WIDTH)
        write_png(overlay_path, stack([picture, legend(names, palette, present, width)], gap=0))
        record: dict[str, Any] = {"image": str(path), "labels": str(label_path), "overlay": str(overlay_path),
                                  "height": int(labels.shape[0]), "width": int(labels.shape[1])}
        if side_by_side:
            target = read_ground_truth(Path(gt_dir) / f"{rel}.png", labels.shape) if gt_dir else None
            panel = sample_panel(rgb, labels, palette, names, target=target, alpha=alpha)
            side_path = base.parent / f"{base.name}_side.png"
            write_png(side_path, panel)
            record["side_by_side"] = str(side_path)
        counts = np.bincount(labels.ravel(), minlength=k)
        record["classes_present"] = [names[c] for c in present]
        record["class_ids"] = present
        record["pixel_fraction"] = {names[c]: round(float(counts[c]) / labels.size, 6) for c in present}
        records.append(record)
        if on_image is not None:
            on_image(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write_bytes(out_dir / "predictions.jsonl", lambda fh: fh.write(text.encode()))
    return records


def read_ground_truth(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """A ground-truth label map for the side-by-side panel, if ``path`` exists and has the prediction's size."""
    from ..data.datasets.base import read_label_map

    if not path.is_file():
        return None
    target = read_label_map(str(path))
    if target.shape[:2] != tuple(shape):
        raise DataError(f"{path}: ground truth is {target.shape[1]}x{target.shape[0]}, the image "
                        f"{shape[1]}x{shape[0]}")
    return target.astype(np.int64)
