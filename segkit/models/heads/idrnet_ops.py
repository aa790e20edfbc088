"""IDRNet's class-level operations, vectorised over classes and images (SSSegmentation loops over both in Python).

* :func:`insert_dl_representations`: each pixel's features followed by the dataset-level representation of its
  predicted class.
* :func:`intervention_context`: per image, each predicted class's context (its pixels' features weighted by the
  softmax of its own logit over those pixels), mixed across classes by the softmax of the class relations (columns
  restricted to the classes present, optionally without one "intervention" class, non-positive relations pushed to
  -1e16) and written back to the pixels of each class.
* :func:`class_loss_statistics`: per image and class, the mean and (biased) variance of the per-pixel cross-entropy.
* :func:`class_feature_means`: per class, the mean feature over its pixels in the batch.

Each has a loop reference in the tests (SSSegmentation's semantics); they agree to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..layers.memory import one_hot_pixels

NEGATIVE_RELATION = -1e16
"""What SSSegmentation puts in place of non-positive class relations before their softmax."""


def insert_dl_representations(feats: torch.Tensor, logits: torch.Tensor, representations: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` features, ``[B, K, H, W]`` logits, ``[K, C]`` class representations -> ``[B, 2C, H, W]``."""
    classes = logits.argmax(dim=1)  # [B, H, W]
    inserted = representations.to(feats.dtype)[classes].permute(0, 3, 1, 2)
    return torch.cat([feats, inserted], dim=1)


def intervention_context(context: torch.Tensor, logits: torch.Tensor, relations: torch.Tensor,
                         intervention: torch.Tensor | None = None,
                         remove_negative: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """SSSeg's ``obtainidcontext``: ``(id_context [B, C, H, W], present [B, K])``.

    ``present`` marks the classes predicted somewhere in each image (minus ``intervention[b]``, a class index per
    image). Pixels of a class that is not present (the intervention class) get zeros.
    """
    batch, channels, height, width = context.shape
    num_classes = logits.shape[1]
    flat_logits = logits.reshape(batch, num_classes, height * width)
    classes = torch.arange(num_classes, device=logits.device)
    predicted = flat_logits.argmax(dim=1)  # [B, P]
    member = predicted.unsqueeze(1) == classes.view(1, -1, 1)  # [B, K, P]
    present = member.any(dim=2)
    if intervention is not None:
        present = present & (classes.unsqueeze(0) != intervention.view(-1, 1))
    lowest = torch.finfo(flat_logits.dtype).min
    weights = torch.softmax(flat_logits.masked_fill(~member, lowest), dim=2) * member
    class_context = torch.bmm(weights, context.reshape(batch, channels, -1).transpose(1, 2))  # [B, K, C]
    relation = relations.to(torch.float32).unsqueeze(0).expand(batch, -1, -1)
    if remove_negative:
        relation = relation.masked_fill(relation <= 0, NEGATIVE_RELATION)
    relation = relation.masked_fill(~present.unsqueeze(1), torch.finfo(torch.float32).min)
    mixing = torch.softmax(relation, dim=2).to(class_context.dtype)  # [B, K (target), K (source)]
    mixed = torch.bmm(mixing, class_context)  # [B, K, C]
    per_pixel = mixed.gather(1, predicted.unsqueeze(2).expand(-1, -1, channels))  # [B, P, C]
    keep = present.gather(1, predicted).unsqueeze(2).to(per_pixel.dtype)
    id_context = (per_pixel * keep).transpose(1, 2).reshape(batch, channels, height, width)
    return id_context, present


def class_loss_statistics(logits: torch.Tensor, target: torch.Tensor, num_classes: int,
                          ignore_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For one image, ``logits`` ``[K, H, W]`` and ``target`` ``[H, W]``: per class ``(count, mean, biased
    variance)`` of the per-pixel cross-entropy over the pixels labelled with that class (labels outside
    ``[0, K)`` and ``ignore_index`` skipped)."""
    label = target.reshape(-1).long()
    valid = (label >= 0) & (label < num_classes) & (label != ignore_index)
    loss = F.cross_entropy(logits.reshape(num_classes, -1).t().float(), label.clamp(0, num_classes - 1),
                           reduction="none")
    onehot = one_hot_pixels(label, valid, num_classes, loss.dtype)  # [P, K]
    counts = onehot.sum(0)
    means = (loss @ onehot) / counts.clamp_min(1)
    deviation = (loss - means[label.clamp(0, num_classes - 1)]) ** 2
    variances = (deviation @ onehot) / counts.clamp_min(1)
    return counts, means, variances


def class_feature_means(features: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int,
                        align_corners: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``features`` ``[B, C, h, w]`` (bilinearly resized, image by image, to the size of ``target`` ``[B, H, W]``) ->
    per class ``(count, mean feature [K, C])`` over the batch's pixels of that class."""
    counts = features.new_zeros(num_classes, dtype=torch.float32)
    sums = features.new_zeros(num_classes, features.shape[1], dtype=torch.float32)
    for image, label in zip(features.float(), target.long(), strict=True):
        if image.shape[1:] != label.shape:
            image = F.interpolate(image.unsqueeze(0), size=label.shape, mode="bilinear",
                                  align_corners=align_corners)[0]
        label = label.reshape(-1)
        valid = (label >= 0) & (label < num_classes) & (label != ignore_index)
        onehot = one_hot_pixels(label, valid, num_classes, torch.float32)
        counts += onehot.sum(0)
        sums += (image.reshape(image.shape[0], -1) @ onehot).t()
    return counts, sums / counts.clamp_min(1).unsqueeze(1)
