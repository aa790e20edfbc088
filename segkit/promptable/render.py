"""Writing what ``segkit infer --model`` found for one image: id map, mask PNGs, overlay and JSON (atomically)."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np

from .amg_utils import rle_to_mask


def mask_colours(count: int) -> np.ndarray:
    """``count`` distinct, saturated RGB colours (golden-ratio steps around the hue circle)."""
    hues = (np.arange(count) * 0.618033988749895 + 0.1) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.85, 1.0) for h in hues]).reshape(-1, 3) * 255


def overlay(image: np.ndarray, masks: list[np.ndarray], prompts: list[dict | None], alpha: float) -> np.ndarray:
    """The image with each mask blended in its colour (larger masks first), outlines, and the prompts: points as
    discs (green foreground, red background), boxes as yellow rectangles."""
    import cv2

    canvas = image.astype(np.float32)
    colours = mask_colours(len(masks))
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for index in order:
        canvas[masks[index]] = canvas[masks[index]] * (1 - alpha) + colours[index] * alpha
    canvas = canvas.clip(0, 255).astype(np.uint8)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for index in order:
        contours, _ = cv2.findContours(masks[index].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, tuple(int(c) for c in colours[index] * 0.6), thickness)
    radius = max(3, round(max(image.shape[:2]) / 120))
    for prompt in prompts:
        if not prompt:
            continue
        if "box" in prompt:
            x0, y0, x1, y1 = (round(v) for v in prompt["box"])
            cv2.rectangle(canvas, (x0, y0), (x1, y1), (255, 220, 0), thickness + 1)
        for (x, y), label in zip(prompt.get("points", []), prompt.get("labels", [1] * len(prompt.get("points", []))),
                                 strict=True):
            centre = (round(x), round(y))
            cv2.circle(canvas, centre, radius + 1, (255, 255, 255), -1)
            cv2.circle(canvas, centre, radius, (0, 200, 0) if label == 1 else (230, 0, 0), -1)
    return canvas


LEGEND_ENTRIES = 30
"""At most this many masks are named in an overlay's legend (automatic masks can be hundreds); the rest are
counted in a last entry."""


def legend_names(records: list[dict], noun: str) -> list[str]:
    """One legend label per mask: its id (as in the ids PNG and the JSON), its predicted IoU when there is one, and
    "absent" for an empty mask (a tracked object that is not in the frame)."""
    names = []
    for index, record in enumerate(records):
        name = f"{noun} {index + 1}"
        if record.get("predicted_iou") is not None:
            name += f" iou {record['predicted_iou']:.2f}"
        if not record["area"]:
            name += " absent"
        names.append(name)
    return names


def with_legend(picture: np.ndarray, records: list[dict], noun: str) -> np.ndarray:
    """``picture`` with a white strip below naming each mask's colour (see :func:`legend_names`)."""
    from ..viz.draw import legend, stack

    names = legend_names(records, noun)
    colours = mask_colours(len(records))
    shown = list(range(min(len(names), LEGEND_ENTRIES)))
    if len(names) > LEGEND_ENTRIES:
        names = names[:LEGEND_ENTRIES] + [f"+{len(records) - LEGEND_ENTRIES} more"]
        shown.append(LEGEND_ENTRIES)  # no colour of its own: drawn grey
        colours = colours[:LEGEND_ENTRIES]
    if not names:
        names, shown = ["no masks"], [0]
        colours = colours[:0]
    return stack([picture, legend(names, colours, shown, picture.shape[1])], gap=0)


def encode_rle(rle: dict) -> tuple[dict, str]:
    """COCO's compressed RLE when pycocotools is installed, else the uncompressed one."""
    try:
        import pycocotools  # noqa: F401

        from .amg_utils import coco_encode_rle
    except ImportError:
        return rle, "uncompressed"
    return coco_encode_rle(rle), "coco"


def write_outputs(out: Path, name: Path, image: np.ndarray, records: list[dict], model_name: str, alpha: float,
                  individual: bool, noun: str = "mask") -> dict:
    """Write the ids PNG, the mask PNGs (``individual``), the overlay (the image's size, then the legend strip
    naming each ``noun`` by its id) and the JSON of one image; returns its summary line."""
    import cv2

    from .cli import write_atomic

    base = out / name.parent / name.stem
    masks, entries = [], []
    for index, record in enumerate(records):
        segmentation = record["segmentation"]
        rle = record.get("rle") or segmentation
        mask = rle_to_mask(segmentation) if isinstance(segmentation, dict) else np.asarray(segmentation, bool)
        masks.append(mask)
        encoded, rle_format = encode_rle(rle)
        entries.append({"id": index + 1, "score": record["predicted_iou"], "stability_score":
                        record.get("stability_score"), "bbox": [int(v) for v in record["bbox"]],
                        "area": int(record["area"]), "prompt": record.get("prompt"),
                        "point_coords": record.get("point_coords"), "rle_format": rle_format, "rle": encoded})
    ids = np.zeros(image.shape[:2], np.uint16)
    for index in sorted(range(len(masks)), key=lambda i: -int(masks[i].sum())):
        ids[masks[index]] = index + 1
    files = {"ids": f"{base.name}_masks.png", "overlay": f"{base.name}_overlay.png", "json": f"{base.name}.json"}
    write_atomic(base.with_name(files["ids"]), cv2.imencode(".png", ids)[1].tobytes())
    if individual:
        for index, mask in enumerate(masks):
            write_atomic(base.with_name(f"{base.name}_mask_{index + 1}.png"),
                         cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes())
    picture = with_legend(overlay(image, masks, [r.get("prompt") for r in records], alpha), records, noun)
    write_atomic(base.with_name(files["overlay"]), cv2.imencode(".png", picture[..., ::-1])[1].tobytes())
    summary = {"image": name.as_posix(), "model": model_name, "height": image.shape[0], "width": image.shape[1],
               "masks": entries}
    write_atomic(base.with_name(files["json"]), json.dumps(summary, indent=1).encode())
    return {"image": name.as_posix(), "masks": len(entries), "files": {k: str(base.with_name(v))
                                                                      for k, v in files.items()}}
