"""BiSeNet V2 (Yu et al. 2020, "Bilateral Network with Guided Aggregation"), as SSSegmentation's ``BiSeNetV2``.

A detail branch (wide, shallow VGG-like convs to stride 8), a semantic branch (narrow, deep: stem block to stride 4,
gather-and-expansion layers to stride 32, context embedding block) and a bilateral guided aggregation layer (BGA)
in which each branch gates the other. Parameter names are SSSegmentation's (``detail.detail_branch.<i>``,
``semantic.stage1`` .. ``stage4``, ``semantic.stage4_CEBlock``, ``bga.detail_dwconv``, ...).

Output order: SSSegmentation indexes the outputs ``0..3`` semantic stages 1-4 (strides 4, 8, 16, 32) and ``4``
the BGA output (stride 8), and ``out_indices`` keeps that numbering; segkit's contract returns outputs by
non-decreasing stride, so they come as (stage 1, stage 2, BGA, stage 3, stage 4). SSSegmentation's
``selected_indices = (0, 1, 2, 3, 4)`` (head on BGA, auxiliary heads on the four stages) is
``selected_indices = [0, 1, 3, 4, 2]`` here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import BACKBONES
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, build_act, build_norm
from ..pretrained import load_published_weights
from .base import Backbone
from .fastscnn import DepthwiseSeparableConv2d, conv_norm_act, positions_by_stride

PRETRAINED_URLS: dict[str, str] = {}
"""SSSegmentation publishes no BiSeNetV2 weights (``DEFAULT_MODEL_URLS`` is empty)."""


class DetailBranch(nn.Module):
    """Stages of 3x3 conv-norm-act layers, each starting with stride 2 (2 layers in the first stage, 3 after)."""

    def __init__(self, channels: tuple[int, ...], in_channels: int, norm_cfg: dict | None,
                 act_cfg: dict | None) -> None:
        super().__init__()
        stages = []
        for index, width in enumerate(channels):
            source = in_channels if index == 0 else channels[index - 1]
            layers = [*conv_norm_act(source, width, 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg)]
            for _ in range(1 if index == 0 else 2):
                layers += [*conv_norm_act(width, width, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)]
            stages.append(nn.Sequential(*layers))
        self.detail_branch = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.detail_branch:
            x = stage(x)
        return x


class StemBlock(nn.Module):
    """Stride 4: a stride-2 conv, then a conv path (1x1, 3x3/2) and a max-pool concatenated and fused."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        half = out_channels // 2
        self.conv_first = conv_norm_act(in_channels, out_channels, 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.convs = nn.Sequential(*conv_norm_act(out_channels, half, 1, norm_cfg=norm_cfg, act_cfg=act_cfg),
                                   *conv_norm_act(half, out_channels, 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.fuse_last = conv_norm_act(2 * out_channels, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(x)
        return self.fuse_last(torch.cat([self.convs(x), self.pool(x)], dim=1))


class GELayer(nn.Module):
    """Gather-and-expansion layer: 3x3 conv, depth-wise expansion (two depth-wise convs when strided), 1x1
    projection, residual (a depth-wise separable shortcut when strided)."""

    def __init__(self, in_channels: int, out_channels: int, exp_ratio: int, stride: int, norm_cfg: dict | None,
                 act_cfg: dict | None) -> None:
        super().__init__()
        mid = in_channels * exp_ratio
        self.conv1 = conv_norm_act(in_channels, in_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        if stride == 1:
            self.dwconv = conv_norm_act(in_channels, mid, 3, groups=in_channels, norm_cfg=norm_cfg, act_cfg=act_cfg)
            self.shortcut = None
        else:
            self.dwconv = nn.Sequential(
                *conv_norm_act(in_channels, mid, 3, stride=stride, groups=in_channels, norm_cfg=norm_cfg)[:2],
                *conv_norm_act(mid, mid, 3, groups=mid, norm_cfg=norm_cfg, act_cfg=act_cfg))
            self.shortcut = nn.Sequential(DepthwiseSeparableConv2d(in_channels, out_channels, stride=stride,
                                                                   dw_norm_cfg=norm_cfg, pw_norm_cfg=norm_cfg))
        self.conv2 = nn.Sequential(*conv_norm_act(mid, out_channels, 1, norm_cfg=norm_cfg)[:2])
        self.act = build_act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.dwconv(self.conv1(x)))
        return self.act(out + (x if self.shortcut is None else self.shortcut(x)))


class CEBlock(nn.Module):
    """Context embedding: global average (normalised) -> 1x1 conv-norm-act, added back, then a 3x3 conv-norm-act."""

    def __init__(self, channels: int, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), build_norm(norm_cfg, channels))
        self.conv_gap = conv_norm_act(channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_last = conv_norm_act(channels, channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(x + self.conv_gap(self.gap(x)))


class SemanticBranch(nn.Module):
    """Stem block, GE stages (2 layers each, 4 in the last) and the CE block; returns every stage's output."""

    def __init__(self, channels: tuple[int, ...], in_channels: int, exp_ratio: int, norm_cfg: dict | None,
                 act_cfg: dict | None) -> None:
        super().__init__()
        self.stage_names = []
        for index, width in enumerate(channels):
            name = f"stage{index + 1}"
            if index == 0:
                stage: nn.Module = StemBlock(in_channels, width, norm_cfg, act_cfg)
            else:
                num_layers = 4 if index == len(channels) - 1 else 2
                stage = nn.Sequential(*(
                    GELayer(channels[index - 1] if i == 0 else width, width, exp_ratio, 2 if i == 0 else 1,
                            norm_cfg, act_cfg) for i in range(num_layers)))
            self.add_module(name, stage)
            self.stage_names.append(name)
        name = f"stage{len(channels)}_CEBlock"
        self.add_module(name, CEBlock(channels[-1], norm_cfg, act_cfg))
        self.stage_names.append(name)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs


class BGALayer(nn.Module):
    """Bilateral guided aggregation: detail (stride 8) gated by upsampled semantics, semantics (stride 32) gated by
    downsampled detail, summed at stride 8, 3x3 conv-norm-act."""

    def __init__(self, channels: int, align_corners: bool, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.detail_dwconv = nn.Sequential(DepthwiseSeparableConv2d(channels, channels, dw_norm_cfg=norm_cfg))
        self.detail_down = nn.Sequential(*conv_norm_act(channels, channels, 3, stride=2, norm_cfg=norm_cfg)[:2],
                                         nn.AvgPool2d(kernel_size=3, stride=2, padding=1))
        self.semantic_conv = nn.Sequential(*conv_norm_act(channels, channels, 3, norm_cfg=norm_cfg)[:2])
        self.semantic_dwconv = nn.Sequential(DepthwiseSeparableConv2d(channels, channels, dw_norm_cfg=norm_cfg))
        self.conv = conv_norm_act(channels, channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x_detail: torch.Tensor, x_semantic: torch.Tensor) -> torch.Tensor:
        semantic_conv = F.interpolate(self.semantic_conv(x_semantic), size=x_detail.shape[2:], mode="bilinear",
                                      align_corners=self.align_corners)
        fuse_detail = self.detail_dwconv(x_detail) * torch.sigmoid(semantic_conv)
        fuse_semantic = self.detail_down(x_detail) * torch.sigmoid(self.semantic_dwconv(x_semantic))
        fuse_semantic = F.interpolate(fuse_semantic, size=fuse_detail.shape[2:], mode="bilinear",
                                      align_corners=self.align_corners)
        return self.conv(fuse_detail + fuse_semantic)


@BACKBONES.register("BiSeNetV2")
class BiSeNetV2(Backbone):
    """BiSeNet V2 returning the outputs of ``out_indices`` (0-3 semantic stages, 4 BGA) by non-decreasing stride.

    SSSegmentation's arguments and defaults; ``bga_channels`` must equal the last detail and semantic widths.
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        detail_channels: tuple[int, ...] = (64, 64, 128),
        semantic_channels: tuple[int, ...] = (16, 32, 64, 128),
        semantic_expansion_ratio: int = 6,
        bga_channels: int = 128,
        out_indices: tuple[int, ...] = (0, 1, 2, 3, 4),
        align_corners: bool = False,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        if not bga_channels == detail_channels[-1] == semantic_channels[-1]:
            raise ArgumentError("bga_channels", f"must equal the last detail_channels and semantic_channels "
                                f"({detail_channels[-1]}, {semantic_channels[-1]}), got {bga_channels}")
        self.structure_type = structure_type
        self.detail = DetailBranch(detail_channels, in_channels, norm_cfg, act_cfg)
        self.semantic = SemanticBranch(semantic_channels, in_channels, semantic_expansion_ratio, norm_cfg, act_cfg)
        self.bga = BGALayer(bga_channels, align_corners, norm_cfg, act_cfg)
        candidates = [{"num_chs": width, "reduction": 2 ** (index + 2), "module": f"semantic.stage{index + 1}"}
                      for index, width in enumerate(semantic_channels)]
        candidates.append({"num_chs": bga_channels, "reduction": 2 ** len(detail_channels), "module": "bga"})
        self.output_positions = positions_by_stride(candidates, out_indices)
        self.feature_info = [candidates[i] for i in self.output_positions]
        if pretrained:
            load_published_weights(self, urls=PRETRAINED_URLS, structure_type=structure_type, pretrained_model_path=pretrained_model_path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        semantic = self.semantic(x)
        outputs = [*semantic[:-1], self.bga(self.detail(x), semantic[-1])]
        return [outputs[i] for i in self.output_positions]
