"""``FPN``: the top-down feature pyramid of Lin et al. (2017) as SSSegmentation's SemanticFPN and PointRend use it.

Per level a 1x1 lateral conv-norm-act (``lateral_convs``); from the coarsest level down, each lateral is added to
the next finer one after resizing (``upsample_cfg``: nearest by default); per level a 3x3 conv-norm-act
(``fpn_convs``). The outputs have ``out_channels`` channels at the inputs' resolutions. As in SSSegmentation the
activations are built with ``inplace=False``.
"""

from __future__ import annotations

import copy
from typing import Literal, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNormAct
from .errors import ArgumentError


class UpsampleCfg(TypedDict, total=False):
    """Keyword arguments of ``F.interpolate`` for the top-down path (the size is the finer level's)."""

    mode: Literal["nearest", "nearest-exact", "bilinear", "bicubic", "area"]
    align_corners: bool


class FPN(nn.Module):
    """Lateral 1x1 convs, nearest (by default) top-down addition, 3x3 output convs; one output per input level."""

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int,
        upsample_cfg: UpsampleCfg | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if not in_channels:
            raise ArgumentError("in_channels", "FPN needs at least one input level")
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.upsample_cfg: dict = dict(upsample_cfg) if upsample_cfg is not None else {"mode": "nearest"}
        if self.upsample_cfg.get("mode", "nearest") in ("nearest", "nearest-exact", "area"):
            if self.upsample_cfg.get("align_corners"):
                raise ArgumentError("upsample_cfg", f"align_corners does not apply to mode "
                                    f"'{self.upsample_cfg.get('mode', 'nearest')}'")
            self.upsample_cfg.pop("align_corners", None)
        act_cfg = copy.deepcopy(act_cfg)
        if act_cfg is not None and "inplace" in act_cfg:
            act_cfg["inplace"] = False
        self.lateral_convs = nn.ModuleList([
            ConvNormAct(channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg) for channels in in_channels
        ])
        self.fpn_convs = nn.ModuleList([
            ConvNormAct(out_channels, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg) for _ in in_channels
        ])

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != len(self.lateral_convs):
            raise ValueError(f"FPN expects {len(self.lateral_convs)} inputs, got {len(inputs)}")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                              **self.upsample_cfg)
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals, strict=True)]
