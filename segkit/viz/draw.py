"""Drawing label maps for people: colours from the dataset palette, overlays, a class legend, panels.

Images here are ``uint8`` RGB arrays (``H x W x 3``); OpenCV's BGR is converted where files are read. PNGs are
written through Pillow: label maps as palette ("P" mode) PNGs, so the pixel values stay the class ids while any
image viewer shows the colours.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..engine.checkpoint import atomic_write_bytes

Palette = Sequence[Sequence[int]]


def palette_array(palette: Palette, num_classes: int) -> np.ndarray:
    """``(256, 3)`` uint8 RGB lookup table: the palette's colours, then grey for ids without one (void)."""
    table = np.full((256, 3), 128, dtype=np.uint8)
    colours = np.asarray(palette, dtype=np.int64)[:num_classes, :3].clip(0, 255).astype(np.uint8)
    table[: len(colours)] = colours
    return table


def colorize(labels: np.ndarray, palette: Palette, num_classes: int) -> np.ndarray:
    """RGB picture of a label map; void or out-of-range ids (e.g. 255, -1) are grey."""
    table = palette_array(palette, num_classes)
    ids = np.asarray(labels, dtype=np.int64)
    ids = np.where((ids >= 0) & (ids < num_classes), ids, 255)
    return table[ids]


def overlay(image: np.ndarray, labels: np.ndarray, palette: Palette, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """The colour label map blended over ``image`` (RGB) with opacity ``alpha``."""
    colours = colorize(labels, palette, num_classes).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return blended.round().clip(0, 255).astype(np.uint8)


def text_colour(rgb: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``rgb``."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def legend(classnames: Sequence[str], palette: Palette, class_ids: Sequence[int], width: int,
           row_height: int = 18) -> np.ndarray:
    """A white strip ``width`` pixels wide listing ``class_ids`` as colour swatches with their names, wrapped
    onto as many rows as needed."""
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    items = []
    for cid in class_ids:
        name = classnames[cid] if cid < len(classnames) else str(cid)
        (tw, _), _ = cv2.getTextSize(name, font, scale, thickness)
        items.append((cid, name, row_height + 4 + tw + 12))
    rows: list[list[tuple[int, str, int]]] = [[]]
    used = 4
    for item in items:
        if rows[-1] and used + item[2] > width:
            rows.append([])
            used = 4
        rows[-1].append(item)
        used += item[2]
    strip = np.full((row_height * len(rows) + 4, width, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        x, y = 4, 2 + r * row_height
        for cid, name, item_width in row:
            colour = tuple(int(c) for c in palette[cid][:3]) if cid < len(palette) else (128, 128, 128)
            cv2.rectangle(strip, (x, y + 2), (x + row_height - 4, y + row_height - 2), colour, -1)
            cv2.rectangle(strip, (x, y + 2), (x + row_height - 4, y + row_height - 2), (80, 80, 80), 1)
            cv2.putText(strip, name, (x + row_height, y + row_height - 5), font, scale, (0, 0, 0), thickness,
                        cv2.LINE_AA)
            x += item_width
    return strip


def titled(image: np.ndarray, title: str, height: int = 18) -> np.ndarray:
    """``image`` with a white title bar on top."""
    bar = np.full((height, image.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(bar, title, (4, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def side_by_side(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, gap: int = 4) -> np.ndarray:
    """RGB images of the same height next to each other, with titles, separated by white gaps."""
    parts: list[np.ndarray] = []
    for i, image in enumerate(images):
        if titles is not None:
            image = titled(image, titles[i])
        if parts:
            parts.append(np.full((image.shape[0], gap, 3), 255, dtype=np.uint8))
        parts.append(image)
    return np.concatenate(parts, axis=1)


def stack(rows: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Pictures on top of each other (padded with white to the widest)."""
    width = max(r.shape[1] for r in rows)
    parts: list[np.ndarray] = []
    for row in rows:
        if parts:
            parts.append(np.full((gap, width, 3), 255, dtype=np.uint8))
        pad = width - row.shape[1]
        parts.append(np.pad(row, ((0, 0), (0, pad), (0, 0)), constant_values=255) if pad else row)
    return np.concatenate(parts, axis=0)


def upscale_small(image: np.ndarray, min_side: int = 192, nearest: bool = False) -> np.ndarray:
    """Enlarge tiny images (e.g. 48x48 samples) so that titles and legends fit; large ones are returned as is."""
    h, w = image.shape[:2]
    if min(h, w) >= min_side:
        return image
    factor = int(np.ceil(min_side / min(h, w)))
    return cv2.resize(image, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def sample_panel(image: np.ndarray, labels: np.ndarray, palette: Palette, classnames: Sequence[str],
                 target: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """image | ground truth | prediction (ground truth left out when unknown), with a legend of the classes
    that appear; tiny images are enlarged first."""
    num_classes = len(classnames)
    image = upscale_small(image)
    size = (image.shape[1], image.shape[0])

    def enlarge(label_map: np.ndarray) -> np.ndarray:
        return cv2.resize(label_map.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)

    labels_big = enlarge(labels)
    panels, titles = [image], ["image"]
    present = set(np.unique(labels_big).tolist())
    if target is not None:
        target_big = enlarge(target)
        panels.append(overlay(image, target_big, palette, num_classes, alpha))
        titles.append("ground truth")
        present |= set(np.unique(target_big).tolist())
    panels.append(overlay(image, labels_big, palette, num_classes, alpha))
    titles.append("prediction")
    row = side_by_side(panels, titles)
    ids = sorted(c for c in present if 0 <= c < num_classes)
    return stack([row, legend(classnames, palette, ids, row.shape[1])], gap=0)


def encode_png(image: np.ndarray, palette: Palette | None = None, num_classes: int = 0) -> bytes:
    """PNG bytes of an RGB image, or of a label map as a palette PNG when ``palette`` is given (ids kept; maps
    with more than 256 classes are written as 16-bit greyscale)."""
    from PIL import Image

    if palette is not None:
        if image.max(initial=0) > 255 or image.min(initial=0) < 0:
            pil = Image.fromarray(image.astype(np.uint16))
        else:
            ids = np.ascontiguousarray(image, dtype=np.uint8)
            pil = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.tobytes())
            pil.putpalette(palette_array(palette, num_classes).ravel().tolist())
    else:
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def write_png(path: Path, image: np.ndarray, palette: Palette | None = None, num_classes: int = 0) -> Path:
    """Write :func:`encode_png` atomically; returns ``path``."""
    data = encode_png(image, palette, num_classes)
    atomic_write_bytes(Path(path), lambda fh: fh.write(data))
    return Path(path)


def read_rgb(path: str | Path) -> np.ndarray | None:
    """An image file as RGB, or ``None`` when it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else np.ascontiguousarray(bgr[:, :, ::-1])
