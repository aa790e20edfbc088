"""``JPU``: FastFCN's Joint Pyramid Upsampling (Wu et al., 2019), SSSegmentation's ``jpu_neck``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import NECKS
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct, DepthwiseSeparableConv2d


@NECKS.register("JPU")
class JPU(nn.Module):
    """Levels ``start_level`` .. ``end_level - 1`` (``end_level = -1``: all) each through a 3x3 conv-norm-act to
    ``mid_channels`` (``conv_layers``), resized (bilinear) to the first one's resolution and concatenated; then one
    depthwise-separable 3x3 conv per dilation (``dilation_layers``: depthwise conv -> norm, pointwise conv -> norm ->
    act) and their outputs concatenated.

    Outputs: the input levels ``start_level`` .. ``end_level - 2`` unchanged, then the joint feature
    (``mid_channels x len(dilations)`` channels at the first level's stride). On a ResNet-50 at output stride 32 with
    ``selected_indices = [1, 2, 3]``: layer2 (512 @ 8), layer3 (1024 @ 16), JPU (2048 @ 8), so the head reads a
    stride-8 map and an auxiliary head the raw layer3 (``[-2]``), as SSSegmentation's FastFCN.

    ``in_channels`` and ``in_strides`` are derived from the features; SSSegmentation's ``head.jpu.in_channels_list``
    may be given as ``in_channels_list`` and is then checked.
    """

    def __init__(
        self,
        in_channels: list[int],
        mid_channels: int = 512,
        start_level: int = 0,
        end_level: int = -1,
        dilations: tuple[int, ...] = (1, 2, 4, 8),
        align_corners: bool = False,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_channels_list: list[int] | None = None,
        in_strides: list[int] | None = None,
    ) -> None:
        super().__init__()
        if in_channels_list is not None and list(in_channels_list) != list(in_channels):
            raise ArgumentError("in_channels_list", f"{list(in_channels_list)} does not match the features it receives "
                                f"({list(in_channels)} channels)")
        num_ins = len(in_channels)
        end = num_ins if end_level == -1 else end_level
        if not 0 < end <= num_ins:
            raise ArgumentError("end_level", f"expected -1 or 1..{num_ins} for {num_ins} input levels, got {end_level}")
        if not 0 <= start_level < end:
            raise ArgumentError("start_level", f"expected 0..{end - 1} (end level {end}), got {start_level}")
        if not dilations or any(d < 1 for d in dilations):
            raise ArgumentError("dilations", f"expected positive dilations, got {list(dilations)}")
        self.in_channels, self.mid_channels = list(in_channels), mid_channels
        self.start_level, self.backbone_end_level = start_level, end
        self.dilations = tuple(dilations)
        self.align_corners = align_corners
        self.conv_layers = nn.ModuleList([
            ConvNormAct(in_channels[i], mid_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg) for i in range(start_level, end)
        ])
        self.dilation_layers = nn.ModuleList([
            DepthwiseSeparableConv2d((end - start_level) * mid_channels, mid_channels, 3, padding=d, dilation=d,
                                     dw_norm_cfg=norm_cfg, dw_act_cfg=None, pw_norm_cfg=norm_cfg, pw_act_cfg=act_cfg)
            for d in self.dilations
        ])
        strides = list(in_strides) if in_strides is not None else [1] * num_ins
        self.feature_info = [{"num_chs": in_channels[i], "reduction": strides[i], "module": f"input{i}"}
                             for i in range(start_level, end - 1)]
        self.feature_info.append({"num_chs": mid_channels * len(self.dilations), "reduction": strides[start_level],
                                  "module": "dilation_layers"})

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"JPU expects {len(self.in_channels)} inputs, got {len(inputs)}")
        feats = [conv(inputs[i]) for conv, i in zip(self.conv_layers, range(self.start_level, self.backbone_end_level),
                                                     strict=True)]
        size = feats[0].shape[2:]
        feats = [feats[0]] + [
            f if f.shape[2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=self.align_corners)
            for f in feats[1:]
        ]
        joint = torch.cat(feats, dim=1)
        joint = torch.cat([layer(joint) for layer in self.dilation_layers], dim=1)
        return [inputs[i] for i in range(self.start_level, self.backbone_end_level - 1)] + [joint]
