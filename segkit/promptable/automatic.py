"""``AutomaticMaskGenerator``: segment everything in an image by prompting a grid of points.

The options are the official ``SamAutomaticMaskGenerator``'s: a ``points_per_side`` grid (or explicit
``point_grids``) prompted ``points_per_batch`` at a time; masks kept when their predicted IoU exceeds
``pred_iou_thresh`` and their stability score reaches ``stability_score_thresh``; duplicates removed by box NMS
(``box_nms_thresh``, torchvision's ``batched_nms``); optional crop layers (``crop_n_layers`` and friends); holes and
islands under ``min_mask_region_area`` pixels cleaned with OpenCV; output as binary masks, uncompressed RLE or COCO
RLE (``pycocotools``, optional).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .amg_utils import (
    MaskRecords,
    area_from_rle,
    batches,
    box_near_crop_edge,
    coco_encode_rle,
    crop_boxes,
    layer_point_grids,
    masks_to_boxes,
    masks_to_rle,
    remove_small_regions,
    rle_to_mask,
    stability_score,
    uncrop_boxes,
    uncrop_masks,
    uncrop_points,
    xyxy_to_xywh,
)
from .predictor import SamPredictor

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class AutomaticMaskGenerator:
    """Generate masks for a whole image with a SAM-family model (or a ready :class:`SamPredictor`).

    ``generate(image)`` returns one record per mask: ``segmentation`` (by ``output_mode``), ``area``, ``bbox``
    (x, y, w, h), ``predicted_iou``, ``point_coords``, ``stability_score`` and ``crop_box`` (x, y, w, h).
    """

    def __init__(self, model, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: list[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask") -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}")
        if output_mode == "coco_rle":
            coco_encode_rle({"size": [1, 1], "counts": [1]})  # fails early without pycocotools
        if point_grids is None:
            point_grids = layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        elif len(point_grids) != crop_n_layers + 1:
            raise ValueError(f"point_grids needs one grid per crop layer ({crop_n_layers + 1}), got {len(point_grids)}")
        self.point_grids = point_grids
        self.predictor = model if isinstance(model, SamPredictor) else SamPredictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    def batches_per_image(self) -> int:
        """How many point batches one image takes (``4 ** layer`` crops per crop layer)."""
        return sum(4 ** layer * -(-len(grid) // self.points_per_batch) for layer, grid in enumerate(self.point_grids))

    @torch.no_grad()
    def generate(self, image: np.ndarray, progress=None) -> list[dict[str, Any]]:
        """Masks of an HWC uint8 RGB image. ``progress(done, total)`` is called after each point batch."""
        records = self.generate_masks(np.asarray(image), progress)
        if self.min_mask_region_area > 0:
            records = self.clean_small_regions(records, self.min_mask_region_area,
                                               max(self.box_nms_thresh, self.crop_nms_thresh))
        rles = records["rles"] if len(records) else []
        if self.output_mode == "coco_rle":
            segmentations = [coco_encode_rle(rle) for rle in rles]
        elif self.output_mode == "binary_mask":
            segmentations = [rle_to_mask(rle) for rle in rles]
        else:
            segmentations = list(rles)
        return [{
            "segmentation": segmentation, "area": area_from_rle(rles[i]),
            "bbox": xyxy_to_xywh(records["boxes"][i]), "predicted_iou": float(records["iou_preds"][i]),
            "point_coords": [records["points"][i].tolist()], "stability_score": float(records["stability_score"][i]),
            "crop_box": xyxy_to_xywh(records["crop_boxes"][i]),
        } for i, segmentation in enumerate(segmentations)]

    def generate_masks(self, image: np.ndarray, progress=None) -> MaskRecords:
        from torchvision.ops import batched_nms, box_area

        original_size = image.shape[:2]
        boxes, layers = crop_boxes(original_size, self.crop_n_layers, self.crop_overlap_ratio)
        counter = [0, self.batches_per_image(), progress]
        records = MaskRecords()
        for crop_box, layer in zip(boxes, layers, strict=True):
            records.extend(self.process_crop(image, crop_box, layer, original_size, counter))
        if len(boxes) > 1 and len(records):  # duplicates across crops: prefer masks from smaller crops
            scores = 1 / box_area(records["crop_boxes"])
            keep = batched_nms(records["boxes"].float(), scores.to(records["boxes"].device),
                               torch.zeros_like(records["boxes"][:, 0]), iou_threshold=self.crop_nms_thresh)
            records.filter(keep)
        records.to_numpy()
        return records

    def process_crop(self, image: np.ndarray, crop_box: list[int], layer: int, original_size: tuple[int, int],
                     counter: list) -> MaskRecords:
        from torchvision.ops import batched_nms

        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        crop_size = crop.shape[:2]
        self.predictor.set_image(crop)
        points = self.point_grids[layer] * np.array(crop_size)[None, ::-1]
        records = MaskRecords()
        for (batch,) in batches(self.points_per_batch, points):
            records.extend(self.process_batch(batch, crop_size, crop_box, original_size))
            counter[0] += 1
            if counter[2] is not None:
                counter[2](counter[0], counter[1])
        self.predictor.reset_image()
        if not len(records):
            return records
        keep = batched_nms(records["boxes"].float(), records["iou_preds"], torch.zeros(len(records["boxes"])),
                           iou_threshold=self.box_nms_thresh)
        records.filter(keep)
        records["boxes"] = uncrop_boxes(records["boxes"], crop_box)
        records["points"] = uncrop_points(records["points"], crop_box)
        records["crop_boxes"] = torch.tensor([crop_box] * len(records["rles"]))
        return records

    def process_batch(self, points: np.ndarray, crop_size: tuple[int, int], crop_box: list[int],
                      original_size: tuple[int, int]) -> MaskRecords:
        height, width = original_size
        model = self.predictor.model
        coords = torch.as_tensor(self.predictor.transform.apply_coords(points, crop_size), device=model.device)
        labels = torch.ones(coords.shape[0], dtype=torch.int, device=model.device)
        options = getattr(model, "automatic_decode_options", {})
        logits, iou, _ = self.predictor.predict_torch(coords[:, None], labels[:, None], multimask_output=True,
                                                      return_logits=True, **options)
        records = MaskRecords(masks=logits.flatten(0, 1), iou_preds=iou.flatten(0, 1),
                              points=torch.as_tensor(points.repeat(logits.shape[1], axis=0)))
        del logits
        if self.pred_iou_thresh > 0.0:
            records.filter(records["iou_preds"] > self.pred_iou_thresh)
        records["stability_score"] = stability_score(records["masks"], model.mask_threshold,
                                                     self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            records.filter(records["stability_score"] >= self.stability_score_thresh)
        records["masks"] = records["masks"] > model.mask_threshold
        records["boxes"] = masks_to_boxes(records["masks"])
        near_edge = box_near_crop_edge(records["boxes"], crop_box, [0, 0, width, height])
        if near_edge.any():
            records.filter(~near_edge)
        records["rles"] = masks_to_rle(uncrop_masks(records["masks"], crop_box, height, width))
        del records["masks"]
        return records

    @staticmethod
    def clean_small_regions(records: MaskRecords, min_area: int, nms_thresh: float) -> MaskRecords:
        """Fill small holes and drop small islands of every mask; masks that changed lose to unchanged ones in a
        new box NMS, and the kept changed masks get new RLEs and boxes."""
        from torchvision.ops import batched_nms

        if not len(records):
            return records
        cleaned, scores = [], []
        for rle in records["rles"]:
            mask, filled = remove_small_regions(rle_to_mask(rle), min_area, "holes")
            mask, dropped = remove_small_regions(mask, min_area, "islands")
            cleaned.append(torch.as_tensor(mask)[None])
            scores.append(float(not (filled or dropped)))
        masks = torch.cat(cleaned)
        boxes = masks_to_boxes(masks)
        keep = batched_nms(boxes.float(), torch.as_tensor(scores), torch.zeros_like(boxes[:, 0]),
                           iou_threshold=nms_thresh)
        for index in keep.tolist():
            if scores[index] == 0.0:
                records["rles"][index] = masks_to_rle(masks[index][None])[0]
                records["boxes"][index] = boxes[index]
        records.filter(keep)
        return records
