"""``UPerNetHead``: UPerNet's decoder (Xiao et al., ECCV 2018): PPM on the coarsest feature, an FPN over the others,
every level fused at the finest stride."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.fpn_fusion import UPerFPNFusion
from ..layers.ppm import PPM
from .base import Head


@HEADS.register("UPerNetHead")
class UPerNetHead(Head):
    """:class:`~segkit.models.layers.ppm.PPM` on the last input -> the top of a
    :class:`~segkit.models.layers.fpn_fusion.UPerFPNFusion` over the other inputs (lateral 1x1 convs, top-down
    bilinear sums, 3x3 convs) -> every level upsampled to the first (finest) and concatenated -> 3x3 conv-norm-act ->
    Dropout2d -> 1x1 classifier. Logits at the first input's resolution (stride 4 on a ResNet).

    ``in_index`` selects the pyramid (default ``[0, 1, 2, 3]``, finest first) and ``in_channels`` are its channels.
    ``in_channels_list`` is SSSegmentation's name for the same list: accepted, and checked against them. Children in
    SSSegmentation's order: ``ppm_net``, ``fpn`` (``lateral_convs``, ``fpn_convs``), ``decoder``.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        feats_channels: int = 512,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_channels_list: list[int] | None = None,
        in_index: InIndex = (0, 1, 2, 3),
    ) -> None:
        super().__init__(in_index)
        if not isinstance(self.in_index, list) or len(self.in_index) < 2:
            raise ArgumentError("in_index", f"UPerNet fuses a pyramid of at least two features, got {in_index!r}")
        if len(in_channels) != len(self.in_index):
            raise ArgumentError("in_channels", f"{len(in_channels)} channel counts for {len(self.in_index)} inputs")
        if in_channels_list is not None and list(in_channels_list) != list(in_channels):
            raise ArgumentError("in_channels_list", f"{list(in_channels_list)} does not match the features it reads "
                                f"(in_index {self.in_index}: {list(in_channels)} channels)")
        self.in_channels = list(in_channels)
        self.num_classes = num_classes
        self.ppm_net = PPM(in_channels[-1], feats_channels, pool_scales, align_corners=align_corners,
                           norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.fpn = UPerFPNFusion(in_channels[:-1], feats_channels, norm_cfg=norm_cfg, act_cfg=act_cfg,
                                 align_corners=align_corners)
        self.decoder = nn.Sequential(
            ConvNormAct(feats_channels * len(in_channels), feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Dropout2d(dropout),
            nn.Conv2d(feats_channels, num_classes, 1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        inputs = self.select(features)
        levels = self.fpn(inputs[:-1], self.ppm_net(inputs[-1]))
        return self.decoder(self.fpn.concat(levels))
