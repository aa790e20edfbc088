"""``SETRAuxiliaryHead``: SETR's auxiliary decoders (SSSegmentation's ``auxiliary_decoders`` of SETRUP/SETRMLA)."""

from __future__ import annotations

import torch

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG
from ..layers.setr_decoder import SETRUpDecoder
from .base import Head


@HEADS.register("SETRAuxiliaryHead")
class SETRAuxiliaryHead(Head):
    """:class:`~segkit.models.layers.setr_decoder.SETRUpDecoder` (``decoder``) on one earlier feature:
    ``num_convs`` x [``kernel_size`` conv-norm-act, bilinear x``scale_factor``] -> Dropout2d -> 1x1 classifier.

    Defaults are SSSegmentation's ``setr.py`` base config (1 conv, x4, 256 channels, no dropout). Which feature it
    reads is set by the segmentor (SETRUP: the i-th of the features before the last, SETRMLA: the last N MLA
    outputs) or by ``in_index``.
    """

    is_auxiliary = True

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        out_channels: int = 256,
        num_convs: int = 1,
        scale_factor: float = 4,
        kernel_size: int = 3,
        dropout: float = 0.0,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -2,
    ) -> None:
        super().__init__(in_index)
        self.decoder = SETRUpDecoder(in_channels, out_channels, num_classes, num_convs=num_convs,
                                     kernel_size=kernel_size, scale_factor=scale_factor, dropout=dropout,
                                     norm_cfg=norm_cfg, act_cfg=act_cfg, align_corners=align_corners)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.decoder(self.select(features))
