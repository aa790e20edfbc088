"""``SemanticFPNHead``: the semantic-segmentation branch of Panoptic FPN (Kirillov et al., 2019), as
SSSegmentation's ``SemanticFPN`` builds it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.fpn import FPN, UpsampleCfg
from .base import Head


@HEADS.register("SemanticFPNHead")
class SemanticFPNHead(Head):
    """FPN (``fpn_neck``: lateral 1x1, nearest top-down, 3x3; ``feats_channels`` wide) -> one scale head per level
    (``scale_heads``: ``max(1, log2(stride / first stride))`` x [3x3 conv-norm-act to ``scale_head_channels``, then a
    bilinear x2 upsampling on every level but the first]) -> sum at the first level's resolution -> Dropout2d -> 1x1
    classifier (``decoder``).

    ``feature_stride_list`` (SSSegmentation's key) gives the stride of each level; by default the strides of the
    features read (``in_strides``, derived by the model builder). Logits come at the first level's resolution
    (stride 4 on a ResNet with ``selected_indices = [0, 1, 2, 3]``). ``in_channels_list`` (SSSegmentation's name)
    is derived as ``in_channels``; given, it is checked.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        feats_channels: int = 256,
        scale_head_channels: int = 128,
        upsample_cfg: UpsampleCfg | None = None,
        feature_stride_list: list[int] | None = None,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_channels_list: list[int] | None = None,
        in_strides: list[int] | None = None,
        in_index: InIndex = (0, 1, 2, 3),
    ) -> None:
        super().__init__(in_index)
        if isinstance(in_channels, int):
            in_channels = [in_channels]
        if in_channels_list is not None and list(in_channels_list) != list(in_channels):
            raise ArgumentError("in_channels_list", f"{list(in_channels_list)} does not match the features it reads "
                                f"({list(in_channels)} channels)")
        strides = feature_stride_list if feature_stride_list is not None else in_strides
        if strides is None:
            raise ArgumentError("feature_stride_list", "give the stride of every level read (SSSegmentation's "
                                "feature_stride_list), e.g. [4, 8, 16, 32]")
        strides = list(strides)
        if len(strides) != len(in_channels):
            raise ArgumentError("feature_stride_list", f"{len(strides)} strides for {len(in_channels)} levels")
        if in_strides is not None and feature_stride_list is not None and list(in_strides) != strides:
            raise ArgumentError("feature_stride_list", f"{strides} does not match the strides of the features read "
                                f"({list(in_strides)}); leave it out to use those")
        if any(s < strides[0] for s in strides):
            raise ArgumentError("feature_stride_list", f"the first level must be the finest, got {strides}")
        self.align_corners = align_corners
        self.feature_stride_list = strides
        self.fpn_neck = FPN(in_channels, feats_channels, upsample_cfg=upsample_cfg, norm_cfg=norm_cfg,
                            act_cfg=act_cfg)
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            length = max(1, int(math.log2(stride) - math.log2(strides[0])))
            layers: list[nn.Module] = []
            for k in range(length):
                layers.append(ConvNormAct(feats_channels if k == 0 else scale_head_channels, scale_head_channels, 3,
                                          norm_cfg=norm_cfg, act_cfg=act_cfg))
                if stride != strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners))
            self.scale_heads.append(nn.Sequential(*layers))
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(scale_head_channels, num_classes, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        inputs = self.select(features)
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        pyramid = self.fpn_neck(inputs)
        out = self.scale_heads[0](pyramid[0])
        for scale_head, x in zip(self.scale_heads[1:], pyramid[1:], strict=True):
            x = scale_head(x)
            if x.shape[2:] != out.shape[2:]:
                x = F.interpolate(x, size=out.shape[2:], mode="bilinear", align_corners=self.align_corners)
            out = out + x
        return self.decoder(out)
