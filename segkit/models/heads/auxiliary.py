"""``AuxiliaryHead``: SSSegmentation's ``DefaultAuxiliaryDecoder`` (deep supervision on an earlier feature map)."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct


@HEADS.register("AuxiliaryHead")
class AuxiliaryHead(nn.Module):
    """``num_convs`` x [3x3 conv (no bias) -> norm -> act (-> ``nn.Upsample(**upsample)``)] -> Dropout2d -> 1x1.

    ``num_convs=0`` leaves Dropout2d -> 1x1 classifier from ``in_channels``. Takes one feature map (the segmentor
    picks it: the second-to-last selected feature, or the last N before it for a list of heads) and returns logits.
    """

    is_auxiliary = True
    """Auxiliary heads take one feature map; recipe ``auxiliary`` tables may only name heads that declare this."""

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
    ) -> None:
        super().__init__()
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.convs(x)))
