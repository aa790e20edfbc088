"""``MSELoss`` with SSSegmentation's arguments and semantics (``mseloss.py``).

The element-wise squared error (prediction - target)² (``F.mse_loss``) of two tensors of the same shape,
reduced by ``reduction`` (``"none"`` keeps the shape), multiplied by ``scale_factor`` and flooded with
``lowest_loss_value`` (``|L - b| + b``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES
from ._common import check_pair, check_reduction, finish, reduce_loss


@LOSSES.register("MSELoss")
class MSELoss(nn.Module):
    """Element-wise squared error (prediction - target)²; see the module docstring."""

    def __init__(
        self,
        scale_factor: float = 1.0,
        reduction: Literal["mean", "sum", "none"] = "mean",
        lowest_loss_value: float | None = None,
    ) -> None:
        super().__init__()
        check_reduction("MSELoss", reduction)
        self.scale_factor = scale_factor
        self.reduction = reduction
        self.lowest_loss_value = lowest_loss_value

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair("MSELoss", prediction, target, index_target=False)
        loss = F.mse_loss(prediction, target.to(prediction.dtype), reduction="none")
        loss = reduce_loss(loss, self.reduction)
        return finish(loss, self.scale_factor, self.lowest_loss_value)
