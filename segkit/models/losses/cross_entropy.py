"""``CrossEntropyLoss`` with SSSegmentation's arguments and semantics.

Index targets (``[B, H, W]`` long, pixels equal to ``ignore_index`` ignored):

* softmax (default): per-pixel ``F.cross_entropy`` (with its ``weight``, ``ignore_index`` and ``label_smoothing``).
  ``reduction="mean"`` divides by the summed class weights of the valid pixels (torch's weighted mean), or by their
  number without ``class_weight`` or with ``norm_loss_with_class_weight=False``. With both ``class_weight`` and
  ``label_smoothing`` the smoothed per-pixel loss is weighted by the weight of the pixel's class, as SSSegmentation
  does (torch would weight the smoothing term per class instead).
* ``use_sigmoid=True``: binary cross-entropy with logits against one-hot targets (ENCNet's SE loss).

A batch whose pixels are all ignored gives a loss of 0 (not NaN, which would poison the weights). Same-shape float
targets are class probabilities (torch's soft-target cross-entropy). The result is multiplied by ``scale_factor``;
``lowest_loss_value`` b then applies *flooding*, ``|L - b| + b`` (SSSegmentation's implementation; its tutorial's
description as a clamp is wrong).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES


@LOSSES.register("CrossEntropyLoss")
class CrossEntropyLoss(nn.Module):
    """Cross-entropy for segmentation logits ``[B, C, H, W]`` and targets ``[B, H, W]``; see the module docstring."""

    def __init__(
        self,
        use_sigmoid: bool = False,
        reduction: Literal["mean", "sum", "none"] = "mean",
        class_weight: list[float] | None = None,
        scale_factor: float = 1.0,
        lowest_loss_value: float | None = None,
        label_smoothing: float | None = None,
        ignore_index: int = -100,
        norm_loss_with_class_weight: bool = True,
    ) -> None:
        super().__init__()
        self.use_sigmoid = use_sigmoid
        self.reduction = reduction
        self.scale_factor = scale_factor
        self.lowest_loss_value = lowest_loss_value
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.norm_loss_with_class_weight = norm_loss_with_class_weight
        weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape != target.shape and (
            prediction.size(0) != target.size(0) or prediction.shape[2:] != target.shape[1:]
        ):
            raise ValueError(f"CrossEntropyLoss: prediction {tuple(prediction.shape)} and target "
                             f"{tuple(target.shape)} do not match")
        loss = self._sigmoid_loss(prediction, target) if self.use_sigmoid else self._softmax_loss(prediction, target)
        loss = loss * self.scale_factor
        if self.lowest_loss_value is not None:
            loss = (loss - self.lowest_loss_value).abs() + self.lowest_loss_value
        return loss

    # ----------------------------------------------------------------------------------------------- softmax
    def _weight(self, prediction: torch.Tensor) -> torch.Tensor | None:
        weight = self.class_weight
        if weight is not None and weight.numel() != prediction.size(1):
            raise ValueError(f"class_weight has {weight.numel()} entries for {prediction.size(1)} classes")
        return None if weight is None else weight.to(prediction.dtype)

    def _softmax_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = self._weight(prediction)
        smoothing = self.label_smoothing or 0.0
        if target.shape == prediction.shape:  # class probabilities
            return F.cross_entropy(prediction, target.to(prediction.dtype), weight=weight,
                                   reduction=self.reduction, label_smoothing=smoothing)
        target = target.long()
        valid = target != self.ignore_index
        per_pixel_weight = None if weight is None else weight[target.masked_fill(~valid, 0)]
        if weight is None or smoothing == 0.0:
            per_pixel = F.cross_entropy(prediction, target, weight=weight, ignore_index=self.ignore_index,
                                        reduction="none", label_smoothing=smoothing)
        else:
            per_pixel = F.cross_entropy(prediction, target, ignore_index=self.ignore_index,
                                        reduction="none", label_smoothing=smoothing) * per_pixel_weight
        if self.reduction == "none":
            return per_pixel
        if self.reduction == "sum":
            return per_pixel.sum()
        if per_pixel_weight is not None and self.norm_loss_with_class_weight:
            denominator = (per_pixel_weight * valid).sum()
        else:
            denominator = valid.sum().to(per_pixel.dtype)
        return per_pixel.sum() / denominator.clamp(min=torch.finfo(per_pixel.dtype).tiny)

    # ----------------------------------------------------------------------------------------------- sigmoid
    def _sigmoid_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = self._weight(prediction)
        num_classes = prediction.size(1)
        if target.shape == prediction.shape:
            one_hot, valid = target.to(prediction.dtype), torch.ones_like(prediction)
        else:
            target = target.long()
            valid_pixels = target != self.ignore_index
            safe = target.masked_fill(~valid_pixels, 0)
            if num_classes == 1:
                one_hot = (safe == 1).unsqueeze(1)
            else:
                one_hot = F.one_hot(safe, num_classes).movedim(-1, 1)
            one_hot = one_hot.to(prediction.dtype)
            valid = valid_pixels.unsqueeze(1).to(prediction.dtype).expand_as(prediction)
        per_element = F.binary_cross_entropy_with_logits(prediction, one_hot, reduction="none") * valid
        class_shape = (1, num_classes) + (1,) * (prediction.dim() - 2)
        if weight is not None:
            per_element = per_element * weight.view(class_shape)
        if self.reduction == "none":
            return per_element
        if self.reduction == "sum":
            return per_element.sum()
        if weight is not None and self.norm_loss_with_class_weight:
            denominator = (weight.view(class_shape) * one_hot * valid).sum()
        else:
            denominator = valid.sum()
        return per_element.sum() / denominator.clamp(min=torch.finfo(per_element.dtype).tiny)
