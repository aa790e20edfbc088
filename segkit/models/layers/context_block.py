"""``ContextBlock``: the global context block of GCNet (Cao et al., "GCNet: Non-local Networks Meet
Squeeze-Excitation Networks and Beyond", 2019).

One context vector per image, pooled with a softmax attention over positions (``pooling_type="att"``) or by
averaging (``"avg"``), is transformed by a bottleneck (1x1 conv to ``in_channels * ratio`` -> norm -> act -> 1x1 conv)
and fused into every position by addition (``channel_add``) and/or by a sigmoid gate (``channel_mul``)::

    context = sum_j softmax_j(conv_mask(x)_j) x_j                    # [B, C, 1, 1]
    out     = x * sigmoid(channel_mul_conv(context)) + channel_add_conv(context)

The bottleneck's norm is normally ``LayerNorm`` over ``[C * ratio, 1, 1]`` (the paper's and SSSegmentation's GCNet
config); any other norm of ``norm_cfg`` is built for the channel count. Module names are SSSegmentation's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from .norm_act import build_act, build_norm, validate_norm_cfg

PoolingType = Literal["att", "avg"]
FusionType = Literal["channel_add", "channel_mul"]


def build_context_norm(norm_cfg: dict | None, channels: int) -> nn.Module:
    """The norm of the context bottleneck: ``LayerNorm`` normalises ``[channels, 1, 1]`` (SSSegmentation builds it
    with that shape), any other norm is built for ``channels``."""
    if norm_cfg is not None and norm_cfg.get("type") == "LayerNorm":
        kwargs = copy.deepcopy(validate_norm_cfg(norm_cfg))
        return nn.LayerNorm([channels, 1, 1], **kwargs)
    return build_norm(norm_cfg, channels)


class ContextBlock(nn.Module):
    """The GC block (see the module docstring) on ``[B, C, H, W]`` maps; ``planes = int(in_channels * ratio)``."""

    def __init__(
        self,
        in_channels: int,
        ratio: float,
        pooling_type: PoolingType = "att",
        fusion_types: Sequence[FusionType] = ("channel_add",),
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if pooling_type not in ("att", "avg"):
            raise ValueError(f"pooling_type must be 'att' or 'avg', got {pooling_type!r}")
        if not fusion_types or any(f not in ("channel_add", "channel_mul") for f in fusion_types):
            raise ValueError(f"fusion_types must be a non-empty list of 'channel_add'/'channel_mul', got "
                             f"{list(fusion_types)!r}")
        self.in_channels = in_channels
        self.ratio = ratio
        self.planes = int(in_channels * ratio)
        if self.planes < 1:
            raise ValueError(f"in_channels * ratio must be >= 1, got {in_channels} * {ratio}")
        self.pooling_type = pooling_type
        self.fusion_types = tuple(fusion_types)
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(in_channels, 1, 1)
        else:
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.channel_add_conv = self._transform(norm_cfg, act_cfg) if "channel_add" in fusion_types else None
        self.channel_mul_conv = self._transform(norm_cfg, act_cfg) if "channel_mul" in fusion_types else None

    def _transform(self, norm_cfg: dict | None, act_cfg: dict | None) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(self.in_channels, self.planes, 1),
            build_context_norm(norm_cfg, self.planes),
            build_act(act_cfg),
            nn.Conv2d(self.planes, self.in_channels, 1),
        )

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        """The ``[B, C, 1, 1]`` context of each image."""
        if self.pooling_type == "avg":
            return self.avg_pool(x)
        mask = self.conv_mask(x).flatten(2).softmax(dim=-1)  # [B, 1, HW]
        context = torch.matmul(x.flatten(2), mask.transpose(1, 2))  # [B, C, 1]
        return context.unsqueeze(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out
