"""BiSeNet V1 (Yu et al. 2018, "Bilateral Segmentation Network"), as SSSegmentation's ``BiSeNetV1``.

A spatial path (three stride-2 convs and a 1x1 conv: stride 8, wide) keeps detail; a context path (an inner backbone,
``backbone_cfg``, built through ``BACKBONES``; attention refinement modules (ARM) on its stride-16 and stride-32
features plus a global-average context) gives receptive field; a feature fusion module (FFM) joins both at stride 8.
Parameter names are SSSegmentation's (``context_path.backbone_net.*``, ``context_path.arm16``, ``spatial_path.layer1``,
``ffm.conv_atten``, ...), so the inner ResNet's keys are those of SSSegmentation's checkpoints.

Output order: SSSegmentation indexes the outputs ``0`` context (stride 8), ``1`` context (stride 16), ``2`` fused
(stride 8), and ``out_indices`` keeps that numbering; segkit's contract returns outputs by non-decreasing stride, so
they come as (context 8, fused, context 16). SSSegmentation's ``selected_indices = (0, 1, 2)`` (head on the fused
output) is ``selected_indices = [0, 2, 1]`` here.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import RecipeError
from ...registry import BACKBONES
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, build_norm
from ..pretrained import load_published_weights
from .base import Backbone
from .fastscnn import conv_norm_act, positions_by_stride

PRETRAINED_URLS: dict[str, str] = {}
"""SSSegmentation publishes no BiSeNetV1 weights (``DEFAULT_MODEL_URLS`` is empty; the inner ResNet has its own)."""

DEFAULT_CONTEXT_BACKBONE: dict = {"type": "ResNet", "structure_type": "resnet18conv3x3stem", "outstride": 32}
"""The context path's backbone when ``backbone_cfg`` is not given (SSSegmentation has no default; this one fits the
default ``context_channels_list``)."""


class SpatialPath(nn.Module):
    """7x7/2, 3x3/2, 3x3/2 and 1x1 conv-norm-act layers (``layer1`` .. ``layer4``): stride 8."""

    def __init__(self, in_channels: int, channels: tuple[int, int, int, int], norm_cfg: dict | None,
                 act_cfg: dict | None) -> None:
        super().__init__()
        kernels, strides = (7, 3, 3, 1), (2, 2, 2, 1)
        for index in range(4):
            source = in_channels if index == 0 else channels[index - 1]
            self.add_module(f"layer{index + 1}", conv_norm_act(source, channels[index], kernels[index],
                                                               stride=strides[index], norm_cfg=norm_cfg,
                                                               act_cfg=act_cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class AttentionRefinementModule(nn.Module):
    """3x3 conv-norm-act, reweighted by a sigmoid channel attention from its global average."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        self.conv_layer = conv_norm_act(in_channels, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.atten_conv_layer = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(out_channels, out_channels, 1, bias=False),
            build_norm(norm_cfg, out_channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_layer(x)
        return x * self.atten_conv_layer(x)


class ContextPath(nn.Module):
    """The inner backbone's stride-16/32 features refined (ARM), plus global context, upsampled to strides 16 and 8."""

    def __init__(self, backbone_net: nn.Module, context_channels: tuple[int, int, int], norm_cfg: dict | None,
                 act_cfg: dict | None) -> None:
        super().__init__()
        out_channels = context_channels[0]
        self.backbone_net = backbone_net
        self.arm16 = AttentionRefinementModule(context_channels[1], out_channels, norm_cfg, act_cfg)
        self.arm32 = AttentionRefinementModule(context_channels[2], out_channels, norm_cfg, act_cfg)
        self.conv_head32 = conv_norm_act(out_channels, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_head16 = conv_norm_act(out_channels, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.gap_conv = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                      *conv_norm_act(context_channels[2], out_channels, 1, norm_cfg=norm_cfg,
                                                     act_cfg=act_cfg))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, x_8, x_16, x_32 = self.backbone_net(x)
        x_32_sum = self.arm32(x_32) + self.gap_conv(x_32)
        x_32_up = self.conv_head32(F.interpolate(x_32_sum, size=x_16.shape[2:], mode="nearest"))
        x_16_sum = self.arm16(x_16) + x_32_up
        x_16_up = self.conv_head16(F.interpolate(x_16_sum, size=x_8.shape[2:], mode="nearest"))
        return x_16_up, x_32_up


class FeatureFusionModule(nn.Module):
    """1x1 conv-norm-act on the concatenated paths, plus itself reweighted by a channel attention."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        self.conv1 = conv_norm_act(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.conv_atten = nn.Sequential(*conv_norm_act(out_channels, out_channels, 1, norm_cfg=norm_cfg,
                                                       act_cfg=act_cfg), nn.Sigmoid())

    def forward(self, x_spatial: torch.Tensor, x_context: torch.Tensor) -> torch.Tensor:
        fused = self.conv1(torch.cat([x_spatial, x_context], dim=1))
        return fused * self.conv_atten(self.gap(fused)) + fused


def build_context_backbone(backbone_cfg: dict | None, norm_cfg: dict | None) -> nn.Module:
    """Build ``backbone_cfg`` through ``BACKBONES`` (given ``norm_cfg`` unless it sets its own); errors name the key."""
    cfg = copy.deepcopy(backbone_cfg if backbone_cfg is not None else DEFAULT_CONTEXT_BACKBONE)
    cfg.setdefault("norm_cfg", copy.deepcopy(norm_cfg))
    try:
        backbone = BACKBONES.build(cfg, path="backbone_cfg")
    except ArgumentError as exc:
        raise ArgumentError(f"backbone_cfg.{exc.argument}", exc.detail) from None
    except RecipeError as exc:
        raise ArgumentError(exc.path, exc.message) from None
    info = getattr(backbone, "feature_info", [])
    if len(info) != 4 or info[1]["reduction"] != 8:
        raise ArgumentError("backbone_cfg", "the context path needs a backbone with 4 outputs at strides 4, 8, 16, "
                            f"32 (a ResNet with outstride 32); got strides {[i['reduction'] for i in info]}")
    return backbone


@BACKBONES.register("BiSeNetV1")
class BiSeNetV1(Backbone):
    """BiSeNet V1 returning the outputs of ``out_indices`` (0 context-8, 1 context-16, 2 fused) by stride.

    SSSegmentation's arguments and defaults. ``context_channels_list`` is (ARM output width, the inner backbone's
    stride-16 and stride-32 channels). The fusion module takes ``spatial_channels_list[-1] + context_channels_list[0]``
    channels (SSSegmentation uses ``context_channels_list[1]``, which is the same number in its configurations).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        backbone_cfg: dict | None = None,
        in_channels: int = 3,
        spatial_channels_list: tuple[int, int, int, int] = (64, 64, 64, 128),
        context_channels_list: tuple[int, int, int] = (128, 256, 512),
        out_indices: tuple[int, ...] = (0, 1, 2),
        out_channels: int = 256,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        inner = build_context_backbone(backbone_cfg, norm_cfg)
        inner_channels = [i["num_chs"] for i in inner.feature_info]
        if list(context_channels_list[1:]) != inner_channels[2:]:
            raise ArgumentError("context_channels_list", f"entries 1 and 2 must be the context backbone's stride-16 "
                                f"and stride-32 channels {inner_channels[2:]}, got {list(context_channels_list)}")
        self.structure_type = structure_type
        self.context_path = ContextPath(inner, context_channels_list, norm_cfg, act_cfg)
        self.spatial_path = SpatialPath(in_channels, spatial_channels_list, norm_cfg, act_cfg)
        self.ffm = FeatureFusionModule(spatial_channels_list[-1] + context_channels_list[0], out_channels, norm_cfg,
                                       act_cfg)
        context_stride = inner.feature_info[2]["reduction"]
        candidates = [{"num_chs": context_channels_list[0], "reduction": 8, "module": "context_path.conv_head16"},
                      {"num_chs": context_channels_list[0], "reduction": context_stride,
                       "module": "context_path.conv_head32"},
                      {"num_chs": out_channels, "reduction": 8, "module": "ffm"}]
        self.output_positions = positions_by_stride(candidates, out_indices)
        self.feature_info = [candidates[i] for i in self.output_positions]
        if pretrained:
            load_published_weights(self, urls=PRETRAINED_URLS, structure_type=structure_type, pretrained_model_path=pretrained_model_path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        context8, context16 = self.context_path(x)
        fused = self.ffm(self.spatial_path(x), context8)
        outputs = (context8, context16, fused)
        return [outputs[i] for i in self.output_positions]
