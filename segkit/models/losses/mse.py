"""``MSELoss`` with SSSegmentation's arguments and semantics (``mseloss.py``).

The element-wise squared error (prediction - target)² (``F.mse_loss``) of two tensors of the same shape,
reduced by ``reduction`` (``"none"`` keeps the shape), multiplied by ``scale_factor`` and flooded with
``lowest_loss_value`` (``|L - b| + b``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...registry import LOSSES
from ._common import SameShapeLoss


@LOSSES.register("MSELoss")
class MSELoss(SameShapeLoss):
    """Element-wise squared error (prediction - target)²; see the module docstring."""

    def elementwise(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(prediction, target, reduction="none")
