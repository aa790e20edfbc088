"""``APCHead``: APCNet's decoder (He et al., CVPR 2019): one Adaptive Context Module per pool scale."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.acm import AdaptiveContextModule
from .base import Head


@HEADS.register("APCHead")
class APCHead(Head):
    """The input and one :class:`~segkit.models.layers.acm.AdaptiveContextModule` output per ``pool_scales`` entry,
    concatenated -> 3x3 conv-norm-act -> Dropout2d -> 1x1 classifier, on the feature at ``in_index`` (the last);
    logits at its resolution. Children as SSSegmentation's APCNet: ``acm_modules``, ``decoder``.
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
        if not pool_scales:
            raise ArgumentError("pool_scales", "give at least one pool scale")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.acm_modules = nn.ModuleList(
            AdaptiveContextModule(in_channels, feats_channels, scale, align_corners=align_corners,
                                  norm_cfg=norm_cfg, act_cfg=act_cfg)
            for scale in pool_scales
        )
        self.decoder = nn.Sequential(
            ConvNormAct(in_channels + feats_channels * len(pool_scales), feats_channels, 3,
                        norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Dropout2d(dropout),
            nn.Conv2d(feats_channels, num_classes, 1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.select(features)
        return self.decoder(torch.cat([x] + [acm(x) for acm in self.acm_modules], dim=1))
