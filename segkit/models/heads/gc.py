"""``GCHead``: the decoder of SSSegmentation's GCNet (Cao et al., 2019).

    feats  = conv_after_cb(contextblock_net(conv_before_cb(x)))   # 3x3 conv-norm-act, ContextBlock, 3x3 ...
    logits = decoder(concat(x, feats))                            # 3x3 conv-norm-act -> Dropout2d -> 1x1

As in SSSegmentation's configs, the head table's ``norm_cfg`` / ``act_cfg`` are the *context block's* (its
bottleneck norm, ``{type = "LayerNorm"}`` over ``[C/4, 1, 1]`` in every GCNet config), defaulting to the recipe's
top-level ones; the convolutions use ``convs_norm_cfg`` / ``convs_act_cfg``, which ``GCNet`` fills with the
recipe's top-level ``norm_cfg`` / ``act_cfg`` unless the head table sets them.
"""

from __future__ import annotations

import torch

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.context_block import ContextBlock, FusionType, PoolingType
from .base import Head
from .non_local import concat_decoder


@HEADS.register("GCHead")
class GCHead(Head):
    """3x3 conv-norm-act -> :class:`~segkit.models.layers.context_block.ContextBlock` (``ratio``,
    ``pooling_type``, ``fusion_types``, ``norm_cfg``, ``act_cfg``) -> 3x3 conv-norm-act, concatenated with the input
    and classified (see the module docstring for the two norm/act settings)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        ratio: float = 0.25,
        pooling_type: PoolingType = "att",
        fusion_types: tuple[FusionType, ...] = ("channel_add",),
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        convs_norm_cfg: dict | None = DEFAULT_NORM_CFG,
        convs_act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if not fusion_types:
            raise ArgumentError("fusion_types", "at least one fusion type is needed ('channel_add', 'channel_mul')")
        if int(feats_channels * ratio) < 1:
            raise ArgumentError("ratio", f"feats_channels * ratio must be >= 1, got {feats_channels} * {ratio}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.conv_before_cb = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=convs_norm_cfg,
                                          act_cfg=convs_act_cfg)
        self.contextblock_net = ContextBlock(feats_channels, ratio, pooling_type=pooling_type,
                                             fusion_types=fusion_types, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_after_cb = ConvNormAct(feats_channels, feats_channels, 3, norm_cfg=convs_norm_cfg,
                                         act_cfg=convs_act_cfg)
        self.decoder = concat_decoder(in_channels, feats_channels, num_classes, dropout, convs_norm_cfg,
                                      convs_act_cfg)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.select(features)
        feats = self.conv_after_cb(self.contextblock_net(self.conv_before_cb(x)))
        return self.decoder(torch.cat([x, feats], dim=1))
