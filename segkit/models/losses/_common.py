"""Pieces every loss shares: shape checks, the ``[N, C]`` row layout, reduction, scaling and flooding.

SSSegmentation's losses all end the same way: the reduced loss is multiplied by ``scale_factor`` and then
*flooded* with ``lowest_loss_value`` b, ``|L - b| + b`` (below b the gradient ascends; SSSegmentation's
tutorial calls it a clamp, which it is not). Most of them also work on ``[N, C]`` rows: the prediction
``[B, C, *S]`` is flattened to one row per pixel, and an index target ``[B, *S]`` becomes a one-hot row.

This module starts with ``_`` so ``import_submodules`` skips it; the losses import it explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")


def check_reduction(name: str, reduction: str, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{name}: reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")


def check_pair(name: str, prediction: torch.Tensor, target: torch.Tensor, *, index_target: bool = True) -> bool:
    """Check that ``target`` fits ``prediction``; return True for an index target, False for a same-shape one.

    An index target drops the class dimension 1 of the prediction: ``[B, C, *S]`` goes with ``[B, *S]``
    (``[N, C]`` with ``[N]``).
    """
    if prediction.shape == target.shape:
        return False
    if index_target and prediction.dim() >= 2 and target.dim() == prediction.dim() - 1 \
            and prediction.size(0) == target.size(0) and prediction.shape[2:] == target.shape[1:]:
        return True
    wanted = "the same shape" if not index_target else "the same shape or the prediction's shape without dim 1"
    raise ValueError(f"{name}: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} do not "
                     f"match (the target must have {wanted})")


def finish(loss: torch.Tensor, scale_factor: float, lowest_loss_value: float | None) -> torch.Tensor:
    """Multiply by ``scale_factor``, then flood: ``|L - b| + b`` with ``b = lowest_loss_value``."""
    loss = loss * scale_factor
    if lowest_loss_value is not None:
        loss = (loss - lowest_loss_value).abs() + lowest_loss_value
    return loss


def reduce_loss(loss: torch.Tensor, reduction: str, avg_factor: torch.Tensor | None = None) -> torch.Tensor:
    """``"none"``: as is; ``"sum"``: the sum; ``"mean"``: the sum over ``avg_factor`` (default: the element count).

    An empty or zero denominator gives 0 instead of NaN (an all-ignored batch must not poison the weights).
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction != "mean":
        raise ValueError(f"unknown reduction {reduction!r}")
    if avg_factor is None:
        avg_factor = loss.new_tensor(float(loss.numel()))
    return loss.sum() / avg_factor.clamp(min=torch.finfo(loss.dtype).tiny)


def to_rows(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, *S]`` -> ``[B * prod(S), C]`` (one row per pixel); ``[N, C]`` stays as it is."""
    return x.movedim(1, -1).reshape(-1, x.size(1))


def one_hot_rows(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot rows of labels in ``[0, num_classes]``, as SSSegmentation builds them.

    SSSegmentation one-hots into ``num_classes + 1`` columns and keeps the first ``num_classes``, so a label equal
    to ``num_classes`` is a row of zeros (a pixel of no class); with one class it keeps column 1 (label 1 is the
    foreground, label 0 the background). Any other label is an error (``F.one_hot`` raises).
    """
    one_hot = F.one_hot(labels, num_classes + 1)
    return (one_hot[:, 1:2] if num_classes == 1 else one_hot[:, :num_classes]).float()


def kept_channels(num_classes: int, ignore_index: int, device: torch.device) -> torch.Tensor | None:
    """The channels a same-shape target keeps: all but channel ``ignore_index`` when it is in range (else None)."""
    if 0 <= ignore_index < num_classes:
        return torch.arange(num_classes, device=device) != ignore_index
    return None


@dataclass
class Rows:
    """A prediction and its target as rows: ``x`` and ``t`` are ``[M, K]``.

    With an index target, ``rows`` marks the pixels kept (those not ``ignore_index``) and ``t`` is their one-hot
    (see ``one_hot_rows``). With a same-shape target every pixel is kept and ``channels`` marks the channels kept
    (when asked to drop it: every channel but ``ignore_index``).
    """

    x: torch.Tensor
    t: torch.Tensor
    rows: torch.Tensor | None
    channels: torch.Tensor | None
    shape: torch.Size  # the prediction's shape

    def per_pixel(self, values: torch.Tensor) -> torch.Tensor:
        """``[M]`` row values -> ``[B, *S]`` (0 at the rows not kept)."""
        if self.rows is not None:
            full = values.new_zeros(self.rows.shape)
            full[self.rows] = values
            values = full
        return values.reshape(self.shape[:1] + self.shape[2:])

    def per_element(self, values: torch.Tensor) -> torch.Tensor:
        """``[M, K]`` values -> ``[B, C, *S]`` (0 at the rows and channels not kept)."""
        num_classes = self.shape[1]
        if self.channels is not None:
            full = values.new_zeros(values.size(0), num_classes)
            full[:, self.channels] = values
            values = full
        if self.rows is not None:
            full = values.new_zeros(self.rows.numel(), num_classes)
            full[self.rows] = values
            values = full
        return values.reshape(self.shape[:1] + self.shape[2:] + (num_classes,)).movedim(-1, 1)

    def class_weight(self, weight: torch.Tensor | None) -> torch.Tensor | None:
        """A per-class weight ``[C]`` restricted to the kept channels, on the rows' device and dtype."""
        if weight is None:
            return None
        if weight.numel() != self.shape[1]:
            raise ValueError(f"class_weight has {weight.numel()} entries for {self.shape[1]} classes")
        weight = weight.to(device=self.x.device, dtype=self.x.dtype)
        return weight if self.channels is None else weight[self.channels]


def to_class_rows(prediction: torch.Tensor, target: torch.Tensor, ignore_index: int, *, index_target: bool,
                  drop_ignored_channel: bool = True) -> Rows:
    """Lay out ``prediction`` and ``target`` as ``Rows`` (index targets: ignored pixels dropped, one-hot rows)."""
    x = to_rows(prediction)
    num_classes = prediction.size(1)
    if index_target:
        labels = target.reshape(-1).long()
        rows = labels != ignore_index
        return Rows(x[rows], one_hot_rows(labels[rows], num_classes).to(x.dtype), rows, None, prediction.shape)
    t = to_rows(target).to(x.dtype)
    channels = kept_channels(num_classes, ignore_index, x.device) if drop_ignored_channel else None
    if channels is not None:
        x, t = x[:, channels], t[:, channels]
    return Rows(x, t, None, channels, prediction.shape)


class SameShapeLoss(torch.nn.Module):
    """Base of the losses between two tensors of the same shape (L1, MSE, cosine): SSSegmentation's arguments
    ``(scale_factor, reduction, lowest_loss_value)``; a subclass gives only :meth:`elementwise`."""

    def __init__(
        self,
        scale_factor: float = 1.0,
        reduction: Literal["mean", "sum", "none"] = "mean",
        lowest_loss_value: float | None = None,
    ) -> None:
        super().__init__()
        check_reduction(type(self).__name__, reduction)
        self.scale_factor = scale_factor
        self.reduction = reduction
        self.lowest_loss_value = lowest_loss_value

    def elementwise(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(type(self).__name__, prediction, target, index_target=False)
        loss = reduce_loss(self.elementwise(prediction, target.to(prediction.dtype)), self.reduction)
        return finish(loss, self.scale_factor, self.lowest_loss_value)
