"""``KLDivLoss`` with SSSegmentation's arguments and semantics (``kldivloss.py``): distillation between logits.

Both tensors are logits of the same shape ``[B, C, ...]``, turned into distributions over dim 1 at temperature T::

    loss = T**2 * kl_div(log_softmax(prediction / T), softmax(target / T))       (element-wise)

reduced by ``reduction``: ``"mean"`` over all elements, ``"batchmean"`` the sum divided by ``B`` (the true KL
divergence per sample), ``"sum"``, or ``"none"`` (element-wise ``[B, C, ...]``). The result is multiplied by
``scale_factor`` and flooded with ``lowest_loss_value`` (``|L - b| + b``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES
from ._common import check_pair, check_reduction, finish, reduce_loss


@LOSSES.register("KLDivLoss")
class KLDivLoss(nn.Module):
    """Temperature-scaled KL divergence between the softmax of two logit tensors; see the module docstring."""

    def __init__(
        self,
        scale_factor: float = 1.0,
        temperature: float = 1.0,
        reduction: Literal["batchmean", "mean", "sum", "none"] = "mean",
        lowest_loss_value: float | None = None,
    ) -> None:
        super().__init__()
        check_reduction("KLDivLoss", reduction, ("batchmean", "mean", "sum", "none"))
        if temperature <= 0:
            raise ValueError(f"KLDivLoss: temperature must be positive, got {temperature}")
        self.scale_factor = scale_factor
        self.temperature = temperature
        self.reduction = reduction
        self.lowest_loss_value = lowest_loss_value

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair("KLDivLoss", prediction, target, index_target=False)
        temperature = self.temperature
        log_probs = F.log_softmax(prediction / temperature, dim=1)
        target_probs = F.softmax(target.to(prediction.dtype) / temperature, dim=1)
        loss = F.kl_div(log_probs, target_probs, reduction="none", log_target=False) * temperature ** 2
        if self.reduction == "batchmean":
            loss = loss.sum() / prediction.size(0)
        else:
            loss = reduce_loss(loss, self.reduction)
        return finish(loss, self.scale_factor, self.lowest_loss_value)
