"""``PPM``: the Pyramid Pooling Module of PSPNet (Zhao et al., 2017), shared by UPerNet, CE2P, ICNet, MCIBI, IDRNet and
MaskFormer.

The input is average-pooled to each ``pool_scales`` grid (an s x s grid of bins over the whole map), each pooled map
goes through its own 1x1 conv-norm-act, is upsampled bilinearly back to the input size, and the input plus every
branch are concatenated. With ``bottleneck=True`` (SSSegmentation's ``PyramidPoolingModule``) a 3x3 conv-norm-act
fuses the concatenation to ``out_channels``; without it the concatenation (``in_channels + len(pool_scales) *
out_channels`` channels) is returned. Children, in SSSegmentation's order: ``branches`` then ``bottleneck``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNormAct
from .errors import ArgumentError


class PPM(nn.Module):
    """Pool to each scale -> 1x1 conv-norm-act -> bilinear upsample; concat with the input (-> 3x3 bottleneck)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        align_corners: bool = False,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        bottleneck: bool = True,
    ) -> None:
        super().__init__()
        pool_scales = tuple(pool_scales)
        if not pool_scales or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in pool_scales):
            raise ArgumentError("pool_scales", f"expected a non-empty list of positive integers, got {list(pool_scales)}")
        self.pool_scales = pool_scales
        self.align_corners = align_corners
        self.in_channels = in_channels
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(scale),
                ConvNormAct(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg),
            )
            for scale in pool_scales
        )
        concat_channels = in_channels + out_channels * len(pool_scales)
        self.bottleneck = (
            ConvNormAct(concat_channels, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg) if bottleneck else None
        )
        self.out_channels = out_channels if bottleneck else concat_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        levels = [x]
        for branch in self.branches:
            levels.append(F.interpolate(branch(x), size=size, mode="bilinear", align_corners=self.align_corners))
        out = torch.cat(levels, dim=1)
        return self.bottleneck(out) if self.bottleneck is not None else out
