"""``ICNeck``: ICNet's two cascade feature fusion blocks (Zhao et al., 2018), SSSegmentation's ``ICNeck``.

The neck takes ICNet's three branches (``x_sub1`` from the full image at stride 8, ``x_sub2`` from the half image,
``x_sub4`` from the quarter image, coarsest last) and fuses them coarse to fine::

    x_cff_24, x_24 = cff_24(x_sub4, x_sub2)     # x_24: the upsampled coarse branch alone (auxiliary supervision)
    x_cff_12, x_12 = cff_12(x_cff_24, x_sub1)
    -> [x_24, x_12, x_cff_12]                   # ICNet's decoder reads x_cff_12, its aux heads x_24 and x_12
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import NECKS
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct


class CascadeFeatureFusion(nn.Module):
    """Upsample the low-resolution map to the high-resolution one, 3x3 dilation-2 conv-norm-act on it, 1x1
    conv-norm-act on the high-resolution map, ReLU of the sum. Returns ``(fused, low branch)``."""

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.conv_low = ConvNormAct(low_channels, out_channels, 3, dilation=2, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_high = ConvNormAct(high_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x_low: torch.Tensor, x_high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_low = F.interpolate(x_low, size=x_high.shape[2:], mode="bilinear", align_corners=self.align_corners)
        x_low = self.conv_low(x_low)
        fused = F.relu(x_low + self.conv_high(x_high))
        return fused, x_low


@NECKS.register("ICNeck")
class ICNeck(nn.Module):
    """Two :class:`CascadeFeatureFusion` blocks over ``[x_sub1, x_sub2, x_sub4]`` -> ``[x_24, x_12, x_cff_12]``
    (each ``out_channels``; strides of ``x_sub2``, ``x_sub1``, ``x_sub1``). ``in_channels`` are derived from the
    three inputs (SSSegmentation's ``head.in_channels_list``)."""

    def __init__(self, in_channels: list[int], out_channels: int = 128, norm_cfg: dict | None = DEFAULT_NORM_CFG,
                 act_cfg: dict | None = DEFAULT_ACT_CFG, align_corners: bool = False,
                 in_strides: list[int] | None = None) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ArgumentError("in_channels", f"ICNeck fuses exactly 3 inputs (x_sub1, x_sub2, x_sub4), got "
                                f"{len(in_channels)}: {in_channels}")
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.align_corners = align_corners
        self.cff_24 = CascadeFeatureFusion(in_channels[2], in_channels[1], out_channels, norm_cfg, act_cfg,
                                           align_corners)
        self.cff_12 = CascadeFeatureFusion(out_channels, in_channels[0], out_channels, norm_cfg, act_cfg,
                                           align_corners)
        stride_12, stride_24 = (in_strides or [8, 16, 32])[:2]
        self.feature_info = [
            {"num_chs": out_channels, "reduction": stride_24, "module": "cff_24"},
            {"num_chs": out_channels, "reduction": stride_12, "module": "cff_12"},
            {"num_chs": out_channels, "reduction": stride_12, "module": "cff_12"},
        ]

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != 3:
            raise ValueError(f"ICNeck expects 3 feature maps, got {len(features)}")
        x_sub1, x_sub2, x_sub4 = features
        x_cff_24, x_24 = self.cff_24(x_sub4, x_sub2)
        x_cff_12, x_12 = self.cff_12(x_cff_24, x_sub1)
        return [x_24, x_12, x_cff_12]
