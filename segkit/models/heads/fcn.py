"""``FCNHead``: the decoder of FCN (SSSegmentation's ``FCN`` head semantics)."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from .base import Head


@HEADS.register("FCNHead")
class FCNHead(Head):
    """``num_convs`` x [3x3 conv (no bias) -> norm -> act] -> Dropout2d -> 1x1 classifier, on the last feature map.

    Reads the feature at ``in_index`` (the last by default). ``num_convs=0`` leaves Dropout2d -> 1x1 classifier
    from ``in_channels``. ``concat_input`` (mmseg's option)
    concatenates the input with the conv output and fuses them with one more 3x3 conv-norm-act. Logits are returned
    at the feature map's resolution.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        num_convs: int = 2,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        concat_input: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if num_convs < 0:
            raise ArgumentError("num_convs", f"num_convs must be >= 0, got {num_convs}")
        if concat_input and num_convs == 0:
            raise ArgumentError("concat_input", "concat_input needs num_convs >= 1")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.concat_input = concat_input
        self.convs = nn.Sequential(*[
            ConvNormAct(in_channels if i == 0 else feats_channels, feats_channels, 3,
                        norm_cfg=norm_cfg, act_cfg=act_cfg)
            for i in range(num_convs)
        ])
        self.conv_cat = (
            ConvNormAct(in_channels + feats_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
            if concat_input else None
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(feats_channels if num_convs > 0 else in_channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.select(features)
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.classifier(self.dropout(out))
