"""``ConvNormAct``: the conv -> norm -> act block shared by heads and necks."""

from __future__ import annotations

from torch import nn

from .norm_act import build_act, build_norm


class ConvNormAct(nn.Sequential):
    """``Conv2d`` followed by the norm of ``norm_cfg`` and the activation of ``act_cfg`` (children ``conv``, ``norm``,
    ``act``).

    ``padding`` defaults to ``dilation * (kernel_size // 2)`` (a "same" convolution at stride 1). ``bias`` defaults to
    ``False``, as SSSegmentation's heads use it before a norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        if padding is None:
            padding = dilation * (kernel_size // 2)
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            dilation=dilation, groups=groups, bias=bias,
        )
        self.norm = build_norm(norm_cfg, out_channels)
        self.act = build_act(act_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
