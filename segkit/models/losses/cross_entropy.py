"""``CrossEntropyLoss`` with SSSegmentation's arguments and semantics (``crossentropyloss.py``).

The prediction ``[B, C, *S]`` (``[B, C, H, W]``, or ``[N, C]`` rows as the OHEM sampler gives them) is laid out as
one row per pixel. The target is either

* an **index** target ``[B, *S]``: pixels equal to ``ignore_index`` are dropped; a label equal to ``C`` is a
  pixel of no class (SSSegmentation one-hots into ``C + 1`` columns and keeps ``C``): it adds 0 to the loss but
  still counts in the unweighted mean; or
* a **same-shape** target ``[B, C, *S]`` (one-hot or soft): channel ``ignore_index`` is dropped from both tensors
  when it is in range. Following SSSegmentation, the softmax loss of a pixel is
  ``CE(x, argmax(t)) * sum(t)`` (``sum(w * t)`` with class weights): a soft target acts as a hard argmax target
  scaled by its mass, **not** torch's soft-target cross-entropy (the two agree for one-hot targets). With
  ``class_weight`` the weights of the kept channels are used (SSSegmentation's softmax path fails there: it
  forgets the dropped channel when it selects the class weights; fixed here).

Softmax (default): the per-pixel loss is ``F.cross_entropy`` against that class (with ``label_smoothing``),
times the pixel's class weight. ``reduction="mean"`` divides by ``sum(class_weight * one_hot)`` over the kept
pixels (torch's weighted mean), or by the number of kept pixels without ``class_weight`` or with
``norm_loss_with_class_weight=False``. With both ``class_weight`` and ``label_smoothing`` the smoothed loss is
weighted by the weight of the pixel's class, as SSSegmentation does (torch weights the smoothing term per class).

``use_sigmoid=True``: binary cross-entropy with logits against the one-hot target, per element (ENCNet's SE
loss); with one class, label 1 is the foreground. The mean is over elements, or divided by
``sum(class_weight * one_hot)``.

``class_weight="batch_balanced"`` computes the weights from each batch: ``w_c = (n - n_c) / n`` with ``n_c`` the
number of kept pixels of class ``c`` (the column sums of the one-hot, or of a same-shape target) and
``n = sum_c n_c``. With two classes this is exactly CE2P's edge weighting (``ce2p.py``:
``[num_pos / (num_pos + num_neg), num_neg / (num_pos + num_neg)]`` for classes 0 = non-edge, 1 = edge), bit for bit:
``n - n_0`` is ``n_1`` exactly. A batch without any labelled pixel gets weights 1.

``reduction="none"`` gives the per-pixel loss ``[B, *S]`` (softmax) or per-element loss ``[B, C, *S]``
(sigmoid), 0 at dropped pixels and channels (SSSegmentation's ``"none"`` always fails for the softmax loss, and
for the sigmoid loss whenever a pixel or channel is dropped). A batch whose
pixels are all ignored gives a loss of 0 (not NaN, which would poison the weights). The result is multiplied by
``scale_factor``; ``lowest_loss_value`` b then applies *flooding*, ``|L - b| + b`` (SSSegmentation's implementation;
its tutorial's description as a clamp is wrong). SSSegmentation's unused per-pixel ``weight`` argument is not
taken.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES
from ._common import Rows, check_pair, check_reduction, finish, reduce_loss, to_class_rows

BATCH_BALANCED = "batch_balanced"


def batch_balanced_weight(t: torch.Tensor) -> torch.Tensor:
    """``w_c = (n - n_c) / n`` from the one-hot (or same-shape) target rows ``t`` ``[M, K]``; 1s when ``n = 0``."""
    counts = t.detach().float().sum(0)
    total = counts.sum()
    return torch.where(total > 0, (total - counts) / total, torch.ones_like(counts)).to(t.dtype)


@LOSSES.register("CrossEntropyLoss")
class CrossEntropyLoss(nn.Module):
    """Cross-entropy of segmentation logits against index or same-shape targets; see the module docstring."""

    def __init__(
        self,
        use_sigmoid: bool = False,
        reduction: Literal["mean", "sum", "none"] = "mean",
        class_weight: list[float] | Literal["batch_balanced"] | None = None,
        scale_factor: float = 1.0,
        lowest_loss_value: float | None = None,
        label_smoothing: float | None = None,
        ignore_index: int = -100,
        norm_loss_with_class_weight: bool = True,
    ) -> None:
        super().__init__()
        check_reduction("CrossEntropyLoss", reduction)
        if isinstance(class_weight, str) and class_weight != BATCH_BALANCED:
            raise ValueError(f"CrossEntropyLoss: class_weight is a list of floats or '{BATCH_BALANCED}', "
                             f"got {class_weight!r}")
        self.use_sigmoid = use_sigmoid
        self.reduction = reduction
        self.scale_factor = scale_factor
        self.lowest_loss_value = lowest_loss_value
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.norm_loss_with_class_weight = norm_loss_with_class_weight
        self.batch_balanced = class_weight == BATCH_BALANCED
        weight = None if class_weight is None or self.batch_balanced else torch.tensor(class_weight,
                                                                                        dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        index_target = check_pair("CrossEntropyLoss", prediction, target)
        if not self.use_sigmoid and prediction.size(1) < 2:
            raise ValueError("CrossEntropyLoss: the softmax loss needs at least 2 classes (use use_sigmoid=True)")
        if index_target and not self.use_sigmoid and not self.batch_balanced:
            return finish(self._softmax_index_loss(prediction, target), self.scale_factor, self.lowest_loss_value)
        rows = to_class_rows(prediction, target, self.ignore_index, index_target=index_target)
        weight = batch_balanced_weight(rows.t) if self.batch_balanced else rows.class_weight(self.class_weight)
        loss = self._sigmoid_loss(rows, weight) if self.use_sigmoid else self._softmax_loss(rows, weight)
        return finish(loss, self.scale_factor, self.lowest_loss_value)

    def _softmax_index_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The softmax loss of an index target computed in place on ``[B, C, *S]`` (no one-hot ``[pixels, C]`` rows:
        at 150 classes and 16 x 512 x 512 labels those are gigabytes per loss term): the same values as the row
        path, with a label equal to ``C`` a pixel of no class and ``ignore_index`` pixels dropped."""
        num_classes = prediction.size(1)
        labels = target.long()
        kept = labels != self.ignore_index
        if (kept & ((labels < 0) | (labels > num_classes))).any():
            raise RuntimeError(f"CrossEntropyLoss: labels must be in [0, {num_classes}] or ignore_index "
                               f"({self.ignore_index}); got {sorted(labels[kept].unique().tolist())[:8]}")
        real = kept & (labels < num_classes)
        safe = torch.where(real, labels, torch.zeros_like(labels))
        ce = F.cross_entropy(prediction, safe, reduction="none", label_smoothing=self.label_smoothing or 0.0)
        if self.class_weight is None:
            mass = real.to(ce.dtype)
        else:
            if self.class_weight.numel() != num_classes:
                raise ValueError(f"class_weight has {self.class_weight.numel()} entries for {num_classes} classes")
            weight = self.class_weight.to(device=prediction.device, dtype=prediction.dtype).to(ce.dtype)
            mass = torch.where(real, weight[safe], torch.zeros((), dtype=ce.dtype, device=ce.device))
        per_pixel = torch.where(real, ce * mass, torch.zeros((), dtype=ce.dtype, device=ce.device))
        if self.reduction == "none":
            return per_pixel
        if self.reduction == "sum":
            return per_pixel.sum()
        use_weights = self.class_weight is not None and self.norm_loss_with_class_weight
        denominator = mass.sum() if use_weights else kept.sum().to(ce.dtype)
        return per_pixel.sum() / denominator.clamp(min=torch.finfo(ce.dtype).tiny)

    def _avg_factor(self, rows: Rows, weight: torch.Tensor | None) -> torch.Tensor | None:
        if weight is None or not self.norm_loss_with_class_weight:
            return None
        return (rows.t * weight).sum()

    def _softmax_loss(self, rows: Rows, weight: torch.Tensor | None) -> torch.Tensor:
        ce = F.cross_entropy(rows.x, rows.t.argmax(dim=1), reduction="none",
                             label_smoothing=self.label_smoothing or 0.0)
        mass = rows.t.sum(1) if weight is None else (rows.t * weight).sum(1)
        per_pixel = ce * mass
        if self.reduction == "none":
            return rows.per_pixel(per_pixel)
        return reduce_loss(per_pixel, self.reduction, self._avg_factor(rows, weight))

    def _sigmoid_loss(self, rows: Rows, weight: torch.Tensor | None) -> torch.Tensor:
        per_element = F.binary_cross_entropy_with_logits(rows.x, rows.t, reduction="none")
        if weight is not None:
            per_element = per_element * weight
        if self.reduction == "none":
            return rows.per_element(per_element)
        return reduce_loss(per_element, self.reduction, self._avg_factor(rows, weight))
