"""``ImageLevelContext``: ISNet's image-level context (Jin et al., 2021), as SSSegmentation builds it
(``isnet/imagelevel.py``; module names kept).

Each position attends (a :class:`~segkit.models.layers.self_attention.SelfAttentionBlock` with queries from ``x``)
to keys and values made of ``[global average of x, x]``; with ``concat_input`` a 3x3 conv-norm-act ``bottleneck``
fuses ``[x, context]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv_seq import conv_norm_act_seq
from .self_attention import SelfAttentionBlock


def isnet_attention(key_in_channels: int, feats_channels: int, transform_channels: int, norm_cfg: dict | None,
                    act_cfg: dict | None) -> SelfAttentionBlock:
    """The attention ISNet's context modules share: 2 key/query convs, 1 value/out conv, all normalised, scaled
    dot products, an output projection back to ``feats_channels``."""
    return SelfAttentionBlock(
        key_in_channels=key_in_channels, query_in_channels=feats_channels, transform_channels=transform_channels,
        out_channels=feats_channels, share_key_query=False, query_downsample=None, key_downsample=None,
        key_query_num_convs=2, value_out_num_convs=1, key_query_norm=True, value_out_norm=True, matmul_norm=True,
        with_out_project=True, norm_cfg=norm_cfg, act_cfg=act_cfg,
    )


class ImageLevelContext(nn.Module):
    """``x`` attending to ``[global pool of x, x]`` (see the module docstring)."""

    def __init__(self, feats_channels: int, transform_channels: int, concat_input: bool = False,
                 align_corners: bool = False, norm_cfg: dict | None = None, act_cfg: dict | None = None) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.global_avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.correlate_net = isnet_attention(feats_channels * 2, feats_channels, transform_channels, norm_cfg, act_cfg)
        self.bottleneck = (
            conv_norm_act_seq(feats_channels * 2, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
            if concat_input else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_global = F.interpolate(self.global_avgpool(x), size=x.shape[2:], mode="bilinear",
                                 align_corners=self.align_corners)
        feats = self.correlate_net(x, torch.cat([x_global, x], dim=1))
        if self.bottleneck is not None:
            feats = self.bottleneck(torch.cat([x, feats], dim=1))
        return feats
