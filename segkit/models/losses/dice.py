"""``DiceLoss`` with SSSegmentation's arguments and semantics (``diceloss.py``).

With ``activate=True`` the prediction is first turned into probabilities: by a sigmoid when ``use_sigmoid``
(the default, even for softmax-style logits, as in SSSegmentation), else by a softmax over dim 1 (when there
is more than one channel). With ``activate=False`` it is used as it is.

Targets:

* index ``[B, *S]``: labels are clamped to ``[0, C]`` and one-hot encoded as SSSegmentation does (``C + 1``
  columns, the first ``C`` kept, so a label ``C`` or above is a pixel of no class; one class keeps column 1).
  Pixels equal to ``ignore_index`` are zeroed in *both* the probabilities and the one-hot, so they add nothing to
  any sum;
* same-shape ``[B, C, *S]``: channel ``ignore_index`` is dropped from both when it is in range.

The Dice coefficient is computed **per sample** over everything else flattened (all classes and pixels of an
image together, not per class; for ``[N, C]`` rows that means per row)::

    d = 2 * sum(p * t) / (sum(p * p) + eps + sum(t * t) + eps)        (default)
    d = (2 * sum(p * t) + eps) / (sum(p) + sum(t) + eps)              (naive_dice=True)

and the loss is ``1 - d`` per sample, reduced by ``reduction`` (``"none"`` gives ``[B]``), multiplied by
``scale_factor`` and flooded with ``lowest_loss_value`` (``|L - b| + b``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES
from ._common import check_pair, check_reduction, finish, kept_channels, reduce_loss


@LOSSES.register("DiceLoss")
class DiceLoss(nn.Module):
    """Per-sample Dice loss ``1 - 2|P∩T| / (|P|² + |T|²)``; see the module docstring."""

    def __init__(
        self,
        use_sigmoid: bool = True,
        activate: bool = True,
        reduction: Literal["mean", "sum", "none"] = "mean",
        naive_dice: bool = False,
        eps: float = 1e-3,
        scale_factor: float = 1.0,
        ignore_index: int = -100,
        lowest_loss_value: float | None = None,
    ) -> None:
        super().__init__()
        check_reduction("DiceLoss", reduction)
        self.use_sigmoid = use_sigmoid
        self.activate = activate
        self.reduction = reduction
        self.naive_dice = naive_dice
        self.eps = eps
        self.scale_factor = scale_factor
        self.ignore_index = ignore_index
        self.lowest_loss_value = lowest_loss_value

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        index_target = check_pair("DiceLoss", prediction, target)
        num_classes = prediction.size(1)
        probs = prediction
        if self.activate:
            if self.use_sigmoid:
                probs = prediction.sigmoid()
            elif num_classes > 1:
                probs = prediction.softmax(dim=1)
        if index_target:
            labels = target.long()
            valid = (labels != self.ignore_index).unsqueeze(1).to(probs.dtype)
            one_hot = F.one_hot(labels.clamp(0, num_classes), num_classes + 1).movedim(-1, 1)
            one_hot = one_hot[:, 1:2] if num_classes == 1 else one_hot[:, :num_classes]
            probs, truth = probs * valid, one_hot.to(probs.dtype) * valid
        else:
            truth = target.to(probs.dtype)
            channels = kept_channels(num_classes, self.ignore_index, probs.device)
            if channels is not None:
                probs, truth = probs[:, channels], truth[:, channels]
        probs, truth = probs.flatten(1), truth.flatten(1)
        overlap = (probs * truth).sum(1)
        if self.naive_dice:
            dice = (2 * overlap + self.eps) / (probs.sum(1) + truth.sum(1) + self.eps)
        else:
            dice = 2 * overlap / ((probs * probs).sum(1) + self.eps + (truth * truth).sum(1) + self.eps)
        loss = reduce_loss(1 - dice, self.reduction)
        return finish(loss, self.scale_factor, self.lowest_loss_value)
