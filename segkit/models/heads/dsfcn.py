"""``DepthwiseSeparableFCNHead``: FCN's decoder with depthwise-separable convolutions (Fast-SCNN's classifier)."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, DepthwiseSeparableConv2d
from .base import Head


@HEADS.register("DepthwiseSeparableFCNHead")
class DepthwiseSeparableFCNHead(Head):
    """``num_convs`` x [3x3 depthwise-separable conv, each half with norm and act] -> Dropout2d -> 1x1 classifier,
    on the feature at ``in_index`` (the last by default); logits at that feature's resolution."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        num_convs: int = 2,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if num_convs < 0:
            raise ArgumentError("num_convs", f"num_convs must be >= 0, got {num_convs}")
        self.convs = nn.Sequential(*[
            DepthwiseSeparableConv2d(in_channels if i == 0 else feats_channels, feats_channels, 3, padding=1,
                                     norm_cfg=norm_cfg, act_cfg=act_cfg)
            for i in range(num_convs)
        ])
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(feats_channels if num_convs > 0 else in_channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.convs(self.select(features))))
