"""``SemanticLevelContext``: ISNet's semantic-level context (Jin et al., 2021), as SSSegmentation builds it
(``isnet/semanticlevel.py``; module names kept), with its per-image, per-class Python loop vectorised.

Given features ``x`` ``[B, C, H, W]`` and class logits ``preds`` ``[B, K, H, W]``, every position belongs to the
region of its argmax class. Each region gets a centre: the features of its positions weighted by the softmax, over
the region, of their logits for that class. Every position takes its region's centre; ``x`` then attends (a
:class:`~segkit.models.layers.self_attention.SelfAttentionBlock`) to these centres, and with ``concat_input`` a 3x3
conv-norm-act ``bottleneck`` fuses ``[image-level context, semantic context]``.

The regions are computed for all images and classes at once: a masked softmax over the positions of a ``[B, K, N]``
membership, one batched matmul for the ``[B, K, C]`` centres, one gather to hand them back to the positions
(:func:`class_centres`). It exports to ONNX; SSSegmentation's loop gives the same values (``tests/models/
test_context.py`` checks values and gradients against it).
"""

from __future__ import annotations

import torch
from torch import nn

from .conv_seq import conv_norm_act_seq
from .image_level_context import isnet_attention


def class_centres(x: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]``: at each position, the centre of its argmax class's region (see the module docstring)."""
    batch, channels, height, width = x.shape
    num_classes = preds.size(1)
    feats = x.flatten(2).transpose(1, 2)  # [B, N, C]
    logits = preds.flatten(2)  # [B, K, N]
    argmax = logits.argmax(dim=1)  # [B, N]
    classes = torch.arange(num_classes, device=x.device).view(1, num_classes, 1)
    member = argmax.unsqueeze(1) == classes  # [B, K, N]
    masked = logits.masked_fill(~member, torch.finfo(logits.dtype).min)
    weights = masked.softmax(dim=2) * member.to(logits.dtype)  # 0 outside the region; empty regions all 0
    centres = torch.bmm(weights.to(feats.dtype), feats)  # [B, K, C]
    gathered = centres.gather(1, argmax.unsqueeze(2).expand(batch, height * width, channels))  # [B, N, C]
    return gathered.transpose(1, 2).reshape(batch, channels, height, width)


class SemanticLevelContext(nn.Module):
    """``x`` attending to its class-region centres (see the module docstring)."""

    def __init__(self, feats_channels: int, transform_channels: int, concat_input: bool = False,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None) -> None:
        super().__init__()
        self.correlate_net = isnet_attention(feats_channels, feats_channels, transform_channels, norm_cfg, act_cfg)
        self.bottleneck = (
            conv_norm_act_seq(feats_channels * 2, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
            if concat_input else None
        )

    def forward(self, x: torch.Tensor, preds: torch.Tensor, feats_il: torch.Tensor | None) -> torch.Tensor:
        feats = self.correlate_net(x, class_centres(x, preds))
        if self.bottleneck is not None:
            feats = self.bottleneck(torch.cat([feats_il, feats], dim=1))
        return feats
