"""``CCHead``: the decoder of CCNet (Huang et al., 2019), as SSSegmentation's ``CCNet`` builds it."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError
from ..layers.conv_seq import conv_norm_act_seq
from ..layers.criss_cross import CrissCrossAttention
from .base import Head


@HEADS.register("CCHead")
class CCHead(Head):
    """3x3 ``conv_before_cca`` -> one :class:`~segkit.models.layers.criss_cross.CrissCrossAttention` applied
    ``num_recurrence`` times (shared weights) -> 3x3 ``conv_after_cca`` -> concat with the input -> ``decoder``
    (3x3 conv-norm-act, Dropout2d, 1x1 classifier), on the feature at ``in_index``.

    Module names are SSSegmentation's (``conv_before_cca``, ``cca``, ``conv_after_cca``, ``decoder``); ``cca`` has
    mmcv's parameter names. ``feats_channels`` must be at least 8 (the attention's query/key use 1/8 of it).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        num_recurrence: int = 2,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if num_recurrence < 0:
            raise ArgumentError("num_recurrence", f"must be >= 0, got {num_recurrence}")
        if feats_channels < 8:
            raise ArgumentError("feats_channels", f"criss-cross attention needs at least 8 channels (its query and "
                                f"key maps have feats_channels // 8), got {feats_channels}")
        self.num_recurrence = num_recurrence
        self.conv_before_cca = conv_norm_act_seq(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.cca = CrissCrossAttention(feats_channels)
        self.conv_after_cca = conv_norm_act_seq(feats_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder = nn.Sequential(
            *conv_norm_act_seq(in_channels + feats_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Dropout2d(dropout),
            nn.Conv2d(feats_channels, num_classes, kernel_size=1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.select(features)
        feats = self.conv_before_cca(x)
        for _ in range(self.num_recurrence):
            feats = self.cca(feats)
        feats = self.conv_after_cca(feats)
        return self.decoder(torch.cat([x, feats], dim=1))
