"""``CosineSimilarityLoss`` with SSSegmentation's arguments and semantics (``cosinesimilarityloss.py``).

``1 - cosine_similarity(prediction, target)`` along dim 1 (the channels) for two tensors of the same shape
``[B, C, ...]``, reduced by ``reduction`` (``"none"`` gives ``[B, ...]``), multiplied by ``scale_factor`` and flooded
with ``lowest_loss_value`` (``|L - b| + b``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...registry import LOSSES
from ._common import SameShapeLoss


@LOSSES.register("CosineSimilarityLoss")
class CosineSimilarityLoss(SameShapeLoss):
    """One minus the cosine similarity of two feature maps along the channels; see the module docstring."""

    def elementwise(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(prediction, target, dim=1)
