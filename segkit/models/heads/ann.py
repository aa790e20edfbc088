"""``ANNHead``: Asymmetric Non-local Neural Networks (Zhu et al., ICCV 2019), as SSSegmentation's ANNNet builds them.

Both blocks are non-local attention whose keys and values are *pyramid pooled* (``PPMConcat``: adaptive average
pools of sizes ``key_pool_scales``, flattened and concatenated: 1 + 9 + 36 + 64 = 110 positions by default), which
makes them cheap:

* AFNB (asymmetric fusion): queries from the high-level feature, keys/values from the low-level one; the context is
  fused with the high-level feature by a 1x1 conv + norm (no activation).
* APNB (asymmetric pyramid): self-attention of the bottleneck features (shared key/query projection), fused by a
  1x1 conv-norm-act.

::

    feats  = afn_block(low, high)              # low = features[in_index[0]], high = features[in_index[1]]
    feats  = decoder[0](feats)                 # Dropout2d: after AFNB, as SSSegmentation (not before the classifier)
    feats  = apn_block(bottleneck(feats))      # 3x3 conv-norm-act to feats_channels
    logits = decoder[1](feats)                 # 1x1

Each of ``query_scales`` adds one attention stage (queries max-pooled by the scale; their contexts are upsampled
back and summed; SSSegmentation 1.7.0 fails for scales > 1, every config uses ``(1,)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.self_attention import SelfAttentionBlock
from .base import Head


class PPMConcat(nn.Module):
    """Adaptive average pools of each size in ``pool_scales``, flattened and concatenated: ``[B, C, sum(s*s)]``."""

    def __init__(self, pool_scales: Sequence[int]) -> None:
        super().__init__()
        self.pool_nets = nn.ModuleList(nn.AdaptiveAvgPool2d(scale) for scale in pool_scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([pool(x).flatten(2) for pool in self.pool_nets], dim=2)


def _stages(key_in_channels: int, query_in_channels: int, transform_channels: int, out_channels: int,
            query_scales: Sequence[int], key_pool_scales: Sequence[int], share_key_query: bool,
            norm_cfg: dict | None, act_cfg: dict | None) -> nn.ModuleList:
    return nn.ModuleList(
        SelfAttentionBlock(
            key_in_channels=key_in_channels, query_in_channels=query_in_channels,
            transform_channels=transform_channels, out_channels=out_channels, share_key_query=share_key_query,
            query_downsample=nn.MaxPool2d(kernel_size=scale) if scale > 1 else None,
            key_downsample=PPMConcat(key_pool_scales), key_query_num_convs=1, value_out_num_convs=1,
            key_query_norm=True, value_out_norm=False, matmul_norm=True, with_out_project=True,
            norm_cfg=norm_cfg, act_cfg=act_cfg,
        )
        for scale in query_scales
    )


def _sum_priors(priors: list[torch.Tensor], size: torch.Size, align_corners: bool) -> torch.Tensor:
    resized = [p if p.shape[2:] == size else F.interpolate(p, size=size, mode="bilinear", align_corners=align_corners)
               for p in priors]
    return torch.stack(resized, dim=0).sum(dim=0)


class AFNBlock(nn.Module):
    """Asymmetric fusion non-local block: high-level queries attend to pyramid-pooled low-level keys/values; the
    summed contexts are fused with the high-level features (1x1 conv + norm, no activation) to ``out_channels``."""

    def __init__(self, low_in_channels: int, high_in_channels: int, transform_channels: int, out_channels: int,
                 query_scales: Sequence[int], key_pool_scales: Sequence[int], norm_cfg: dict | None = None,
                 act_cfg: dict | None = None, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.stages = _stages(low_in_channels, high_in_channels, transform_channels, out_channels, query_scales,
                              key_pool_scales, False, norm_cfg, act_cfg)
        self.bottleneck = ConvNormAct(out_channels + high_in_channels, out_channels, 1, norm_cfg=norm_cfg,
                                      act_cfg=None)

    def forward(self, low_feats: torch.Tensor, high_feats: torch.Tensor) -> torch.Tensor:
        priors = [stage(high_feats, low_feats) for stage in self.stages]
        context = _sum_priors(priors, high_feats.shape[2:], self.align_corners)
        return self.bottleneck(torch.cat([context, high_feats], dim=1))


class APNBlock(nn.Module):
    """Asymmetric pyramid non-local block: self-attention with pyramid-pooled keys/values (one projection shared by
    keys and queries), fused with its input by a 1x1 conv-norm-act to ``out_channels``."""

    def __init__(self, in_channels: int, transform_channels: int, out_channels: int, query_scales: Sequence[int],
                 key_pool_scales: Sequence[int], norm_cfg: dict | None = None, act_cfg: dict | None = None,
                 align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.stages = _stages(in_channels, in_channels, transform_channels, out_channels, query_scales,
                              key_pool_scales, True, norm_cfg, act_cfg)
        self.bottleneck = ConvNormAct(in_channels + out_channels, out_channels, 1, norm_cfg=norm_cfg,
                                      act_cfg=act_cfg)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        priors = [stage(feats, feats) for stage in self.stages]
        context = _sum_priors(priors, feats.shape[2:], self.align_corners)
        return self.bottleneck(torch.cat([context, feats], dim=1))


@HEADS.register("ANNHead")
class ANNHead(Head):
    """ANNNet's decoder (see the module docstring) on two features (``in_index``: low, high).

    ``in_channels`` is derived from those features; ``in_channels_list`` is SSSegmentation's name for it, accepted
    and checked.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        in_channels_list: list[int] | None = None,
        transform_channels: int = 256,
        query_scales: tuple[int, ...] = (1,),
        feats_channels: int = 512,
        key_pool_scales: tuple[int, ...] = (1, 3, 6, 8),
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = (-2, -1),
    ) -> None:
        super().__init__(in_index)
        if not isinstance(in_channels, list | tuple) or len(in_channels) != 2:
            raise ArgumentError("in_index", f"ANNHead reads two features (low, high), got channels {in_channels}")
        if in_channels_list is not None and list(in_channels_list) != list(in_channels):
            raise ArgumentError("in_channels_list", f"{list(in_channels_list)} does not match the features it reads "
                                f"(in_index {self.in_index}: {list(in_channels)} channels)")
        if not query_scales or min(query_scales) < 1:
            raise ArgumentError("query_scales", f"expected positive integers, got {list(query_scales)}")
        if not key_pool_scales or min(key_pool_scales) < 1:
            raise ArgumentError("key_pool_scales", f"expected positive integers, got {list(key_pool_scales)}")
        low_channels, high_channels = in_channels
        self.in_channels = list(in_channels)
        self.num_classes = num_classes
        self.afn_block = AFNBlock(low_channels, high_channels, transform_channels, high_channels, query_scales,
                                  key_pool_scales, norm_cfg, act_cfg, align_corners)
        self.apn_block = APNBlock(feats_channels, transform_channels, feats_channels, query_scales, key_pool_scales,
                                  norm_cfg, act_cfg, align_corners)
        self.bottleneck = ConvNormAct(high_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(feats_channels, num_classes, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low_feats, high_feats = self.select(features)
        feats = self.decoder[0](self.afn_block(low_feats, high_feats))
        feats = self.apn_block(self.bottleneck(feats))
        return self.decoder[1](feats)
