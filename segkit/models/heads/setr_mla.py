"""``SETRMLAHead``: SETR-MLA's decoder (Zheng et al., 2021) on the outputs of the ``MLANeck``."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from .base import Head


@HEADS.register("SETRMLAHead")
class SETRMLAHead(Head):
    """Per level (``up_convs``) two 3x3 conv-norm-act to ``mla_up_channels`` and a bilinear x``scale_factor``
    upsampling; the levels concatenated (``feats_channels`` = ``mla_up_channels`` x levels, checked when given) ->
    Dropout2d -> 1x1 classifier (``decoder``). Logits at ``scale_factor`` times the features' resolution (stride 4
    on a ViT-16 with the default x4)."""

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        mla_up_channels: int = 128,
        feats_channels: int | None = None,
        scale_factor: float = 4,
        dropout: float = 0.0,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = (0, 1, 2, 3),
    ) -> None:
        super().__init__(in_index)
        if isinstance(in_channels, int):
            in_channels = [in_channels]
        expected = mla_up_channels * len(in_channels)
        if feats_channels is not None and feats_channels != expected:
            raise ArgumentError("feats_channels", f"the classifier reads the {len(in_channels)} levels concatenated: "
                                f"mla_up_channels x {len(in_channels)} = {expected}, got {feats_channels}")
        self.up_convs = nn.ModuleList([
            nn.Sequential(
                ConvNormAct(channels, mla_up_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg),
                ConvNormAct(mla_up_channels, mla_up_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg),
                nn.Upsample(scale_factor=scale_factor, mode="bilinear", align_corners=align_corners),
            )
            for channels in in_channels
        ])
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(expected, num_classes, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        inputs = self.select(features)
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        return self.decoder(torch.cat([up(x) for up, x in zip(self.up_convs, inputs, strict=True)], dim=1))
