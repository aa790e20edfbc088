"""The automatic mask generator: its building blocks against direct computations, and its output's invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from segkit.promptable.amg_utils import (
    area_from_rle,
    crop_boxes,
    layer_point_grids,
    masks_to_boxes,
    masks_to_rle,
    point_grid,
    remove_small_regions,
    rle_to_mask,
    stability_score,
)
from segkit.promptable.automatic import AutomaticMaskGenerator
from segkit.promptable.predictor import SamPredictor
from segkit.promptable.sam import ImageEmbedding, Sam


def naive_rle(mask: np.ndarray) -> list[int]:
    """Runs of the column-major flattening, starting with the count of zeros."""
    flat = mask.T.reshape(-1)
    counts, current, run = [], False, 0
    for value in flat:
        if bool(value) != current:
            counts.append(run)
            current, run = bool(value), 0
        run += 1
    return counts + [run]


def test_rle_round_trip_and_area_match_a_direct_encoding():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 7, 9)) > 0.6
    masks[1] = True
    masks[2] = False
    rles = masks_to_rle(torch.as_tensor(masks))
    for mask, rle in zip(masks, rles, strict=True):
        assert rle["size"] == [7, 9]
        assert rle["counts"] == naive_rle(mask)
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
        assert area_from_rle(rle) == mask.sum()


def test_coco_rle_decodes_to_the_same_mask():
    mask_utils = pytest.importorskip("pycocotools.mask", reason="pycocotools is the optional 'coco' extra")
    from segkit.promptable.amg_utils import coco_encode_rle

    mask = np.zeros((6, 5), bool)
    mask[1:4, 2:5] = True
    encoded = coco_encode_rle(masks_to_rle(torch.as_tensor(mask[None]))[0])
    assert isinstance(encoded["counts"], str)
    np.testing.assert_array_equal(mask_utils.decode({**encoded, "counts": encoded["counts"].encode()}), mask)


def test_boxes_and_stability_scores_match_direct_computations():
    rng = np.random.default_rng(1)
    masks = rng.random((5, 12, 10)) > 0.85
    masks[3] = False
    boxes = masks_to_boxes(torch.as_tensor(masks)).numpy()
    for mask, box in zip(masks, boxes, strict=True):
        ys, xs = np.nonzero(mask)
        expected = [0, 0, 0, 0] if len(xs) == 0 else [xs.min(), ys.min(), xs.max(), ys.max()]
        np.testing.assert_array_equal(box, expected)
    logits = torch.randn(3, 8, 8) * 3
    expected = [((m > 1.5).sum() / (m > -0.5).sum()).item() for m in logits]
    np.testing.assert_allclose(stability_score(logits, 0.5, 1.0).numpy(), expected, rtol=1e-6)


def test_point_grids_and_crop_boxes():
    grid = point_grid(4)
    assert grid.shape == (16, 2)
    np.testing.assert_allclose(grid[:4], [[0.125, 0.125], [0.375, 0.125], [0.625, 0.125], [0.875, 0.125]])
    assert [len(g) for g in layer_point_grids(8, 2, 2)] == [64, 16, 4]
    boxes, layers = crop_boxes((100, 200), 1, 0.5)
    assert layers == [0, 1, 1, 1, 1]
    overlap = int(0.5 * 100 * (2 / 2))  # 50 px at layer 1
    width, height = -(-(overlap + 200) // 2), -(-(overlap + 100) // 2)  # 125 x 75 crops
    assert boxes[0] == [0, 0, 200, 100]
    assert boxes[1:] == [[0, 0, width, height], [0, height - overlap, width, 100],
                         [width - overlap, 0, 200, height], [width - overlap, height - overlap, 200, 100]]


def test_remove_small_regions_fills_holes_and_drops_islands():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a 1-pixel hole
    mask[16:18, 16:18] = True  # a 4-pixel island
    filled, changed = remove_small_regions(mask, 3, "holes")
    assert changed and filled[5, 5] and filled[16:18, 16:18].all()
    cleaned, changed = remove_small_regions(filled, 5, "islands")
    assert changed and not cleaned[16:18, 16:18].any() and cleaned[2:12, 2:12].all()
    same, changed = remove_small_regions(cleaned, 5, "islands")
    assert not changed and (same == cleaned).all()
    tiny = np.zeros((10, 10), bool)
    tiny[1, 1] = tiny[5:7, 5:7] = True  # every island small: the largest stays
    kept, _ = remove_small_regions(tiny, 50, "islands")
    assert kept[5:7, 5:7].all() and not kept[1, 1]


def synthetic_image() -> np.ndarray:
    image = np.full((48, 64, 3), (40, 120, 200), np.uint8)
    image[8:30, 10:40] = (220, 40, 40)
    image[30:44, 40:60] = (30, 200, 60)
    return image


@pytest.mark.parametrize("options", [
    {"points_per_side": 6, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.3},
    {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.3, "crop_n_layers": 1,
     "min_mask_region_area": 20, "box_nms_thresh": 0.9},
])
def test_generated_masks_satisfy_every_filter(small_sam, options):
    image = synthetic_image()
    records = AutomaticMaskGenerator(small_sam, points_per_batch=16, **options).generate(image)
    assert records, "the small model should produce masks on this image"
    predictor = SamPredictor(small_sam)
    predictor.set_image(image)
    boxes = []
    for record in records:
        mask = record["segmentation"]
        assert mask.shape == image.shape[:2] and mask.dtype == bool
        assert record["area"] == mask.sum()
        ys, xs = np.nonzero(mask)
        x0, y0, w, h = record["bbox"]
        if "min_mask_region_area" not in options:
            assert [x0, y0, x0 + w, y0 + h] == [xs.min(), ys.min(), xs.max(), ys.max()]
            assert record["stability_score"] >= options["stability_score_thresh"]
        boxes.append([x0, y0, x0 + w, y0 + h])
        if record["crop_box"] == [0, 0, 64, 48] and "min_mask_region_area" not in options:
            # a whole-image mask is one of the three masks the predictor gives for its point
            logits, iou, _ = predictor.predict(np.array(record["point_coords"]), np.array([1]), return_logits=True)
            match = [k for k in range(3) if abs(iou[k] - record["predicted_iou"]) < 1e-4]
            assert match, (iou, record["predicted_iou"])
            assert (logits[match[0]] > 0).sum() == record["area"]
            assert abs(stability_score(torch.as_tensor(logits[match[0]]), 0.0, 1.0).item()
                       - record["stability_score"]) < 1e-3
    boxes = torch.tensor(boxes, dtype=torch.float32)
    overlaps = box_iou(boxes, boxes) - torch.eye(len(boxes))
    same_crop = torch.tensor([[a["crop_box"] == b["crop_box"] for b in records] for a in records])
    assert (overlaps[same_crop] <= options.get("box_nms_thresh", 0.7) + 1e-6).all()


def test_output_modes_describe_the_same_masks(small_sam):
    image = synthetic_image()
    options = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.3}
    binary = AutomaticMaskGenerator(small_sam, **options).generate(image)
    rle = AutomaticMaskGenerator(small_sam, output_mode="uncompressed_rle", **options).generate(image)
    assert len(binary) == len(rle) > 0
    for a, b in zip(binary, rle, strict=True):
        np.testing.assert_array_equal(a["segmentation"], rle_to_mask(b["segmentation"]))
    with pytest.raises(ValueError, match="output_mode"):
        AutomaticMaskGenerator(small_sam, output_mode="polygons")
    with pytest.raises(ValueError, match="exactly one"):
        AutomaticMaskGenerator(small_sam, points_per_side=None)


def test_high_thresholds_give_no_masks_without_failing(small_sam):
    records = AutomaticMaskGenerator(small_sam, points_per_side=2, pred_iou_thresh=50.0).generate(synthetic_image())
    assert records == []


class DiskSam(Sam):
    """A promptable model with known answers: for a point (its first point, or its box's centre) it returns three
    cone-shaped logit maps (positive inside a disk of radius ``RADII[k]`` around the point, slope 1 per pixel) and
    IoU predictions that differ by mask and, slightly, by point (so NMS has no ties)."""

    RADII = (5.0, 12.0, 40.0)
    IOUS = (0.95, 0.86, 0.9)

    def __init__(self, image_size: int = 64) -> None:
        super().__init__(nn.Identity(), nn.Identity(), nn.Identity(), image_size=image_size)

    def run_encoder(self, images: torch.Tensor) -> ImageEmbedding:
        return ImageEmbedding(torch.zeros(images.shape[0], 1, self.image_size // 16, self.image_size // 16))

    def decode(self, embedding, points=None, point_labels=None, boxes=None, mask_input=None, multimask_output=True):
        size = self.image_size // 4
        centres = (torch.arange(size, dtype=torch.float64) + 0.5) * 4
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        point = (points[:, 0] if points is not None else (boxes[:, :2] + boxes[:, 2:]) / 2).to(torch.float64)
        distance = ((xs[None] - point[:, 0, None, None]) ** 2 + (ys[None] - point[:, 1, None, None]) ** 2).sqrt()
        radii = torch.tensor(self.RADII, dtype=torch.float64)
        logits = (radii[None, :, None, None] - distance[:, None]).float()
        order = (point[:, 1] * 1000 + point[:, 0]).float()  # a per-point offset: no ties in NMS
        iou = torch.tensor(self.IOUS)[None] - 1e-7 * order[:, None]
        return (logits, iou) if multimask_output else (logits[:, :1], iou[:, :1])


def box_overlap(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) boxes, areas as (x1 - x0) * (y1 - y0) like torchvision."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def naive_automatic_masks(model, image, points_per_side, iou_thresh, stability_thresh, nms_thresh):
    """The generator's steps written directly: prompt each grid point, filter, greedy box NMS by score."""
    predictor = SamPredictor(model)
    predictor.set_image(image)
    height, width = image.shape[:2]
    candidates = []
    for gy in range(points_per_side):
        for gx in range(points_per_side):
            point = [(gx + 0.5) / points_per_side * width, (gy + 0.5) / points_per_side * height]
            logits, iou, _ = predictor.predict(np.array([point]), np.array([1]), return_logits=True)
            for k in range(3):
                mask = logits[k] > 0
                stability = (logits[k] > 1).sum() / (logits[k] > -1).sum()
                if iou[k] <= iou_thresh or stability < stability_thresh or not mask.any():
                    continue
                ys, xs = np.nonzero(mask)
                candidates.append((float(iou[k]), [xs.min(), ys.min(), xs.max(), ys.max()], mask))
    candidates.sort(key=lambda c: -c[0])
    kept = []
    for score, box, mask in candidates:
        if all(box_overlap(box, other) <= nms_thresh for _, other, _ in kept):
            kept.append((score, box, mask))
    return kept


def test_generator_keeps_exactly_the_masks_a_direct_computation_keeps():
    model = DiskSam().eval()
    image = np.zeros((48, 64, 3), np.uint8)
    options = {"points_per_side": 4, "pred_iou_thresh": 0.858, "stability_score_thresh": 0.6, "box_nms_thresh": 0.7}
    expected = naive_automatic_masks(model, image, 4, 0.858, 0.6, 0.7)
    records = AutomaticMaskGenerator(model, points_per_batch=5, **options).generate(image)
    radii = sorted({int(r["area"] > 1000) for r in records})
    assert radii == [0, 1], "both the 12 px and the 40 px disks survive; NMS removed most 40 px ones"
    assert 4 < len(expected) < 16  # 5 px disks fail stability; 12 px ones fail the IoU threshold for some points
    assert len(records) == len(expected)
    by_score = sorted(records, key=lambda r: -r["predicted_iou"])
    for record, (score, box, mask) in zip(by_score, expected, strict=True):
        assert abs(record["predicted_iou"] - score) < 1e-6
        x0, y0, w, h = record["bbox"]
        assert [x0, y0, x0 + w, y0 + h] == [int(v) for v in box]
        np.testing.assert_array_equal(record["segmentation"], mask)
