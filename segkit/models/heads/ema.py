"""``EMAHead``: the decoder of EMANet (Li et al., 2019), as SSSegmentation's ``EMANet`` builds it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, build_norm
from ..layers.conv_seq import conv_norm_act_seq
from ..layers.em_attention import EMAModule
from .base import Head


@HEADS.register("EMAHead")
class EMAHead(Head):
    """``ema_in_conv`` (3x3 conv-norm-act) -> ``ema_mid_conv`` (1x1 conv with bias, **frozen**: no gradient, as
    SSSegmentation sets ``requires_grad=False``; its parameters still count) -> :class:`EMAModule` (``num_bases``
    bases, ``num_stages`` EM steps, ``momentum``) -> ReLU -> ``ema_out_conv`` (1x1 conv-norm) -> ReLU(identity +
    ...) -> ``bottleneck`` (3x3 conv-norm-act) -> concat with the input -> ``decoder`` (3x3 conv-norm-act,
    Dropout2d, 1x1 classifier), on the feature at ``in_index``.

    In training the EM module updates its ``bases`` buffer; the EMANet segmentor hands it its ``reduce_mean`` so the
    update is averaged over ranks where SSSegmentation all-reduces (see :mod:`segkit.models.layers.em_attention`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        momentum: float = 0.1,
        num_stages: int = 3,
        num_bases: int = 64,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if num_stages < 1:
            raise ArgumentError("num_stages", f"must be at least 1, got {num_stages}")
        if num_bases < 1:
            raise ArgumentError("num_bases", f"must be at least 1, got {num_bases}")
        if not 0.0 <= momentum <= 1.0:
            raise ArgumentError("momentum", f"must be in [0, 1], got {momentum}")
        cfgs = {"norm_cfg": norm_cfg, "act_cfg": act_cfg}
        self.ema_in_conv = conv_norm_act_seq(in_channels, feats_channels, 3, **cfgs)
        self.ema_mid_conv = nn.Conv2d(feats_channels, feats_channels, kernel_size=1)
        for parameter in self.ema_mid_conv.parameters():
            parameter.requires_grad = False
        self.ema_module = EMAModule(feats_channels, num_bases, num_stages, momentum)
        self.ema_out_conv = nn.Sequential(
            nn.Conv2d(feats_channels, feats_channels, kernel_size=1, bias=False), build_norm(norm_cfg, feats_channels),
        )
        self.bottleneck = conv_norm_act_seq(feats_channels, feats_channels, 3, **cfgs)
        self.decoder = nn.Sequential(
            *conv_norm_act_seq(feats_channels + in_channels, feats_channels, 3, **cfgs),
            nn.Dropout2d(dropout),
            nn.Conv2d(feats_channels, num_classes, kernel_size=1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.select(features)
        identity = self.ema_in_conv(x)
        recon = F.relu(self.ema_module(self.ema_mid_conv(identity)))
        feats = F.relu(identity + self.ema_out_conv(recon))
        feats = self.bottleneck(feats)
        return self.decoder(torch.cat([x, feats], dim=1))
