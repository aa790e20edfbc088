"""``DMHead``: DMNet's decoder (He et al., ICCV 2019): one Dynamic Convolutional Module per filter size."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.dcm import DynamicConvolutionalModule
from .base import Head


@HEADS.register("DMHead")
class DMHead(Head):
    """The input and one :class:`~segkit.models.layers.dcm.DynamicConvolutionalModule` output per ``filter_sizes``
    entry (per-image generated k x k filters), concatenated -> 3x3 conv-norm-act -> Dropout2d -> 1x1 classifier, on
    the feature at ``in_index`` (the last); logits at its resolution. Children as SSSegmentation's DMNet:
    ``dcm_modules``, ``decoder``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        filter_sizes: tuple[int, ...] = (1, 3, 5, 7),
        is_fusion: bool = False,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if not filter_sizes:
            raise ArgumentError("filter_sizes", "give at least one filter size")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.dcm_modules = nn.ModuleList(
            DynamicConvolutionalModule(size, is_fusion, in_channels, feats_channels, norm_cfg=norm_cfg,
                                       act_cfg=act_cfg)
            for size in filter_sizes
        )
        self.decoder = nn.Sequential(
            ConvNormAct(in_channels + feats_channels * len(filter_sizes), feats_channels, 3,
                        norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Dropout2d(dropout),
            nn.Conv2d(feats_channels, num_classes, 1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.select(features)
        return self.decoder(torch.cat([x] + [dcm(x) for dcm in self.dcm_modules], dim=1))
