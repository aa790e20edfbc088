"""``Deeplabv3PlusHead``: Deeplabv3+'s encoder-decoder head (Chen et al., ECCV 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct, DepthwiseSeparableConv2d
from ..layers.ds_aspp import DepthwiseSeparableASPP
from .base import Head


@HEADS.register("Deeplabv3PlusHead")
class Deeplabv3PlusHead(Head):
    """Depthwise-separable ASPP on the deep feature, upsampled to the low-level feature's size and concatenated with
    that feature's 1x1 conv-norm-act shortcut (``shortcut_channels``, 48 in the paper); two 3x3 depthwise-separable
    convs -> Dropout2d -> 1x1 classifier. Logits at the low-level feature's resolution (stride 4 on a ResNet).

    ``in_index`` is ``[shortcut feature, ASPP feature]`` (default ``[0, -1]``) and ``in_channels`` their channels,
    as SSSegmentation's ``head.in_channels = [256, 2048]``. Children as SSSegmentation's Deeplabv3Plus: ``aspp_net``,
    ``shortcut``, ``decoder`` (DS conv, DS conv, Dropout2d, 1x1 conv).
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        feats_channels: int = 512,
        shortcut_channels: int = 48,
        dilations: tuple[int, ...] = (1, 6, 12, 18),
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = (0, -1),
    ) -> None:
        super().__init__(in_index)
        if not isinstance(self.in_index, list) or len(self.in_index) != 2:
            raise ArgumentError("in_index", f"Deeplabv3+ reads two features, [shortcut, ASPP input]; got {in_index!r}")
        if len(in_channels) != 2:
            raise ArgumentError("in_channels", f"expected [shortcut channels, ASPP input channels], got {in_channels}")
        shortcut_in, aspp_in = in_channels
        self.in_channels = list(in_channels)
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.aspp_net = DepthwiseSeparableASPP(aspp_in, feats_channels, dilations, align_corners=align_corners,
                                               norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.shortcut = ConvNormAct(shortcut_in, shortcut_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder = nn.Sequential(
            DepthwiseSeparableConv2d(feats_channels + shortcut_channels, feats_channels, 3, padding=1,
                                     norm_cfg=norm_cfg, act_cfg=act_cfg),
            DepthwiseSeparableConv2d(feats_channels, feats_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Dropout2d(dropout),
            nn.Conv2d(feats_channels, num_classes, 1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low_level, deep = self.select(features)
        context = F.interpolate(self.aspp_net(deep), size=low_level.shape[2:], mode="bilinear",
                                align_corners=self.align_corners)
        return self.decoder(torch.cat([context, self.shortcut(low_level)], dim=1))
