"""``SegformerHead``: SegFormer's all-MLP decoder (Xie et al., 2021) as SSSegmentation's ``Segformer`` builds it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from .base import Head


@HEADS.register("SegformerHead")
class SegformerHead(Head):
    """Per level a 1x1 conv-norm-act to ``feats_channels`` (``convs``), each resized (bilinear) to the first level's
    size, concatenated, fused by a 1x1 conv-norm-act, then Dropout2d and a 1x1 classifier (``decoder``).

    Reads the features at ``in_index`` (by default the four MiT stages); logits come at the resolution of the
    first of them (stride 4 on MiT). ``in_channels_list`` (SSSegmentation's name) is derived as ``in_channels``;
    given, it is checked. The module names ``convs`` and ``decoder`` are SSSegmentation's, which its
    Segformer recipes' ``params_rules`` name.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        feats_channels: int = 256,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_channels_list: list[int] | None = None,
        in_index: InIndex = (0, 1, 2, 3),
    ) -> None:
        super().__init__(in_index)
        if isinstance(in_channels, int):
            in_channels = [in_channels]
        if in_channels_list is not None and list(in_channels_list) != list(in_channels):
            raise ArgumentError("in_channels_list", f"{list(in_channels_list)} does not match the features it reads "
                                f"({list(in_channels)} channels)")
        self.align_corners = align_corners
        self.convs = nn.ModuleList([
            ConvNormAct(channels, feats_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg) for channels in in_channels
        ])
        self.decoder = nn.Sequential(
            ConvNormAct(feats_channels * len(in_channels), feats_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Dropout2d(dropout),
            nn.Conv2d(feats_channels, num_classes, 1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        inputs = self.select(features)
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        size = inputs[0].shape[2:]
        outs = []
        for conv, x in zip(self.convs, inputs, strict=True):
            x = conv(x)
            if x.shape[2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
            outs.append(x)
        return self.decoder(torch.cat(outs, dim=1))
