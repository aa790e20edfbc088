"""``DepthwiseSeparableASPP``: Deeplabv3+'s ASPP (Chen et al., 2018), whose atrous branches are depthwise-separable.

As :class:`~segkit.models.layers.aspp.ASPP` (1x1 branch for dilation 1, image pooling, 3x3 bottleneck), except that
every dilation other than 1 is a :class:`~segkit.models.layers.DepthwiseSeparableConv2d` (3x3 depthwise atrous conv
-> norm -> act -> 1x1 pointwise conv -> norm -> act).
"""

from __future__ import annotations

from torch import nn

from .aspp import ASPP
from .conv import ConvNormAct
from .dsconv import DepthwiseSeparableConv2d


class DepthwiseSeparableASPP(ASPP):
    """ASPP with depthwise-separable atrous branches (children ``parallel_branches``, ``global_branch``,
    ``bottleneck``)."""

    @staticmethod
    def branch(in_channels: int, out_channels: int, dilation: int, norm_cfg: dict | None,
               act_cfg: dict | None) -> nn.Module:
        if dilation == 1:
            return ConvNormAct(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        return DepthwiseSeparableConv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation,
                                        norm_cfg=norm_cfg, act_cfg=act_cfg)
