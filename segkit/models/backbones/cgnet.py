"""CGNet (Wu et al. 2018, "A Light-weight Context Guided Network"), as SSSegmentation's ``CGNet`` (M3N21 default).

A 3-conv stem (stride 2), then two levels of context guided blocks: each block joins a local feature (3x3
depth-wise conv) and a surrounding context (dilated 3x3 depth-wise conv), and reweights channels with a global
context (squeeze-and-excitation, ``f_glo``). The input image is injected (average-pooled) at strides 2 and 4.
Parameter names are SSSegmentation's (``stem.<i>.0``, ``level1.<i>.conv1x1``, ``norm_prelu_<i>``, ...).

Outputs (strides 2, 4, 8): stem + image (``num_channels[0] + in_channels``), level 1 (``2 * num_channels[1] +
in_channels``), level 2 (``2 * num_channels[2]``), in SSSegmentation's order. A ``PReLU`` ``act_cfg`` gets one slope
per channel of the layer it follows, as in SSSegmentation.
"""

from __future__ import annotations

import torch
from torch import nn

from ...registry import BACKBONES
from ..layers import DEFAULT_NORM_CFG, ArgumentError, build_norm
from ..pretrained import load_published_weights
from .base import Backbone
from .fastscnn import conv_norm_act

PRETRAINED_URLS: dict[str, str] = {}
"""SSSegmentation publishes no CGNet backbone weights (``DEFAULT_MODEL_URLS`` is empty)."""

PRELU_ACT_CFG: dict = {"type": "PReLU"}
"""SSSegmentation's default activation of CGNet and ERFNet (never mutated)."""


def per_channel(act_cfg: dict | None, channels: int) -> dict | None:
    """``act_cfg`` with ``num_parameters=channels`` if it is a PReLU (a slope per channel)."""
    if act_cfg is not None and act_cfg.get("type") == "PReLU":
        return {**act_cfg, "num_parameters": channels}
    return act_cfg


class GlobalContextExtractor(nn.Module):
    """Squeeze-and-excitation: global average pool -> FC -> ReLU -> FC -> sigmoid channel weights (``fc``)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        if not 1 <= reduction <= channels:
            raise ArgumentError("reductions", f"a reduction must lie in 1..{channels} (the block's channels), "
                                f"got {reduction}")
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(self.avg_pool(x).flatten(1))
        return x * weights[:, :, None, None]


class ContextGuidedBlock(nn.Module):
    """Context guided block; the downsampling variant (first of a level) has a stride-2 3x3 input conv, a 1x1
    ``bottleneck`` after the joint features, and no residual connection."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, reduction: int, downsample: bool,
                 norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        self.downsample = downsample
        channels = out_channels if downsample else out_channels // 2
        self.conv1x1 = conv_norm_act(in_channels, channels, 3 if downsample else 1, stride=2 if downsample else 1,
                                     norm_cfg=norm_cfg, act_cfg=per_channel(act_cfg, channels))
        self.f_loc = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.f_sur = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels,
                               bias=False)
        self.bn = build_norm(norm_cfg, 2 * channels)
        self.activate = nn.PReLU(2 * channels)
        if downsample:
            self.bottleneck = nn.Conv2d(2 * channels, out_channels, 1, bias=False)
        self.f_glo = GlobalContextExtractor(out_channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x)
        joint = self.activate(self.bn(torch.cat([self.f_loc(out), self.f_sur(out)], dim=1)))
        if self.downsample:
            return self.f_glo(self.bottleneck(joint))
        return x + self.f_glo(joint)


class InputInjection(nn.Module):
    """The input image average-pooled ``num_downsamplings`` times (3x3, stride 2)."""

    def __init__(self, num_downsamplings: int) -> None:
        super().__init__()
        self.pools = nn.ModuleList(nn.AvgPool2d(3, stride=2, padding=1) for _ in range(num_downsamplings))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for pool in self.pools:
            x = pool(x)
        return x


def norm_prelu(norm_cfg: dict | None, channels: int) -> nn.Sequential:
    return nn.Sequential(build_norm(norm_cfg, channels), nn.PReLU(channels))


@BACKBONES.register("CGNet")
class CGNet(Backbone):
    """CGNet returning its three level outputs (strides 2, 4, 8); SSSegmentation's arguments and defaults."""

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        num_channels: tuple[int, int, int] = (32, 64, 128),
        num_blocks: tuple[int, int] = (3, 21),
        dilations: tuple[int, int] = (2, 4),
        reductions: tuple[int, int] = (8, 16),
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = PRELU_ACT_CFG,
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        if min(num_blocks) < 1:
            raise ArgumentError("num_blocks", f"each level needs at least one block, got {num_blocks}")
        self.structure_type = structure_type
        stem_act = per_channel(act_cfg, num_channels[0])
        self.stem = nn.ModuleList(
            conv_norm_act(in_channels if i == 0 else num_channels[0], num_channels[0], 3, stride=2 if i == 0 else 1,
                          norm_cfg=norm_cfg, act_cfg=stem_act)
            for i in range(3))
        self.inject_2x = InputInjection(1)
        self.inject_4x = InputInjection(2)
        channels0 = num_channels[0] + in_channels
        self.norm_prelu_0 = norm_prelu(norm_cfg, channels0)
        self.level1 = self._level(channels0, num_channels[1], num_blocks[0], dilations[0], reductions[0],
                                  norm_cfg, act_cfg)
        channels1 = 2 * num_channels[1] + in_channels
        self.norm_prelu_1 = norm_prelu(norm_cfg, channels1)
        self.level2 = self._level(channels1, num_channels[2], num_blocks[1], dilations[1], reductions[1],
                                  norm_cfg, act_cfg)
        channels2 = 2 * num_channels[2]
        self.norm_prelu_2 = norm_prelu(norm_cfg, channels2)
        self.feature_info = [{"num_chs": channels0, "reduction": 2, "module": "norm_prelu_0"},
                             {"num_chs": channels1, "reduction": 4, "module": "norm_prelu_1"},
                             {"num_chs": channels2, "reduction": 8, "module": "norm_prelu_2"}]
        if pretrained:
            load_published_weights(self, urls=PRETRAINED_URLS, structure_type=structure_type, pretrained_model_path=pretrained_model_path)

    @staticmethod
    def _level(in_channels: int, out_channels: int, num_blocks: int, dilation: int, reduction: int,
               norm_cfg: dict | None, act_cfg: dict | None) -> nn.ModuleList:
        return nn.ModuleList(
            ContextGuidedBlock(in_channels if i == 0 else out_channels, out_channels, dilation, reduction,
                               downsample=i == 0, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        image_2x, image_4x = self.inject_2x(x), self.inject_4x(x)
        for layer in self.stem:
            x = layer(x)
        stage0 = self.norm_prelu_0(torch.cat([x, image_2x], dim=1))
        down1 = x = self.level1[0](stage0)
        for block in self.level1[1:]:
            x = block(x)
        stage1 = self.norm_prelu_1(torch.cat([x, down1, image_4x], dim=1))
        down2 = x = self.level2[0](stage1)
        for block in self.level2[1:]:
            x = block(x)
        stage2 = self.norm_prelu_2(torch.cat([down2, x], dim=1))
        return [stage0, stage1, stage2]
