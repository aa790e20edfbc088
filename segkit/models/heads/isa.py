"""``ISAHead``: interlaced sparse self-attention (Huang et al., "Interlaced Sparse Self-Attention for Semantic
Segmentation", 2019), as SSSegmentation's ISANet builds it.

The feature map (padded to a multiple of ``down_factor = (loc_h, loc_w)``, symmetrically) is viewed as a
``glb_h x glb_w`` grid of ``loc_h x loc_w`` blocks. Long-range attention first runs among the pixels that share a
position inside their block (``loc_h * loc_w`` groups of ``glb_h * glb_w`` pixels spread over the image), then
short-range attention runs inside each block (``glb_h * glb_w`` groups of ``loc_h * loc_w`` neighbours)::

    feats  = in_conv(x)                                        # 3x3 conv-norm-act
    y      = local_relation(global_relation(feats))            # on the interlaced groups, cropped back
    logits = decoder(out_conv(concat(y, feats)))               # 3x3 conv-norm-act; Dropout2d -> 1x1
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.self_attention import SelfAttentionBlock
from .base import Head


class ISASelfAttentionBlock(SelfAttentionBlock):
    """Self-attention within one group of pixels: query/key projections of two 1x1 conv-norm-act to ``channels``,
    a 1x1 value projection (no norm), scaled dot products, then ``output_project`` (1x1 conv-norm-act)."""

    def __init__(self, in_channels: int, channels: int, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None) -> None:
        super().__init__(
            key_in_channels=in_channels, query_in_channels=in_channels, transform_channels=channels,
            out_channels=in_channels, share_key_query=False, query_downsample=None, key_downsample=None,
            key_query_num_convs=2, value_out_num_convs=1, key_query_norm=True, value_out_norm=False,
            matmul_norm=True, with_out_project=False, norm_cfg=norm_cfg, act_cfg=act_cfg,
        )
        self.output_project = self.build_project(in_channels, in_channels, 1, True, norm_cfg, act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.output_project(super().forward(x, x))


@HEADS.register("ISAHead")
class ISAHead(Head):
    """ISANet's decoder (see the module docstring); ``isa_channels`` is the attention's query/key width."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        down_factor: tuple[int, int] = (8, 8),
        feats_channels: int = 512,
        isa_channels: int = 256,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if len(down_factor) != 2 or min(down_factor) < 1:
            raise ArgumentError("down_factor", f"expected two positive integers (loc_h, loc_w), got {down_factor}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.down_factor = (int(down_factor[0]), int(down_factor[1]))
        self.in_conv = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.global_relation = ISASelfAttentionBlock(feats_channels, isa_channels, norm_cfg, act_cfg)
        self.local_relation = ISASelfAttentionBlock(feats_channels, isa_channels, norm_cfg, act_cfg)
        self.out_conv = ConvNormAct(feats_channels * 2, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(feats_channels, num_classes, 1))

    def interlaced_attention(self, feats: torch.Tensor) -> torch.Tensor:
        """Global then local relation over the interlaced groups; same shape as ``feats``."""
        n, c, h, w = feats.shape
        loc_h, loc_w = self.down_factor
        glb_h, glb_w = math.ceil(h / loc_h), math.ceil(w / loc_w)
        pad_h, pad_w = glb_h * loc_h - h, glb_w * loc_w - w
        if pad_h > 0 or pad_w > 0:
            feats = F.pad(feats, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        # long range: the pixels at the same offset (i, j) of every block form one group
        x = feats.reshape(n, c, glb_h, loc_h, glb_w, loc_w).permute(0, 3, 5, 1, 2, 4)
        x = self.global_relation(x.reshape(n * loc_h * loc_w, c, glb_h, glb_w))
        # short range: the pixels of one block form one group
        x = x.reshape(n, loc_h, loc_w, c, glb_h, glb_w).permute(0, 4, 5, 3, 1, 2)
        x = self.local_relation(x.reshape(n * glb_h * glb_w, c, loc_h, loc_w))
        x = x.reshape(n, glb_h, glb_w, c, loc_h, loc_w).permute(0, 3, 1, 4, 2, 5)
        x = x.reshape(n, c, glb_h * loc_h, glb_w * loc_w)
        return x[:, :, pad_h // 2: pad_h // 2 + h, pad_w // 2: pad_w // 2 + w]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        feats = self.in_conv(self.select(features))
        out = self.out_conv(torch.cat([self.interlaced_attention(feats), feats], dim=1))
        return self.decoder(out)
