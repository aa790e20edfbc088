"""Derived targets (``TARGETS``): what a loss route may name besides the batch's ``seg_target``/``edge_target``.

A derivation is ``fn(targets, outputs, *, num_classes, ignore_index) -> Tensor``. Routes name them in
``Route.target`` or in a loss table's ``target`` key::

    [losses.loss_se]                 # ENCNet: the [B, K] SE output against which classes are present
    type = "CrossEntropyLoss"
    use_sigmoid = true
    target = "class_presence"
    resize = "none"

``output:<name>`` is not registered here: it takes another output of the segmentor, detached (self-distillation
with KLDiv, MSE, L1 or cosine losses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...registry import TARGETS

BATCH_TARGETS: tuple[str, ...] = ("seg_target", "edge_target")
"""Targets that come with the batch (from the dataset and its transforms)."""


@TARGETS.register("class_presence")
def class_presence(targets: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], *, num_classes: int,
                   ignore_index: int) -> torch.Tensor:
    """``[B, K]`` float: 1 where class k occurs in the image's ``seg_target`` (ignored and out-of-range labels are not
    counted), as SSSegmentation's ENCNet computes with ``torch.histc``."""
    seg = targets["seg_target"].long()
    valid = (seg >= 0) & (seg < num_classes)
    flat = torch.where(valid, seg, torch.full_like(seg, num_classes)).flatten(1)
    counts = torch.zeros(seg.size(0), num_classes + 1, device=seg.device, dtype=torch.long)
    counts.scatter_add_(1, flat, torch.ones_like(flat))
    return (counts[:, :num_classes] > 0).float()


@TARGETS.register("seg_onehot")
def seg_onehot(targets: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], *, num_classes: int,
               ignore_index: int) -> torch.Tensor:
    """``[B, K, H, W]`` one-hot of ``seg_target``; ignored pixels are all zeros (a same-shape target for L1, MSE,
    cosine or KL losses)."""
    seg = targets["seg_target"].long()
    valid = (seg >= 0) & (seg < num_classes)
    onehot = F.one_hot(seg.masked_fill(~valid, 0), num_classes).movedim(-1, 1).float()
    return onehot * valid.unsqueeze(1)


@TARGETS.register("point_labels")
def point_labels(targets: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], *, num_classes: int,
                 ignore_index: int) -> torch.Tensor:
    """``[B, P]`` labels of ``seg_target`` at ``outputs["points"]`` (``[B, P, 2]``, x/y in [0, 1]), nearest
    neighbour, as PointRend samples its targets."""
    seg = targets["seg_target"].unsqueeze(1).float()
    grid = outputs["points"].unsqueeze(2) * 2.0 - 1.0
    sampled = F.grid_sample(seg, grid.to(seg.dtype), mode="nearest", align_corners=False)
    return sampled.squeeze(3).squeeze(1).long()


def target_names() -> list[str]:
    """Every target a route may name (``output:<name>`` aside)."""
    return [*BATCH_TARGETS, *TARGETS.names()]
