"""``MLANeck``: SETR-MLA's multi-level feature aggregation (Zheng et al., 2021), SSSegmentation's ``mla_neck``."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import NECKS
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct, build_norm
from .sequence_norm import LN_EPS6, check_token_norm_cfg, norm_tokens


class MLAModule(nn.Module):
    """1x1 conv-norm-act per level (``channel_proj``); running sums from the last level to the first; a 3x3
    conv-norm-act on each sum (``feat_extract``). Output ``i`` is the sum of the last ``i + 1`` levels: the first
    output holds the deepest level alone, the last one all of them (SSSegmentation's and mmseg's order)."""

    def __init__(self, in_channels: list[int], out_channels: int, norm_cfg: dict | None,
                 act_cfg: dict | None) -> None:
        super().__init__()
        self.channel_proj = nn.ModuleList([
            ConvNormAct(c, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg) for c in in_channels
        ])
        self.feat_extract = nn.ModuleList([
            ConvNormAct(out_channels, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg) for _ in in_channels
        ])

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        projected = [conv(x) for conv, x in zip(self.channel_proj, inputs, strict=True)]
        sums: list[torch.Tensor] = []
        for x in reversed(projected):
            sums.append(x if not sums else sums[-1] + x)
        return [conv(x) for conv, x in zip(self.feat_extract, sums, strict=True)]


@NECKS.register("MLANeck")
class MLANeck(nn.Module):
    """Per-level LayerNorm over tokens (``norm_layers``, ``token_norm_cfg``: SSSegmentation's SETR-MLA
    ``head.norm_cfg``) -> :class:`MLAModule` (``mla``; ``out_channels`` is SSSegmentation's
    ``head.mla_feats_channels``, ``norm_cfg``/``act_cfg`` the segmentor's).

    The levels are summed without resizing, so they must share one stride (ViT levels do). The outputs are
    ``out_channels`` wide, as many as the inputs, in :class:`MLAModule`'s order.
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int = 256,
        token_norm_cfg: dict | None = LN_EPS6,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_strides: list[int] | None = None,
    ) -> None:
        super().__init__()
        check_token_norm_cfg(token_norm_cfg)
        if in_strides is not None and len(set(in_strides)) > 1:
            raise ArgumentError("in_strides", f"MLANeck adds its levels without resizing; they must share one "
                                f"stride, got {list(in_strides)}")
        self.in_channels, self.out_channels = list(in_channels), out_channels
        self.norm_layers = nn.ModuleList([build_norm(token_norm_cfg, c, path="token_norm_cfg") for c in in_channels])
        self.mla = MLAModule(in_channels, out_channels, norm_cfg, act_cfg)
        stride = in_strides[0] if in_strides else 1
        self.feature_info = [{"num_chs": out_channels, "reduction": stride, "module": f"mla.feat_extract.{i}"}
                             for i in range(len(in_channels))]

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != len(self.norm_layers):
            raise ValueError(f"MLANeck expects {len(self.norm_layers)} inputs, got {len(inputs)}")
        return self.mla([norm_tokens(x, norm) for x, norm in zip(inputs, self.norm_layers, strict=True)])
