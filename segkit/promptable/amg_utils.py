"""Building blocks of the automatic mask generator: point grids, crops, run-length encodings, stability scores,
mask boxes and small-region clean-up (OpenCV connected components, on the CPU)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import torch


class MaskRecords:
    """Columns of per-mask values (tensors, arrays or lists of equal length) filtered and concatenated together."""

    def __init__(self, **columns) -> None:
        self.columns: dict[str, object] = dict(columns)

    def __getitem__(self, key: str):
        return self.columns[key]

    def __setitem__(self, key: str, value) -> None:
        self.columns[key] = value

    def __delitem__(self, key: str) -> None:
        del self.columns[key]

    def __contains__(self, key: str) -> bool:
        return key in self.columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def filter(self, keep: torch.Tensor) -> None:
        """Keep the rows selected by a boolean mask or an index tensor."""
        keep = torch.as_tensor(keep)
        indices = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
        for key, value in self.columns.items():
            if isinstance(value, torch.Tensor):
                self.columns[key] = value[indices.to(value.device)]
            elif isinstance(value, np.ndarray):
                self.columns[key] = value[indices.cpu().numpy()]
            else:
                self.columns[key] = [value[i] for i in indices.tolist()]

    def extend(self, other: MaskRecords) -> None:
        for key, value in other.columns.items():
            mine = self.columns.get(key)
            if mine is None:
                self.columns[key] = value
            elif isinstance(value, torch.Tensor):
                self.columns[key] = torch.cat([mine, value])
            elif isinstance(value, np.ndarray):
                self.columns[key] = np.concatenate([mine, value])
            else:
                self.columns[key] = list(mine) + list(value)

    def to_numpy(self) -> None:
        self.columns = {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in self.columns.items()}


def batches(batch_size: int, *arrays) -> Iterator[list]:
    """Consecutive slices of ``batch_size`` rows of equal-length arrays."""
    length = len(arrays[0])
    if any(len(a) != length for a in arrays):
        raise ValueError("batched arrays must have the same length")
    for start in range(0, length, batch_size):
        yield [a[start:start + batch_size] for a in arrays]


def point_grid(n_per_side: int) -> np.ndarray:
    """``n_per_side ** 2`` (x, y) points in [0, 1] at the centres of a regular grid, rows of x varying fastest."""
    offset = 1 / (2 * n_per_side)
    centres = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One grid per crop layer, ``downscale`` times sparser per layer."""
    return [point_grid(int(n_per_side / downscale ** layer)) for layer in range(n_layers + 1)]


def crop_boxes(image_size: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """The whole image, then for layer ``i`` a ``2^i x 2^i`` grid of overlapping crops (x0, y0, x1, y1)."""
    height, width = image_size
    boxes, layers = [[0, 0, width, height]], [0]
    for layer in range(1, n_layers + 1):
        per_side = 2 ** layer
        overlap = int(overlap_ratio * min(height, width) * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        x0s = [int((crop_w - overlap) * i) for i in range(per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in itertools.product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)])
            layers.append(layer)
    return boxes, layers


def uncrop_boxes(boxes: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    x0, y0 = crop_box[:2]
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    return points + torch.tensor([crop_box[0], crop_box[1]], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: list[int], height: int, width: int) -> torch.Tensor:
    """Masks of a crop -> masks of the whole image (zero-padded)."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return masks
    return torch.nn.functional.pad(masks, (x0, width - x1, y0, height - y1), value=0)


def box_near_crop_edge(boxes: torch.Tensor, crop_box: list[int], image_box: list[int],
                       atol: float = 20.0) -> torch.Tensor:
    """Whether each box (crop frame) lies within ``atol`` of a crop edge that is not an image edge."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    image = torch.as_tensor(image_box, dtype=torch.float32, device=boxes.device)
    boxes = uncrop_boxes(boxes, crop_box).float()
    near_crop = torch.isclose(boxes, crop[None], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, image[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def xyxy_to_xywh(box) -> list:
    x0, y0, x1, y1 = (v.item() if hasattr(v, "item") else v for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight (x0, y0, x1, y1) boxes (inclusive pixel indices) of boolean masks ``[..., H, W]``; empty -> zeros."""
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, device=masks.device)
    height, width = masks.shape[-2:]
    flat = masks.reshape(-1, height, width)
    rows, cols = flat.any(dim=2), flat.any(dim=1)
    row_ids = torch.arange(height, device=masks.device)
    col_ids = torch.arange(width, device=masks.device)
    bottom = (rows * row_ids).amax(dim=1)
    top = torch.where(rows, row_ids, height).amin(dim=1)
    right = (cols * col_ids).amax(dim=1)
    left = torch.where(cols, col_ids, width).amin(dim=1)
    boxes = torch.stack([left, top, right, bottom], dim=1)
    empty = (right < left) | (bottom < top)
    boxes = boxes * (~empty)[:, None]
    return boxes.reshape(*masks.shape[:-2], 4)


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at ``threshold + offset`` and ``threshold - offset`` (the first lies
    inside the second, so it is a ratio of pixel counts)."""
    inner = (logits > threshold + offset).sum(dim=(-1, -2), dtype=torch.int32)
    outer = (logits > threshold - offset).sum(dim=(-1, -2), dtype=torch.int32)
    return inner / outer


def masks_to_rle(masks: torch.Tensor) -> list[dict]:
    """Boolean masks ``[B, H, W]`` -> uncompressed RLEs (column-major runs, starting with a run of zeros)."""
    batch, height, width = masks.shape
    flat = masks.permute(0, 2, 1).flatten(1)
    changes = (flat[:, 1:] ^ flat[:, :-1]).nonzero()
    records = []
    for index in range(batch):
        cuts = changes[changes[:, 0] == index, 1] + 1
        bounds = torch.cat([cuts.new_zeros(1), cuts, cuts.new_full((1,), height * width)])
        counts = ([0] if bool(flat[index, 0]) else []) + (bounds[1:] - bounds[:-1]).tolist()
        records.append({"size": [height, width], "counts": counts})
    return records


def rle_to_mask(rle: dict) -> np.ndarray:
    """An uncompressed RLE -> a boolean ``[H, W]`` mask."""
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    return flat.reshape(width, height).T


def area_from_rle(rle: dict) -> int:
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(rle: dict) -> dict:
    """An uncompressed RLE -> COCO's compressed RLE (``counts`` a string), through pycocotools."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError:  # pragma: no cover - exercised where pycocotools is absent
        from ..errors import SegkitError
        raise SegkitError("output_mode 'coco_rle' needs pycocotools: pip install 'segkit[coco]'") from None
    height, width = rle["size"]
    encoded = mask_utils.frPyObjects(rle, height, width)
    encoded["counts"] = encoded["counts"].decode("utf-8")
    return encoded


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode='holes'``) or drop islands (``'islands'``) smaller than ``area_thresh`` pixels
    (8-connectivity). Returns the mask and whether it changed; when every island is small the largest is kept."""
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = (holes ^ mask).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(working, 8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = [i + 1 for i, size in enumerate(sizes) if size < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(count) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(labels, fill), True
