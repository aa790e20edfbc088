"""``MCIBIPlusPlus``: "MCIBI++: Soft Mining Contextual Information Beyond Image for Semantic Segmentation".

Backbone -> :class:`~segkit.models.heads.mcibiplusplus.MCIBIPlusPlusHead` (+ auxiliary heads while training). The
segmentor needs the ground truth and the training progress: during ``head.warmup_epoch`` epochs the memory is read
with the ground truth, and after each training forward the memory's per-class mean/std move towards the batch's
(averaged across ranks with ``reduce_mean``). Training outputs: ``out``, ``pr``, ``cwi`` (with the context within
image) and the auxiliary outputs, supervised by ``loss_cls``, ``loss_pr``, ``loss_cwi``, ``loss_aux``.

SSSeg's test-time "cascade" keyword (``memory_gather_logits``, used by no config) is not provided.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...registry import SEGMENTORS
from ..layers.memory import momentum_at
from .base import EncoderDecoder

if TYPE_CHECKING:
    from ..features import FeatureInfo


def one_hot_logits(seg: torch.Tensor, size: tuple[int, int], num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """The ground truth, resized (nearest) to ``size``, as one-hot ``[B, K, h, w]`` (0 where it is not a class)."""
    seg = F.interpolate(seg.unsqueeze(1).to(like.dtype), size=size, mode="nearest")[:, 0].long()
    valid = (seg >= 0) & (seg < num_classes)
    onehot = F.one_hot(seg.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).to(like.dtype)
    return onehot * valid.unsqueeze(1).to(like.dtype)


@SEGMENTORS.register("MCIBIPlusPlus")
class MCIBIPlusPlus(EncoderDecoder):
    """See the module docstring."""

    head_type = "MCIBIPlusPlusHead"
    uses_targets = True
    uses_progress = True
    ssseg_prefixes = {
        "backbone_net": "backbone", "context_within_image_module": "head.context_within_image_module",
        "self_attention": "head.self_attention", "bottleneck": "head.bottleneck",
        "memory_module": "head.memory_module", "lateral_convs": "head.fpn.lateral_convs",
        "fpn_convs": "head.fpn.fpn_convs", "decoder_pr": "head.decoder_pr", "decoder_cwi": "head.decoder_cwi",
        "decoder_cls": "head.decoder_cls", "auxiliary_decoder": "aux_heads",
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epoch: int | None = None
        self.lr: float | None = None

    @classmethod
    def head_arguments(cls, features: FeatureInfo) -> dict[str, Any]:
        return {"feature_channels": features.channels}  # the head's FPN reads every selected level

    def set_progress(self, *, epoch: int, iteration: int, lr: float, max_epochs: int, max_iters: int) -> None:
        self.epoch, self.lr = epoch, lr

    def forward(self, images: torch.Tensor, targets: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        features = self.extract_features(images)
        if not self.training:
            return {"out": self.head.decode(features)[0]["out"]}
        if targets is None or "seg_target" not in targets:
            raise ValueError("MCIBIPlusPlus updates its memory from the ground truth: call it with targets in training")
        seg = targets["seg_target"]
        gt_weights = None
        if self.epoch is not None and self.epoch < self.head.warmup_epoch:
            x = self.head.select(features)
            with torch.no_grad():
                gt_weights = one_hot_logits(seg, x.shape[2:], self.head.num_classes, x)
        outputs, representations = self.head.decode(features, gt_weights)
        if self.aux_heads is not None:
            for name, aux_head in zip(self.aux_names, self.aux_heads, strict=True):
                outputs[name] = aux_head(features)
        cfg = self.head.update_cfg
        with torch.no_grad():
            feats = F.interpolate(representations, size=seg.shape[-2:], mode="bilinear",
                                  align_corners=self.align_corners)
            self.head.memory_module.update(feats, seg, momentum_at(cfg["momentum_cfg"], self.lr),
                                           cfg["ignore_index"], reduce_mean=self.reduce_mean)
        return outputs
