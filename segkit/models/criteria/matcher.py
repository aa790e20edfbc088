"""``HungarianMatcher``: the one-to-one assignment of predicted queries to ground-truth masks (DETR, MaskFormer,
Mask2Former), by ``scipy.optimize.linear_sum_assignment`` on a weighted cost matrix.

For one image with ``Q`` queries and ``T`` target masks the cost of pairing query ``q`` with target ``t`` is::

    cost_class * (-softmax(logits_q)[label_t])
  + cost_mask  * mean over pixels of the (focal or binary cross-entropy) loss of mask_q against mask_t
  + cost_dice  * (1 - (2 <sigmoid(mask_q), mask_t> + 1) / (sum sigmoid(mask_q) + sum mask_t + 1))

Pixels are either every pixel of the predicted masks (``num_points = 0``; the targets are resized to them by nearest
neighbour: MaskFormer, with the focal cost) or ``num_points`` uniformly random points shared by all masks of the image
(Mask2Former, with the cross-entropy cost; the targets are sampled bilinearly at full resolution). Costs are computed
in float32 with autocast off and the assignment on the CPU.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.errors import ArgumentError
from ..layers.point_sample import point_sample

MatchIndices = list[tuple[torch.Tensor, torch.Tensor]]
"""Per image: (query indices, target indices), int64 CPU tensors of equal length, query indices ascending."""


def pairwise_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[Q, P]`` mask logits and ``[T, P]`` binary targets -> ``[Q, T]`` dice losses (smoothing 1)."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def pairwise_bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[Q, P]`` logits, ``[T, P]`` targets -> ``[Q, T]`` mean binary cross-entropy over the ``P`` pixels."""
    positive = F.softplus(-logits)  # -log(sigmoid(x)): the loss where the target is 1
    negative = F.softplus(logits)  # -log(1 - sigmoid(x))
    return (positive @ targets.T + negative @ (1 - targets).T) / logits.shape[1]


def pairwise_focal_cost(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                        gamma: float = 2.0) -> torch.Tensor:
    """``[Q, P]`` logits, ``[T, P]`` targets -> ``[Q, T]`` mean sigmoid focal loss over the ``P`` pixels."""
    probs = logits.sigmoid()
    positive = (1 - probs) ** gamma * F.softplus(-logits)
    negative = probs ** gamma * F.softplus(logits)
    if alpha >= 0:
        positive, negative = positive * alpha, negative * (1 - alpha)
    return (positive @ targets.T + negative @ (1 - targets).T) / logits.shape[1]


class HungarianMatcher(nn.Module):
    """Hungarian matching of queries to targets (see the module docstring); the ``criterion.matcher`` table.

    ``cost_class``, ``cost_mask``, ``cost_dice`` weight the three costs (SSSegmentation's keys; its criterion also
    uses them as the loss weights). ``num_points`` 0 matches on all pixels, else on that many random points.
    ``mask_cost`` is ``"focal"`` (MaskFormer) or ``"bce"`` (Mask2Former).
    """

    def __init__(self, cost_class: float = 1.0, cost_mask: float = 1.0, cost_dice: float = 1.0,
                 num_points: int = 0, mask_cost: Literal["focal", "bce"] = "bce") -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ArgumentError("cost_class", "cost_class, cost_mask and cost_dice cannot all be 0")
        if num_points < 0:
            raise ArgumentError("num_points", f"must be >= 0 (0: every pixel), got {num_points}")
        if mask_cost not in ("focal", "bce"):
            raise ArgumentError("mask_cost", f"expected 'focal' or 'bce', got {mask_cost!r}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points
        self.mask_cost = mask_cost

    def extra_repr(self) -> str:
        return (f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}, "
                f"num_points={self.num_points}, mask_cost={self.mask_cost!r}")

    @torch.no_grad()
    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                    target_masks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The ``[Q, T]`` cost of one image: ``logits`` ``[Q, K + 1]``, ``masks`` ``[Q, h, w]`` (logits),
        ``labels`` ``[T]``, ``target_masks`` ``[T, H, W]`` (binary)."""
        logits, masks, target_masks = logits.float(), masks.float(), target_masks.float()
        cost_class = -logits.softmax(-1)[:, labels]
        if self.num_points > 0:
            device = generator.device if generator is not None else masks.device
            points = torch.rand(1, self.num_points, 2, generator=generator, device=device).to(masks.device)
            predicted = point_sample(masks[None], points, align_corners=False)[0]  # [Q, P]
            wanted = point_sample(target_masks[None], points, align_corners=False)[0]  # [T, P]
        else:
            predicted = masks.flatten(1)
            wanted = F.interpolate(target_masks[:, None], size=masks.shape[-2:], mode="nearest")[:, 0].flatten(1)
        mask_cost = pairwise_focal_cost if self.mask_cost == "focal" else pairwise_bce_cost
        return (self.cost_mask * mask_cost(predicted, wanted) + self.cost_class * cost_class
                + self.cost_dice * pairwise_dice_cost(predicted, wanted))

    @torch.no_grad()
    def forward(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                targets: list[tuple[torch.Tensor, torch.Tensor]],
                generator: torch.Generator | None = None) -> MatchIndices:
        """Match every image of the batch: ``pred_logits`` ``[B, Q, K + 1]``, ``pred_masks`` ``[B, Q, h, w]``,
        ``targets`` ``[(labels [T_b], masks [T_b, H, W]), ...]``. ``generator`` draws the points (reproducible
        matching); without it the global RNG does, as in SSSegmentation."""
        from scipy.optimize import linear_sum_assignment

        indices: MatchIndices = []
        with _autocast_off(pred_masks.device.type):
            for logits, masks, (labels, target_masks) in zip(pred_logits, pred_masks, targets, strict=True):
                if labels.numel() == 0:
                    empty = torch.empty(0, dtype=torch.int64)
                    indices.append((empty, empty.clone()))
                    continue
                cost = self.cost_matrix(logits, masks, labels, target_masks, generator)
                rows, cols = linear_sum_assignment(cost.cpu().double().numpy())
                indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices


def _autocast_off(device_type: str):
    """A context without autocast on ``device_type`` (nothing to switch off: a no-op context)."""
    import contextlib

    try:
        enabled = torch.is_autocast_enabled(device_type)
    except (TypeError, RuntimeError):
        enabled = False
    return torch.autocast(device_type, enabled=False) if enabled else contextlib.nullcontext()
