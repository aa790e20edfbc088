"""``LRASPPHead``: the Lite R-ASPP decoder of MobileNetV3 (Howard et al., 2019), as SSSegmentation's ``LRASPPNet``
builds it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import SegkitError
from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct, build_norm
from .base import Head


class InputTooSmallError(SegkitError):
    """An input is smaller than a fixed-size layer of the model allows."""


def _pair(value: int | list[int] | tuple[int, ...], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
        raise ArgumentError(name, f"expected a positive integer or two of them, got {value!r}")
    return pair  # type: ignore[return-value]


@HEADS.register("LRASPPHead")
class LRASPPHead(Head):
    """Lite R-ASPP on the last feature read, then one fusion per branch towards the first one.

    With ``in_index = [0, 1, 2]`` (SSSegmentation's MobileNetV3 ``selected_indices = (0, 1, 2)``) the last feature
    ``x`` goes through ``aspp_conv`` (1x1 conv-norm-act) times ``image_pool`` (average pooling -> 1x1 conv -> norm ->
    sigmoid, resized back bilinearly), then ``bottleneck`` (1x1 conv). For each branch from the last to the first
    (``branch_channels_list[i]`` on feature ``i``): resize to feature ``i``, concatenate ``branch_convs.conv{i}``
    (1x1 conv) of feature ``i``, fuse with ``branch_ups.conv{i}`` (1x1 conv-norm-act). Then Dropout2d and a 1x1
    classifier (``decoder``). Logits come at the first feature's resolution.

    The image pooling is SSSegmentation's fixed ``AvgPool2d(kernel_size=49, stride=(16, 20))`` (made for 512x1024
    Cityscapes crops at output stride 8) by default: the last feature map must then be at least 49x49, i.e. inputs
    of at least 392x392 at output stride 8, else :class:`InputTooSmallError`. ``pool_kernel`` and ``pool_stride``
    change it (e.g. for small inputs); the defaults are SSSegmentation's. ``in_channels_list`` (SSSegmentation's
    name) is derived as ``in_channels``; given, it is checked.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        branch_channels_list: list[int] = (32, 64),  # type: ignore[assignment]
        feats_channels: int = 128,
        dropout: float = 0.1,
        pool_kernel: int | list[int] = 49,
        pool_stride: int | list[int] = (16, 20),  # type: ignore[assignment]
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_channels_list: list[int] | None = None,
        in_strides: list[int] | None = None,
        in_index: InIndex = (0, 1, 2),
    ) -> None:
        super().__init__(in_index)
        if isinstance(in_channels, int):
            in_channels = [in_channels]
        if in_channels_list is not None and list(in_channels_list) != list(in_channels):
            raise ArgumentError("in_channels_list", f"{list(in_channels_list)} does not match the features it reads "
                                f"({list(in_channels)} channels)")
        branch_channels_list = list(branch_channels_list)
        if len(in_channels) != len(branch_channels_list) + 1:
            raise ArgumentError("in_index", f"LRASPPHead reads one feature per branch plus the last one: "
                                f"{len(branch_channels_list)} branches (branch_channels_list) need "
                                f"{len(branch_channels_list) + 1} features, in_index gives {len(in_channels)}")
        self.pool_kernel = _pair(pool_kernel, "pool_kernel")
        self.pool_stride = _pair(pool_stride, "pool_stride")
        self.align_corners = align_corners
        self.num_branches = len(branch_channels_list)
        self.last_stride = None if in_strides is None else list(in_strides)[-1]
        self.branch_convs, self.branch_ups = nn.Sequential(), nn.Sequential()
        for idx, branch_channels in enumerate(branch_channels_list):
            self.branch_convs.add_module(f"conv{idx}", nn.Conv2d(in_channels[idx], branch_channels, 1, bias=False))
            self.branch_ups.add_module(f"conv{idx}", ConvNormAct(feats_channels + branch_channels, feats_channels, 1,
                                                                 norm_cfg=norm_cfg, act_cfg=act_cfg))
        self.aspp_conv = ConvNormAct(in_channels[-1], feats_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.image_pool = nn.Sequential(
            nn.AvgPool2d(kernel_size=self.pool_kernel, stride=self.pool_stride),
            nn.Conv2d(in_channels[-1], feats_channels, 1, bias=False),
            build_norm(norm_cfg, feats_channels),
            nn.Sigmoid(),
        )
        self.bottleneck = nn.Conv2d(feats_channels, feats_channels, 1, bias=False)
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(feats_channels, num_classes, 1))

    def check_size(self, x: torch.Tensor) -> None:
        """Raise :class:`InputTooSmallError` when ``x`` is smaller than the image pooling's kernel."""
        (kh, kw), (h, w) = self.pool_kernel, (int(x.shape[2]), int(x.shape[3]))
        if h >= kh and w >= kw:
            return
        if self.last_stride is not None:
            s = self.last_stride
            need = (f" (inputs of at least {kh * s}x{kw * s} at output stride {s}); got a {h}x{w} feature map, "
                    f"from an input of about {h * s}x{w * s}")
        else:
            need = f"; got {h}x{w}"
        raise InputTooSmallError(
            f"LRASPPNet needs feature maps of at least {kh}x{kw}{need}. Its image pooling is SSSegmentation's "
            f"AvgPool2d(kernel_size={kh}x{kw}, stride={self.pool_stride[0]}x{self.pool_stride[1]}); use larger "
            "inputs or set head.pool_kernel / head.pool_stride")

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        inputs = self.select(features)
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        x = inputs[-1]
        self.check_size(x)
        pooled = F.interpolate(self.image_pool(x), size=x.shape[2:], mode="bilinear",
                               align_corners=self.align_corners)
        feats = self.bottleneck(self.aspp_conv(x) * pooled)
        for idx in range(self.num_branches - 1, -1, -1):
            feats = F.interpolate(feats, size=inputs[idx].shape[2:], mode="bilinear",
                                  align_corners=self.align_corners)
            feats = torch.cat([feats, self.branch_convs[idx](inputs[idx])], dim=1)
            feats = self.branch_ups[idx](feats)
        return self.decoder(feats)
