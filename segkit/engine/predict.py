"""``segkit infer``: label PNGs and colour overlays for image files and folders."""

from __future__ import annotations

from pathlib import Path

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


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Image files given directly or found (not recursively) in the given folders."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise SegkitError(f"{item}: no images ({', '.join(sorted(IMAGE_EXTS))}) in this folder")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise SegkitError(f"{item}: no such file or folder")
    return files


def recipe_palette(rec: Recipe) -> np.ndarray:
    """RGB palette: the recipe's ``dataset.palette``, else the dataset class's, else the VOC bit palette."""
    palette = rec.dataset.model_extra.get("palette") if rec.dataset.model_extra else None
    if palette is None:
        palette = getattr(DATASETS.get(rec.dataset.type, path="dataset.type"), "palette", None)
    if palette is None or len(palette) < rec.num_classes:
        return np.asarray(voc_palette(rec.num_classes), dtype=np.uint8)
    return np.asarray(palette, dtype=np.uint8)[:, :3]


def encode_png(array: np.ndarray, path: Path) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise SegkitError(f"cannot encode {path}")
    atomic_write_bytes(path, lambda fh: fh.write(buf.tobytes()))


@torch.no_grad()
def run_inference(rec: Recipe, model: nn.Module, inputs: list[str | Path], out_dir: Path, *,
                  device: torch.device, tta: str | None = None, alpha: float = 0.5) -> list[dict]:
    """Predict every image at its own resolution; returns one record per image written."""
    from ..data.transforms import build_pipeline
    from ..evaluation.inference import predict_logits, tta_preset

    files = collect_images(inputs)
    pipeline = build_pipeline(rec.dataset.test.get("data_pipelines", []), path="dataset.test.data_pipelines")
    kwargs = inference_kwargs(rec.inference, rec.num_classes, rec.align_corners)
    if tta:
        kwargs.update(tta_preset(tta))
    palette_bgr = recipe_palette(rec)[:, ::-1]
    rng = np.random.default_rng(rec.seed)
    records = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{path}: cannot read this image (missing, corrupt or not an image)")
        h, w = image.shape[:2]
        sample = pipeline({"image": image, "width": w, "height": h, "id": path.stem}, rng)
        batch = sample["image"].unsqueeze(0).to(device)
        labels = predict_logits(model, batch, output_size=(h, w), **kwargs).argmax(1)[0].cpu().numpy()
        label_img = labels.astype(np.uint8 if rec.num_classes <= 256 else np.uint16)
        overlay = ((1 - alpha) * image + alpha * palette_bgr[labels]).astype(np.uint8)
        out_dir.mkdir(parents=True, exist_ok=True)
        encode_png(label_img, out_dir / f"{path.stem}.png")
        encode_png(overlay, out_dir / f"{path.stem}_overlay.png")
        counts = np.bincount(labels.ravel(), minlength=rec.num_classes)
        records.append({"image": str(path), "labels": str(out_dir / f"{path.stem}.png"),
                        "overlay": str(out_dir / f"{path.stem}_overlay.png"),
                        "classes_present": [int(c) for c in np.nonzero(counts)[0]]})
    return records
