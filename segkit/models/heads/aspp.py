"""``ASPPHead``: Deeplabv3's decoder (Chen et al., 2017): ASPP with image pooling on the last feature, then a
classifier."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG
from ..layers.aspp import ASPP
from .base import Head


@HEADS.register("ASPPHead")
class ASPPHead(Head):
    """:class:`~segkit.models.layers.aspp.ASPP` (``dilations``: 1x1 for 1, 3x3 atrous otherwise; image pooling; 3x3
    bottleneck to ``feats_channels``) -> Dropout2d -> 1x1 classifier, on the feature at ``in_index`` (the last).

    Children as SSSegmentation's Deeplabv3: ``aspp_net`` and ``decoder`` (Dropout2d, 1x1 conv).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        dilations: tuple[int, ...] = (1, 6, 12, 18),
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.aspp_net = ASPP(in_channels, feats_channels, dilations, align_corners=align_corners,
                             norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(feats_channels, num_classes, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.decoder(self.aspp_net(self.select(features)))
