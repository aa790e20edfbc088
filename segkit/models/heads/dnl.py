"""``DNLHead``: the decoder of SSSegmentation's DNLNet (Yin et al., "Disentangled Non-Local Neural Networks", 2020).

    feats  = conv_after_dnl(dnl_block(conv_before_dnl(x)))   # 3x3 conv-norm-act, DisentangledNonLocal2d, 3x3 ...
    logits = decoder(concat(x, feats))                        # 3x3 conv-norm-act -> Dropout2d -> 1x1
"""

from __future__ import annotations

import torch

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.disentangled_non_local import DisentangledNonLocal2d
from ..layers.non_local import NonLocalMode
from .base import Head
from .non_local import concat_decoder


@HEADS.register("DNLHead")
class DNLHead(Head):
    """3x3 conv-norm-act -> :class:`~segkit.models.layers.disentangled_non_local.DisentangledNonLocal2d`
    (``reduction``, ``use_scale``, ``mode``, ``temperature``) -> 3x3 conv-norm-act, concatenated with the input and
    classified."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        reduction: int = 2,
        use_scale: bool = True,
        mode: NonLocalMode = "embeddedgaussian",
        temperature: float = 0.05,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if reduction < 1:
            raise ArgumentError("reduction", f"reduction must be >= 1, got {reduction}")
        if temperature <= 0:
            raise ArgumentError("temperature", f"temperature must be > 0, got {temperature}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.conv_before_dnl = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.dnl_block = DisentangledNonLocal2d(feats_channels, temperature=temperature, reduction=reduction,
                                                use_scale=use_scale, mode=mode, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_after_dnl = ConvNormAct(feats_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder = concat_decoder(in_channels, feats_channels, num_classes, dropout, norm_cfg, act_cfg)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.select(features)
        feats = self.conv_after_dnl(self.dnl_block(self.conv_before_dnl(x)))
        return self.decoder(torch.cat([x, feats], dim=1))
