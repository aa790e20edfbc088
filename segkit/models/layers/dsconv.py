"""``DepthwiseSeparableConv2d``: depth-wise conv -> norm -> act, then point-wise conv -> norm -> act.

The building block of the depthwise-separable FCN head, Deeplabv3+'s separable ASPP and decoder, and the JPU neck.
Module names are SSSegmentation's (``depthwise_conv``, ``depthwise_bn``, ``depthwise_activate``, ``pointwise_*``).
"""

from __future__ import annotations

import torch
from torch import nn

from .norm_act import build_act, build_norm


class DepthwiseSeparableConv2d(nn.Module):
    """``dw_norm_cfg``/``dw_act_cfg``/``pw_norm_cfg``/``pw_act_cfg`` default to ``norm_cfg``/``act_cfg`` (as in
    SSSegmentation); a ``None`` result means no norm / no activation at that place (no module, no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 dilation: int = 1, bias: bool = False, norm_cfg: dict | None = None, act_cfg: dict | None = None,
                 dw_norm_cfg: dict | None = None, dw_act_cfg: dict | None = None, pw_norm_cfg: dict | None = None,
                 pw_act_cfg: dict | None = None) -> None:
        super().__init__()
        dw_norm_cfg = norm_cfg if dw_norm_cfg is None else dw_norm_cfg
        dw_act_cfg = act_cfg if dw_act_cfg is None else dw_act_cfg
        pw_norm_cfg = norm_cfg if pw_norm_cfg is None else pw_norm_cfg
        pw_act_cfg = act_cfg if pw_act_cfg is None else pw_act_cfg
        self.depthwise_conv = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                                        dilation=dilation, groups=in_channels, bias=bias)
        self.depthwise_bn = build_norm(dw_norm_cfg, in_channels)
        self.depthwise_activate = build_act(dw_act_cfg)
        self.pointwise_conv = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.pointwise_bn = build_norm(pw_norm_cfg, out_channels)
        self.pointwise_activate = build_act(pw_act_cfg)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_activate(self.depthwise_bn(self.depthwise_conv(x)))
        return self.pointwise_activate(self.pointwise_bn(self.pointwise_conv(x)))
