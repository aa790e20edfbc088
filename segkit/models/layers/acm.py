"""``AdaptiveContextModule``: one scale of APCNet's adaptive pyramid context (He et al., CVPR 2019).

For a pool scale s the input is summarised into s x s region descriptors (adaptive average pooling, then a 1x1
conv-norm-act). Every position gets an affinity to each of the s*s regions from its own reduced feature plus the
image's global descriptor (``gla``: a 1x1 conv to s*s channels, then a sigmoid: "global-guided local affinity"). The
adaptive context of a position is the affinity-weighted sum of the region descriptors; it passes a 1x1 conv-norm-act,
is added to the reduced input and rectified (ReLU, as in the paper, whatever ``act_cfg`` is), and a final 1x1
conv-norm-act gives ``out_channels``. Children, in SSSegmentation's order: ``pooled_redu_conv``,
``input_redu_conv``, ``global_info``, ``gla``, ``residual_conv``, ``fusion_conv``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNormAct
from .errors import ArgumentError


class AdaptiveContextModule(nn.Module):
    """Sigmoid affinities of each position to s x s pooled regions -> weighted region sum -> residual -> fuse."""

    def __init__(self, in_channels: int, out_channels: int, pool_scale: int, align_corners: bool = False,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None) -> None:
        super().__init__()
        if not isinstance(pool_scale, int) or isinstance(pool_scale, bool) or pool_scale < 1:
            raise ArgumentError("pool_scales", f"pool scales must be positive integers, got {pool_scale!r}")
        self.pool_scale = pool_scale
        self.align_corners = align_corners
        self.pooled_redu_conv = ConvNormAct(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.input_redu_conv = ConvNormAct(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.global_info = ConvNormAct(out_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.gla = nn.Conv2d(out_channels, pool_scale ** 2, 1)
        self.residual_conv = ConvNormAct(out_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.fusion_conv = ConvNormAct(out_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        regions = self.pooled_redu_conv(F.adaptive_avg_pool2d(x, self.pool_scale))  # [B, C, s, s]
        regions = regions.flatten(2).transpose(1, 2)  # [B, s*s, C]
        x = self.input_redu_conv(x)
        global_context = self.global_info(F.adaptive_avg_pool2d(x, 1))
        global_context = F.interpolate(global_context, size=(height, width), mode="bilinear",
                                       align_corners=self.align_corners)
        affinity = torch.sigmoid(self.gla(x + global_context).flatten(2).transpose(1, 2))  # [B, H*W, s*s]
        context = torch.matmul(affinity, regions)  # [B, H*W, C]
        context = context.transpose(1, 2).reshape(batch, -1, height, width)
        out = F.relu(self.residual_conv(context) + x)
        return self.fusion_conv(out)
