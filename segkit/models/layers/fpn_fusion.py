"""``UPerFPNFusion``: UPerNet's feature-pyramid fusion (Xiao et al., 2018), reused by MaskFormer, IDRNet and MCIBI++.

Given N finer feature maps (finest first) and one coarse map ``top`` that already has ``feats_channels`` channels
(UPerNet's PPM output, or another context module's)::

    lateral_i = lateral_convs[i](inputs[i])                          # 1x1 conv-norm-act -> feats_channels
    top-down: lateral_i += upsample(lateral_{i+1})  (top is lateral_N)   # bilinear, coarsest to finest
    out_i     = fpn_convs[i](lateral_i)                              # 3x3 conv-norm-act -> out_channels
    returns [out_0, ..., out_{N-1}, top]                             # top is not convolved

``cascade=True`` is the MaskFormer/FPN variant, in which each 3x3 conv output (not the lateral sum) is what is
upsampled into the next finer level: ``out_i = conv(lateral_i + upsample(out_{i+1}))``, with ``out_N = top``; there
the convs are used coarse to fine, as MaskFormer registers them (``fpn_convs[0]`` fuses the coarsest lateral, level
N-1; ``fpn_convs[N-1]`` the finest), so SSSegmentation's checkpoints map in order.
:meth:`concat` upsamples every level to the finest and concatenates them (UPerNet's fused map).

Children, in SSSegmentation's order: ``lateral_convs`` then ``fpn_convs``. The activations inside are built with
``inplace=False``, as SSSegmentation does for these convs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNormAct
from .errors import ArgumentError


class UPerFPNFusion(nn.Module):
    """Lateral 1x1 convs, top-down bilinear sums and 3x3 output convs over ``len(in_channels)`` levels + a top."""

    def __init__(
        self,
        in_channels: Sequence[int],
        feats_channels: int,
        out_channels: int | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        align_corners: bool = False,
        cascade: bool = False,
    ) -> None:
        super().__init__()
        in_channels = list(in_channels)
        if not in_channels:
            raise ArgumentError("in_channels", "the FPN fusion needs at least one lateral input")
        out_channels = feats_channels if out_channels is None else out_channels
        if cascade and out_channels != feats_channels:
            raise ArgumentError("out_channels", f"cascade fusion adds each output to the next lateral: out_channels "
                                f"({out_channels}) must equal feats_channels ({feats_channels})")
        act_cfg = copy.deepcopy(act_cfg)
        if act_cfg is not None and "inplace" in act_cfg:
            act_cfg["inplace"] = False
        self.in_channels = in_channels
        self.feats_channels = feats_channels
        self.out_channels = out_channels
        self.align_corners = align_corners
        self.cascade = cascade
        self.lateral_convs = nn.ModuleList(
            ConvNormAct(c, feats_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg) for c in in_channels
        )
        self.fpn_convs = nn.ModuleList(
            ConvNormAct(feats_channels, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg) for _ in in_channels
        )

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=self.align_corners)

    def forward(self, inputs: Sequence[torch.Tensor], top: torch.Tensor) -> list[torch.Tensor]:
        """``inputs``: the N lateral maps (finest first); ``top``: the coarsest map (``feats_channels``).
        Returns ``[out_0, ..., out_{N-1}, top]``, each at its own resolution."""
        if len(inputs) != len(self.lateral_convs):
            raise ValueError(f"UPerFPNFusion was built for {len(self.lateral_convs)} lateral inputs, "
                             f"got {len(inputs)}")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs, strict=True)]
        if self.cascade:
            outputs: list[torch.Tensor] = [top]
            for step, index in enumerate(range(len(laterals) - 1, -1, -1)):
                fused = laterals[index] + self._up(outputs[0], laterals[index])
                outputs.insert(0, self.fpn_convs[step](fused))
            return outputs
        laterals.append(top)
        for index in range(len(laterals) - 1, 0, -1):
            laterals[index - 1] = laterals[index - 1] + self._up(laterals[index], laterals[index - 1])
        outputs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1], strict=True)]
        outputs.append(laterals[-1])
        return outputs

    def concat(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Every level upsampled to the first (finest) one's size, concatenated along channels."""
        first = outputs[0]
        return torch.cat([first] + [self._up(x, first) for x in outputs[1:]], dim=1)
