"""``EdgePerceivingModule``: CE2P's edge branch (Ruan et al., 2019), as SSSegmentation builds it (``ce2p/epm.py``;
module names kept).

Each input level goes through its own 1x1 conv-norm-act (``branches``) to ``hidden_channels``; one shared 3x3
``edge_conv`` (with bias) turns each into ``out_channels`` edge logits. Levels after the first are resized
bilinearly to the first level's size; the edge logits of all levels are concatenated and fused by a 1x1
``fuse_conv`` (with bias). ``forward`` returns ``(edge [B, out_channels, h0, w0], edge_feats [B, L *
hidden_channels, h0, w0])``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv_seq import conv_norm_act_seq


class EdgePerceivingModule(nn.Module):
    """Per-level 1x1 conv-norm-act, a shared 3x3 edge classifier, a 1x1 fusion (see the module docstring)."""

    def __init__(self, in_channels_list: list[int], hidden_channels: int = 256, out_channels: int = 2,
                 align_corners: bool = False, norm_cfg: dict | None = None, act_cfg: dict | None = None) -> None:
        super().__init__()
        if not in_channels_list:
            raise ValueError("EdgePerceivingModule needs at least one input level")
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            conv_norm_act_seq(c, hidden_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg) for c in in_channels_list
        )
        self.edge_conv = nn.Conv2d(hidden_channels, out_channels, kernel_size=3, padding=1, bias=True)
        self.fuse_conv = nn.Conv2d(out_channels * len(in_channels_list), out_channels, kernel_size=1, bias=True)

    def forward(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(inputs) != len(self.branches):
            raise ValueError(f"EdgePerceivingModule: expected {len(self.branches)} levels, got {len(inputs)}")
        size = inputs[0].shape[2:]
        edge_feats, edges = [], []
        for index, (branch, x) in enumerate(zip(self.branches, inputs, strict=True)):
            feats = branch(x)
            edge = self.edge_conv(feats)
            if index > 0:
                feats = F.interpolate(feats, size=size, mode="bilinear", align_corners=self.align_corners)
                edge = F.interpolate(edge, size=size, mode="bilinear", align_corners=self.align_corners)
            edge_feats.append(feats)
            edges.append(edge)
        return self.fuse_conv(torch.cat(edges, dim=1)), torch.cat(edge_feats, dim=1)
