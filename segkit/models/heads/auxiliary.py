"""``AuxiliaryHead``: SSSegmentation's ``DefaultAuxiliaryDecoder`` (deep supervision on an earlier feature map)."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from .base import Head


@HEADS.register("AuxiliaryHead")
class AuxiliaryHead(Head):
    """``num_convs`` x [3x3 conv (no bias) -> norm -> act (-> ``nn.Upsample(**upsample)``)] -> Dropout2d -> 1x1.

    ``num_convs=0`` leaves Dropout2d -> 1x1 classifier from ``in_channels``. Reads the feature at ``in_index``: by
    default the second-to-last (one head), or for a list of N heads the N features before the last, as
    SSSegmentation's ``features[:-1][-N:]``.
    """

    is_auxiliary = True

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        out_channels: int = 512,
        num_convs: int = 1,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        upsample: dict | None = None,
        in_index: InIndex = -2,
    ) -> None:
        super().__init__(in_index)
        if num_convs < 0:
            raise ArgumentError("num_convs", f"num_convs must be >= 0, got {num_convs}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        for index in range(num_convs):
            layers.append(ConvNormAct(in_channels if index == 0 else out_channels, out_channels, 3,
                                      norm_cfg=norm_cfg, act_cfg=act_cfg))
            if upsample is not None:
                layers.append(nn.Upsample(**upsample))
        self.convs = nn.Sequential(*layers)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(out_channels if num_convs > 0 else in_channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.convs(self.select(features))))
