"""``PSPHead``: PSPNet's decoder (Zhao et al., CVPR 2017): pyramid pooling on the last feature map, then a classifier."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG
from ..layers.ppm import PPM
from .base import Head


@HEADS.register("PSPHead")
class PSPHead(Head):
    """:class:`~segkit.models.layers.ppm.PPM` (pool scales, 1x1 branch convs, 3x3 bottleneck to ``feats_channels``)
    -> Dropout2d -> 1x1 classifier, on the feature at ``in_index`` (the last); logits at its resolution.

    Children as SSSegmentation's PSPNet: ``ppm_net`` and ``decoder`` (Dropout2d, 1x1 conv).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.ppm_net = PPM(in_channels, feats_channels, pool_scales, align_corners=align_corners,
                           norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(feats_channels, num_classes, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.decoder(self.ppm_net(self.select(features)))
