"""``L1Loss`` with SSSegmentation's arguments and semantics (``l1loss.py``).

The element-wise absolute error |prediction - target| (``F.l1_loss``) of two tensors of the same shape,
reduced by ``reduction`` (``"none"`` keeps the shape), multiplied by ``scale_factor`` and flooded with
``lowest_loss_value`` (``|L - b| + b``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...registry import LOSSES
from ._common import SameShapeLoss


@LOSSES.register("L1Loss")
class L1Loss(SameShapeLoss):
    """Element-wise absolute error |prediction - target|; see the module docstring."""

    def elementwise(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(prediction, target, reduction="none")
