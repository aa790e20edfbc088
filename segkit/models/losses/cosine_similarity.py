"""``CosineSimilarityLoss`` with SSSegmentation's arguments and semantics (``cosinesimilarityloss.py``).

``1 - cosine_similarity(prediction, target)`` along dim 1 (the channels) for two tensors of the same shape
``[B, C, ...]``, reduced by ``reduction`` (``"none"`` gives ``[B, ...]``), multiplied by ``scale_factor`` and flooded
with ``lowest_loss_value`` (``|L - b| + b``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES
from ._common import check_pair, check_reduction, finish, reduce_loss


@LOSSES.register("CosineSimilarityLoss")
class CosineSimilarityLoss(nn.Module):
    """One minus the cosine similarity of two feature maps along the channels; see the module docstring."""

    def __init__(
        self,
        scale_factor: float = 1.0,
        reduction: Literal["mean", "sum", "none"] = "mean",
        lowest_loss_value: float | None = None,
    ) -> None:
        super().__init__()
        check_reduction("CosineSimilarityLoss", reduction)
        self.scale_factor = scale_factor
        self.reduction = reduction
        self.lowest_loss_value = lowest_loss_value

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair("CosineSimilarityLoss", prediction, target, index_target=False)
        loss = 1 - F.cosine_similarity(prediction, target.to(prediction.dtype), dim=1)
        loss = reduce_loss(loss, self.reduction)
        return finish(loss, self.scale_factor, self.lowest_loss_value)
