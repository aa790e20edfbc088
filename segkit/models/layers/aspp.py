"""``ASPP``: Atrous Spatial Pyramid Pooling with image pooling (DeepLabv3, Chen et al., 2017).

Parallel branches over the same input: a 1x1 conv-norm-act for dilation 1 and a 3x3 atrous conv-norm-act (padding =
dilation) for every other dilation; an image-pooling branch (global average pool -> 1x1 conv-norm-act -> bilinear
upsample); the concatenation is fused by a 3x3 conv-norm-act bottleneck to ``out_channels``. Children, in
SSSegmentation's order: ``parallel_branches``, ``global_branch``, ``bottleneck``. Shared by Deeplabv3, MCIBI,
MCIBI++ and IDRNet; :class:`~segkit.models.layers.ds_aspp.DepthwiseSeparableASPP` is the Deeplabv3+ variant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNormAct
from .errors import ArgumentError


class ASPP(nn.Module):
    """Atrous branches (1x1 for dilation 1, 3x3 dilated otherwise) + image pooling -> concat -> 3x3 bottleneck."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilations: Sequence[int] = (1, 6, 12, 18),
        align_corners: bool = False,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        dilations = tuple(dilations)
        if not dilations or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in dilations):
            raise ArgumentError("dilations", f"expected a non-empty list of positive integers, got {list(dilations)}")
        self.dilations = dilations
        self.align_corners = align_corners
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.parallel_branches = nn.ModuleList(
            self.branch(in_channels, out_channels, d, norm_cfg, act_cfg) for d in dilations
        )
        self.global_branch = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvNormAct(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg),
        )
        self.bottleneck = ConvNormAct(out_channels * (len(dilations) + 1), out_channels, 3,
                                      norm_cfg=norm_cfg, act_cfg=act_cfg)

    @staticmethod
    def branch(in_channels: int, out_channels: int, dilation: int, norm_cfg: dict | None,
               act_cfg: dict | None) -> nn.Module:
        """The branch of one dilation: 1x1 conv-norm-act for 1, else a 3x3 atrous conv-norm-act."""
        if dilation == 1:
            return ConvNormAct(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        return ConvNormAct(in_channels, out_channels, 3, dilation=dilation, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.parallel_branches]
        pooled = self.global_branch(x)
        outputs.append(F.interpolate(pooled, size=x.shape[2:], mode="bilinear", align_corners=self.align_corners))
        return self.bottleneck(torch.cat(outputs, dim=1))
