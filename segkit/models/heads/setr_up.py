"""``SETRUPHead``: SETR's progressive-upsampling decoder (SETR-PUP and SETR-Naive in SSSegmentation's configs)."""

from __future__ import annotations

import torch

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG
from ..layers.setr_decoder import SETRUpDecoder
from .base import Head


@HEADS.register("SETRUPHead")
class SETRUPHead(Head):
    """:class:`~segkit.models.layers.setr_decoder.SETRUpDecoder` (``decoder``) on the last feature: ``num_convs`` x
    [``kernel_size`` conv-norm-act, bilinear x``scale_factor``] -> Dropout2d -> 1x1 classifier.

    SSSegmentation's defaults (``setr.py`` base config: 4 convs, x2 each = SETR-PUP); its "naive" config uses 2
    convs with x4. Logits come at ``scale_factor ** num_convs`` times the feature's resolution (the input's for the
    defaults on a stride-16 ViT).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 256,
        num_convs: int = 4,
        scale_factor: float = 2,
        kernel_size: int = 3,
        dropout: float = 0.0,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        self.decoder = SETRUpDecoder(in_channels, feats_channels, num_classes, num_convs=num_convs,
                                     kernel_size=kernel_size, scale_factor=scale_factor, dropout=dropout,
                                     norm_cfg=norm_cfg, act_cfg=act_cfg, align_corners=align_corners)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.decoder(self.select(features))
