"""Fast-SCNN (Poudel et al. 2019), as SSSegmentation's ``FastSCNN``; also what the hand-written realtime backbones
(UNet, CGNet, ERFNet, BiSeNet V1/V2, MiT) share: index-named conv-norm-act, depth-wise separable conv, inverted
residual, output ordering and weight loading.

Learning to downsample (conv + two depth-wise separable convs, stride 8) -> global feature extractor (inverted
residual bottlenecks to stride 32, pyramid pooling) -> feature fusion (the stride-32 features upsampled, depth-wise
conv, added to the stride-8 ones). Parameter names are SSSegmentation's (``learning_to_downsample.dsconv1``,
``global_feature_extractor.bottleneck1``, ``feature_fusion.conv_lower_res``, ...).

Output order: SSSegmentation indexes the outputs ``0`` higher-resolution (stride 8), ``1`` lower-resolution
(stride 32), ``2`` fused (stride 8), and ``out_indices`` keeps that numbering; segkit's contract returns outputs by
non-decreasing stride, so they come as (higher, fused, lower). SSSegmentation's recipe
``selected_indices = (0, 1, 2)`` (head on the fused output, auxiliary heads on higher and lower) is
``selected_indices = [0, 2, 1]`` here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import BACKBONES
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, build_act, build_norm
from ..pretrained import load_published_weights
from .base import Backbone

PRETRAINED_URLS: dict[str, str] = {}
"""SSSegmentation publishes no Fast-SCNN ImageNet weights (``DEFAULT_MODEL_URLS`` is empty)."""


# ----------------------------------------------------------------------------------------------- shared


def positions_by_stride(candidates: list[dict], out_indices: tuple[int, ...]) -> list[int]:
    """The positions of ``candidates`` (feature_info entries in SSSegmentation's output order) that ``out_indices``
    picks, ordered by stride as segkit's contract wants (ties keep SSSegmentation's order)."""
    if not out_indices or any(i not in range(len(candidates)) for i in out_indices):
        raise ArgumentError("out_indices", f"must be a non-empty subset of 0..{len(candidates) - 1}, "
                            f"got {tuple(out_indices)}")
    return sorted(sorted(set(out_indices)), key=lambda i: candidates[i]["reduction"])


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int | None = None,
                  dilation: int = 1, groups: int = 1, norm_cfg: dict | None = None, act_cfg: dict | None = None,
                  bias: bool = False) -> nn.Sequential:
    """``nn.Sequential(conv, norm, act)``: SSSegmentation's index-named layout (``.0.weight``, ``.1.running_mean``).

    ``padding`` defaults to ``dilation * (kernel_size // 2)``; ``None`` configs give ``nn.Identity`` (no weights).
    """
    padding = dilation * (kernel_size // 2) if padding is None else padding
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                  groups=groups, bias=bias),
        build_norm(norm_cfg, out_channels), build_act(act_cfg))


class DepthwiseSeparableConv2d(nn.Module):
    """Depth-wise conv -> norm -> act, then point-wise conv -> norm -> act (SSSegmentation's module names).

    A ``None`` config means no norm / no activation at that place.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dw_norm_cfg: dict | None = None, dw_act_cfg: dict | None = None,
                 pw_norm_cfg: dict | None = None, pw_act_cfg: dict | None = None) -> None:
        super().__init__()
        self.depthwise_conv = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                                        groups=in_channels, bias=False)
        self.depthwise_bn = build_norm(dw_norm_cfg, in_channels)
        self.depthwise_activate = build_act(dw_act_cfg)
        self.pointwise_conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pointwise_bn = build_norm(pw_norm_cfg, out_channels)
        self.pointwise_activate = build_act(pw_act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_activate(self.depthwise_bn(self.depthwise_conv(x)))
        return self.pointwise_activate(self.pointwise_bn(self.pointwise_conv(x)))


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int,
             norm_cfg: dict | None, act_cfg: dict | None, with_act: bool) -> nn.Sequential:
    """An inverted-residual layer with SSSegmentation's names: ``conv``, ``bn`` and (if ``with_act``) ``activation``."""
    layer = nn.Sequential()
    layer.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                       padding=kernel_size // 2, groups=groups, bias=False))
    layer.add_module("bn", build_norm(norm_cfg, out_channels))
    if with_act:
        layer.add_module("activation", build_act(act_cfg))
    return layer


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual: 1x1 expand -> 3x3 depth-wise -> 1x1 project (``conv.<i>.conv/bn``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int,
                 norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = int(round(in_channels * expand_ratio))
        layers = []
        if expand_ratio != 1:
            layers.append(_conv_bn(in_channels, hidden, 1, 1, 1, norm_cfg, act_cfg, with_act=True))
        layers.append(_conv_bn(hidden, hidden, 3, stride, hidden, norm_cfg, act_cfg, with_act=True))
        layers.append(_conv_bn(hidden, out_channels, 1, 1, 1, norm_cfg, act_cfg, with_act=False))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class LearningToDownsample(nn.Module):
    """Stride-8 stem: 3x3 conv (stride 2) and two depth-wise separable convs (stride 2 each)."""

    def __init__(self, in_channels: int, dw_channels: tuple[int, int], out_channels: int, norm_cfg: dict | None,
                 act_cfg: dict | None, dw_act_cfg: dict | None) -> None:
        super().__init__()
        first, second = dw_channels
        self.conv = conv_norm_act(in_channels, first, 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.dsconv1 = DepthwiseSeparableConv2d(first, second, stride=2, dw_norm_cfg=norm_cfg, dw_act_cfg=dw_act_cfg,
                                                pw_norm_cfg=norm_cfg, pw_act_cfg=act_cfg)
        self.dsconv2 = DepthwiseSeparableConv2d(second, out_channels, stride=2, dw_norm_cfg=norm_cfg,
                                                dw_act_cfg=dw_act_cfg, pw_norm_cfg=norm_cfg, pw_act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dsconv2(self.dsconv1(self.conv(x)))


class GlobalFeatureExtractor(nn.Module):
    """Three inverted-residual stages, pyramid pooling (scales 1, 2, 3, 6) and a 3x3 fusion conv (``out``)."""

    def __init__(self, in_channels: int, block_channels: tuple[int, int, int], out_channels: int,
                 strides: tuple[int, int, int], norm_cfg: dict | None, act_cfg: dict | None, align_corners: bool,
                 num_blocks: tuple[int, int, int] = (3, 3, 3), expand_ratio: int = 6,
                 pool_scales: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.align_corners = align_corners
        channels = (in_channels, *block_channels)
        for index in range(3):
            blocks = [InvertedResidual(channels[index] if i == 0 else channels[index + 1], channels[index + 1],
                                       strides[index] if i == 0 else 1, expand_ratio, norm_cfg, act_cfg)
                      for i in range(num_blocks[index])]
            self.add_module(f"bottleneck{index + 1}", nn.Sequential(*blocks))
        last = block_channels[2]
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), nn.Conv2d(last, last // 4, 1, bias=False),
                          build_norm(norm_cfg, last // 4), build_act(act_cfg))
            for scale in pool_scales)
        self.out = conv_norm_act(last + len(pool_scales) * (last // 4), out_channels, 3, norm_cfg=norm_cfg,
                                 act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck3(self.bottleneck2(self.bottleneck1(x)))
        pooled = [F.interpolate(ppm(x), size=x.shape[2:], mode="bilinear", align_corners=self.align_corners)
                  for ppm in self.ppm]
        return self.out(torch.cat([x, *pooled], dim=1))


class FeatureFusionModule(nn.Module):
    """Upsampled low-resolution features (depth-wise conv, 1x1 conv) added to the 1x1-projected high-resolution ones."""

    def __init__(self, higher_in_channels: int, lower_in_channels: int, out_channels: int, norm_cfg: dict | None,
                 act_cfg: dict | None, align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.dwconv = conv_norm_act(lower_in_channels, out_channels, 3, groups=out_channels, norm_cfg=norm_cfg,
                                    act_cfg=act_cfg)
        self.conv_lower_res = conv_norm_act(out_channels, out_channels, 1, norm_cfg=norm_cfg)
        self.conv_higher_res = conv_norm_act(higher_in_channels, out_channels, 1, norm_cfg=norm_cfg)
        self.act = build_act(act_cfg)

    def forward(self, higher: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
        lower = F.interpolate(lower, size=higher.shape[2:], mode="bilinear", align_corners=self.align_corners)
        lower = self.conv_lower_res(self.dwconv(lower))
        return self.act(self.conv_higher_res(higher) + lower)


@BACKBONES.register("FastSCNN")
class FastSCNN(Backbone):
    """Fast-SCNN returning the outputs of ``out_indices`` (0 higher, 1 lower, 2 fused) by non-decreasing stride.

    SSSegmentation's arguments and defaults. ``dw_act_cfg`` is the activation after the depth-wise convolutions of
    the learning-to-downsample module; ``None`` means none (SSSegmentation falls back to ``act_cfg``).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        downsample_dw_channels: tuple[int, int] = (32, 48),
        global_in_channels: int = 64,
        global_block_channels: tuple[int, int, int] = (64, 96, 128),
        global_block_strides: tuple[int, int, int] = (2, 2, 1),
        global_out_channels: int = 128,
        higher_in_channels: int = 64,
        lower_in_channels: int = 128,
        fusion_out_channels: int = 128,
        out_indices: tuple[int, ...] = (0, 1, 2),
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        dw_act_cfg: dict | None = DEFAULT_ACT_CFG,
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        if global_in_channels != higher_in_channels:
            raise ArgumentError("higher_in_channels", f"must equal global_in_channels ({global_in_channels}): both "
                                f"are the learning-to-downsample output, got {higher_in_channels}")
        if global_out_channels != lower_in_channels:
            raise ArgumentError("lower_in_channels", f"must equal global_out_channels ({global_out_channels}), "
                                f"got {lower_in_channels}")
        self.structure_type = structure_type
        self.learning_to_downsample = LearningToDownsample(in_channels, downsample_dw_channels, global_in_channels,
                                                           norm_cfg, act_cfg, dw_act_cfg)
        self.global_feature_extractor = GlobalFeatureExtractor(
            global_in_channels, global_block_channels, global_out_channels, global_block_strides, norm_cfg, act_cfg,
            align_corners)
        self.feature_fusion = FeatureFusionModule(higher_in_channels, lower_in_channels, fusion_out_channels,
                                                  norm_cfg, act_cfg, align_corners)
        lower_stride = 8 * global_block_strides[0] * global_block_strides[1] * global_block_strides[2]
        candidates = [{"num_chs": global_in_channels, "reduction": 8, "module": "learning_to_downsample"},
                      {"num_chs": global_out_channels, "reduction": lower_stride, "module": "global_feature_extractor"},
                      {"num_chs": fusion_out_channels, "reduction": 8, "module": "feature_fusion"}]
        self.output_positions = positions_by_stride(candidates, out_indices)
        self.feature_info = [candidates[i] for i in self.output_positions]
        if pretrained:
            load_published_weights(self, urls=PRETRAINED_URLS, structure_type=structure_type, pretrained_model_path=pretrained_model_path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        higher = self.learning_to_downsample(x)
        lower = self.global_feature_extractor(higher)
        outputs = (higher, lower, self.feature_fusion(higher, lower))
        return [outputs[i] for i in self.output_positions]
