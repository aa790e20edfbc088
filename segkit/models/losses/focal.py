"""``FocalLoss`` with SSSegmentation's arguments and semantics (``focalloss.py``), in pure PyTorch.

SSSegmentation calls mmcv's CUDA kernels when mmcv imports and the logits are on a GPU, and otherwise its
pure-PyTorch fallbacks ``pysigmoidfocalloss`` / ``pysoftmaxfocalloss``; this is those fallbacks, on every device.

Targets are laid out as in ``CrossEntropyLoss``: an index target drops ``ignore_index`` pixels and is one-hot
encoded (``C + 1`` columns, ``C`` kept: a label ``C`` is a pixel of no class; one class keeps column 1); a
same-shape target drops channel ``ignore_index`` when it is in range.

``use_sigmoid=True`` (default), per element, with ``p = sigmoid(x)`` (torchvision's ``sigmoid_focal_loss``)::

    loss = BCE(x, t) * (alpha * t + (1 - alpha) * (1 - t)) * ((1 - p) * t + p * (1 - t)) ** gamma

``use_sigmoid=False`` (needs 2+ classes), per pixel, with ``p = softmax(x)`` and ``y = argmax(t)``::

    loss = sum_c alpha * (1 - pt_c) ** gamma * CE(x, y) * t_c,    pt_c = p_c * t_c + (1 - p_c) * (1 - t_c)

i.e. ``alpha * (1 - p_y) ** gamma * CE(x, y)`` for a one-hot target. Note that ``alpha`` is a plain factor here
(not balanced by class as in the sigmoid form) and that a soft target acts through its argmax in ``CE``, as in
SSSegmentation.

``class_weight`` multiplies each class column; ``reduction="mean"`` then divides by ``sum(class_weight * t)``
(unless ``norm_loss_with_class_weight=False``), else by the number of elements (sigmoid) or kept pixels
(softmax). ``"none"`` gives ``[B, C, *S]`` (sigmoid) or ``[B, *S]`` (softmax), 0 where dropped
(SSSegmentation's ``"none"`` fails for the softmax form, and for the sigmoid form whenever something is dropped). The result is
multiplied by ``scale_factor`` and flooded with ``lowest_loss_value`` (``|L - b| + b``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES
from ._common import check_pair, check_reduction, finish, reduce_loss, to_class_rows


@LOSSES.register("FocalLoss")
class FocalLoss(nn.Module):
    """Focal loss (sigmoid or softmax form) for segmentation logits; see the module docstring."""

    def __init__(
        self,
        use_sigmoid: bool = True,
        scale_factor: float = 1.0,
        gamma: float = 2.0,
        alpha: float = 0.25,
        class_weight: list[float] | None = None,
        reduction: Literal["mean", "sum", "none"] = "mean",
        ignore_index: int = -100,
        lowest_loss_value: float | None = None,
        norm_loss_with_class_weight: bool = True,
    ) -> None:
        super().__init__()
        check_reduction("FocalLoss", reduction)
        self.use_sigmoid = use_sigmoid
        self.scale_factor = scale_factor
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.lowest_loss_value = lowest_loss_value
        self.norm_loss_with_class_weight = norm_loss_with_class_weight
        weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        index_target = check_pair("FocalLoss", prediction, target)
        if not self.use_sigmoid and prediction.size(1) < 2:
            raise ValueError("FocalLoss: the softmax form needs at least 2 classes (use use_sigmoid=True)")
        rows = to_class_rows(prediction, target, self.ignore_index, index_target=index_target)
        weight = rows.class_weight(self.class_weight)
        x, t = rows.x, rows.t
        if self.use_sigmoid:
            p = x.sigmoid()
            one_minus_pt = (1 - p) * t + p * (1 - t)
            focal_weight = (self.alpha * t + (1 - self.alpha) * (1 - t)) * one_minus_pt.pow(self.gamma)
            loss = F.binary_cross_entropy_with_logits(x, t, reduction="none") * focal_weight
        else:
            ce = F.cross_entropy(x, t.argmax(dim=1), reduction="none").unsqueeze(1)
            p = x.softmax(dim=1)
            pt = p * t + (1 - p) * (1 - t)
            loss = self.alpha * (1 - pt).pow(self.gamma) * ce * t
        avg_factor = None
        if weight is not None:
            loss = loss * weight
            if self.norm_loss_with_class_weight:
                avg_factor = (weight * t).sum()
        if not self.use_sigmoid:
            loss = loss.sum(1)
        if self.reduction == "none":
            loss = rows.per_element(loss) if self.use_sigmoid else rows.per_pixel(loss)
        else:
            loss = reduce_loss(loss, self.reduction, avg_factor)
        return finish(loss, self.scale_factor, self.lowest_loss_value)
