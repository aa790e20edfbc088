"""``LovaszLoss`` with SSSegmentation's arguments and semantics (``lovaszloss.py``).

The Lovász extension of the Jaccard loss (Berman et al., 2018): errors sorted in decreasing order are dotted with
the gradient of the Jaccard loss along that order (``lovasz_grad``).

Targets are laid out as one row per pixel: an index target drops ``ignore_index`` pixels and is one-hot encoded
(``C + 1`` columns, ``C`` kept: a label ``C`` is a pixel of no class; one class keeps column 1); a same-shape
target is used as it is.

``classes`` picks the classes: ``"present"`` (those with a positive pixel), ``"all"``, or a list of class ids.

``use_sigmoid=False`` (default), softmax form: probabilities ``p = softmax(x)`` (**the raw logits when there is
one channel**, as in SSSegmentation). For each class ``c``: errors ``|t_c - p_c|`` over the pixels, sorted, dotted
with ``lovasz_grad`` of the sorted ``t_c``. The class losses are averaged, or averaged with weights
``class_weight[c]``. Class ``ignore_index`` is skipped for a same-shape target only; with an index target its pixels
are gone, so ``"present"`` skips it and ``"all"`` or a list count it (its loss is then the largest ``p_c``),
as in SSSegmentation.

``use_sigmoid=True``, sigmoid form: ``p = sigmoid(x)``; the chosen classes (never ``ignore_index``) are scored
*together*, as one binary problem over all (pixel, class) pairs: errors ``1 - p * (2t - 1)`` (times
``class_weight[c]``), sorted, ``relu``-ed and dotted with ``lovasz_grad``. Note this is SSSegmentation's
formula: the hinge is on the sigmoid probabilities, not on the logits as in the Lovász hinge of the paper, so a
negative's error is ``1 + p`` and a positive's ``1 - p``.

``per_image=True`` computes the loss per image and reduces the ``[B]`` values by ``reduction``; otherwise the loss
is one value over the batch (which every reduction leaves as it is). The result is multiplied by ``scale_factor``
and flooded with ``lowest_loss_value`` (``|L - b| + b``).

Fixed SSSegmentation bugs: when no class is left to score (e.g. ``"present"`` on an image whose pixels are all
ignored), SSSegmentation's softmax form fails (``torch.stack`` of an empty list); here that loss is 0. Its sigmoid
form with ``classes="all"`` and ``class_weight`` fails too (the class ids are 0-d tensors that cannot index the
weights); here it weights as with any other class list.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES
from ._common import check_pair, check_reduction, finish, reduce_loss, to_class_rows


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. errors sorted in decreasing order."""
    gt_sorted = gt_sorted.float()
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


@LOSSES.register("LovaszLoss")
class LovaszLoss(nn.Module):
    """Lovász-softmax / Lovász-sigmoid loss; see the module docstring."""

    def __init__(
        self,
        use_sigmoid: bool = False,
        classes: Literal["present", "all"] | list[int] = "present",
        per_image: bool = False,
        reduction: Literal["mean", "sum", "none"] = "mean",
        class_weight: list[float] | None = None,
        scale_factor: float = 1.0,
        ignore_index: int = -100,
        lowest_loss_value: float | None = None,
    ) -> None:
        super().__init__()
        check_reduction("LovaszLoss", reduction)
        if isinstance(classes, str):
            if classes not in ("present", "all"):
                raise ValueError(f"LovaszLoss: classes is 'present', 'all' or a list of class ids, got {classes!r}")
        elif not all(isinstance(c, int) and c >= 0 for c in classes):
            raise ValueError(f"LovaszLoss: classes must be non-negative class ids, got {classes!r}")
        else:
            classes = sorted(set(classes))
        self.use_sigmoid = use_sigmoid
        self.classes = classes
        self.per_image = per_image
        self.reduction = reduction
        self.class_weight = None if class_weight is None else list(class_weight)
        self.scale_factor = scale_factor
        self.ignore_index = ignore_index
        self.lowest_loss_value = lowest_loss_value

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        index_target = check_pair("LovaszLoss", prediction, target)
        num_classes = prediction.size(1)
        if isinstance(self.classes, list) and self.classes and self.classes[-1] >= num_classes:
            raise ValueError(f"LovaszLoss: classes {self.classes} out of range for {num_classes} classes")
        if self.class_weight is not None and len(self.class_weight) != num_classes:
            raise ValueError(f"class_weight has {len(self.class_weight)} entries for {num_classes} classes")
        if self.use_sigmoid:
            probs, single = prediction.sigmoid(), self._sigmoid_loss
        else:
            probs = F.softmax(prediction, dim=1) if num_classes > 1 else prediction
            single = self._softmax_loss
        if self.per_image:
            loss = torch.stack([single(probs[i:i + 1], target[i:i + 1], index_target)
                                for i in range(probs.size(0))])
        else:
            loss = single(probs, target, index_target)
        loss = reduce_loss(loss, self.reduction)
        return finish(loss, self.scale_factor, self.lowest_loss_value)

    def _sigmoid_loss(self, probs: torch.Tensor, target: torch.Tensor, index_target: bool) -> torch.Tensor:
        rows = to_class_rows(probs, target, self.ignore_index, index_target=index_target,
                             drop_ignored_channel=False)
        p, t = rows.x, rows.t
        if self.classes == "present":
            classes = [c for c in range(p.size(1)) if t[:, c].sum() > 0]
        elif self.classes == "all":
            classes = list(range(p.size(1)))
        else:
            classes = list(self.classes)
        classes = [c for c in classes if c != self.ignore_index]
        p, t = p[:, classes], t[:, classes]
        errors = 1.0 - p * (2.0 * t - 1.0)
        if self.class_weight is not None:
            errors = errors * p.new_tensor([self.class_weight[c] for c in classes])
        errors_sorted, order = torch.sort(errors.reshape(-1), descending=True)
        grad = lovasz_grad(t.reshape(-1)[order]).to(errors_sorted.dtype)
        return torch.dot(F.relu(errors_sorted), grad)

    def _softmax_loss(self, probs: torch.Tensor, target: torch.Tensor, index_target: bool) -> torch.Tensor:
        rows = to_class_rows(probs, target, self.ignore_index, index_target=index_target,
                             drop_ignored_channel=False)
        p, t = rows.x, rows.t
        candidates = range(p.size(1)) if isinstance(self.classes, str) else self.classes
        losses, weights = [], []
        for c in candidates:
            if c == self.ignore_index and not index_target:
                continue
            fg = t[:, c]
            if self.classes == "present" and fg.sum() == 0:
                continue
            errors_sorted, order = torch.sort((fg - p[:, c]).abs(), descending=True)
            losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order]).to(errors_sorted.dtype)))
            if self.class_weight is not None:
                weights.append(self.class_weight[c])
        if not losses:  # SSSegmentation fails here (torch.stack of an empty list)
            return probs.sum() * 0
        loss = torch.stack(losses)
        if self.class_weight is None:
            return loss.mean()
        weight = loss.new_tensor(weights)
        return (loss * weight).sum() / weight.sum()
