"""``NonLocalHead``: the decoder of SSSegmentation's NonLocalNet (Wang et al., "Non-local Neural Networks", 2018).

    feats  = conv_after_nl(nl_block(conv_before_nl(x)))     # 3x3 conv-norm-act, NonLocal2d, 3x3 conv-norm-act
    logits = decoder(concat(x, feats))                      # 3x3 conv-norm-act -> Dropout2d -> 1x1
"""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.non_local import NonLocal2d, NonLocalMode
from .base import Head


def concat_decoder(in_channels: int, feats_channels: int, num_classes: int, dropout: float,
                   norm_cfg: dict | None, act_cfg: dict | None) -> nn.Sequential:
    """The classifier of the non-local family on ``concat(input, context feats)``: 3x3 conv-norm-act from
    ``in_channels + feats_channels`` -> Dropout2d -> 1x1 (SSSegmentation's ``decoder`` layout)."""
    return nn.Sequential(
        ConvNormAct(in_channels + feats_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg),
        nn.Dropout2d(dropout),
        nn.Conv2d(feats_channels, num_classes, 1),
    )


@HEADS.register("NonLocalHead")
class NonLocalHead(Head):
    """3x3 conv-norm-act -> :class:`~segkit.models.layers.non_local.NonLocal2d` (``reduction``, ``use_scale``,
    ``mode``; its ``conv_out`` uses ``norm_cfg``) -> 3x3 conv-norm-act, concatenated with the input and classified."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        reduction: int = 2,
        use_scale: bool = True,
        mode: NonLocalMode = "embeddedgaussian",
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if reduction < 1:
            raise ArgumentError("reduction", f"reduction must be >= 1, got {reduction}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.conv_before_nl = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.nl_block = NonLocal2d(feats_channels, reduction=reduction, use_scale=use_scale, mode=mode,
                                   norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_after_nl = ConvNormAct(feats_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder = concat_decoder(in_channels, feats_channels, num_classes, dropout, norm_cfg, act_cfg)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.select(features)
        feats = self.conv_after_nl(self.nl_block(self.conv_before_nl(x)))
        return self.decoder(torch.cat([x, feats], dim=1))
