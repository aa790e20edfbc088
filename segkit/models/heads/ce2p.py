"""``CE2PHead``: the decoder of CE2P (Ruan et al., 2019), as SSSegmentation's ``CE2P`` builds it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError
from ..layers.conv_seq import conv_norm_act_seq
from ..layers.edge_perceiving import EdgePerceivingModule
from ..layers.ppm import PPM
from .base import Head


@HEADS.register("CE2PHead")
class CE2PHead(Head):
    """Context embedding with edge perceiving, on the features at ``in_index`` (default the 4 selected levels):

    * ``ppm_net`` (:class:`~segkit.models.layers.ppm.PPM`, with bottleneck) on the last level, resized to the first;
    * ``edge_net`` (:class:`~segkit.models.layers.edge_perceiving.EdgePerceivingModule`) on all levels but the
      last: ``epm_out_channels`` edge logits (training output ``edge``) and the edge features;
    * ``shortcut`` (1x1 conv-norm-act to ``shortcut_feats_channels``) on the first level;
    * ``decoder_stage1`` on ``[ppm, shortcut]``: two 1x1 conv-norm-act, Dropout2d(``dropout_stage1``), a 1x1
      classifier (training output ``stage1``); its features before the classifier go on to
    * ``decoder_stage2`` on ``[stage-1 features, edge features]``: two 1x1 conv-norm-act,
      Dropout2d(``dropout_stage2``), 1x1 classifier: ``out``.

    Everything comes out at the first level's resolution. ``in_channels_list`` (SSSegmentation's name) is accepted
    and checked against the channels read.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        feats_channels: int = 512,
        pool_scales: list[int] = [1, 2, 3, 6],  # noqa: B006 (never mutated)
        epm_hidden_channels: int = 256,
        epm_out_channels: int = 2,
        shortcut_feats_channels: int = 48,
        dropout_stage1: float = 0.0,
        dropout_stage2: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_channels_list: list[int] | None = None,
        in_index: InIndex = [0, 1, 2, 3],  # noqa: B006 (never mutated; Head copies it)
    ) -> None:
        super().__init__(in_index)
        channels = list(in_channels) if isinstance(in_channels, list | tuple) else [in_channels]
        if len(channels) < 2:
            raise ArgumentError("in_index", "CE2P reads at least 2 levels: the edge module takes all but the last, "
                                f"the pyramid pooling the last (got channels {channels})")
        if in_channels_list is not None and list(in_channels_list) != channels:
            raise ArgumentError("in_channels_list", f"{list(in_channels_list)} does not match the features it reads "
                                f"(in_index {in_index}: {channels} channels)")
        self.align_corners = align_corners
        cfgs = {"norm_cfg": norm_cfg, "act_cfg": act_cfg}
        self.ppm_net = PPM(channels[-1], feats_channels, pool_scales, align_corners=align_corners, **cfgs)
        self.edge_net = EdgePerceivingModule(channels[:-1], epm_hidden_channels, epm_out_channels,
                                             align_corners=align_corners, **cfgs)
        self.shortcut = conv_norm_act_seq(channels[0], shortcut_feats_channels, 1, **cfgs)
        self.decoder_stage1 = nn.Sequential(
            *conv_norm_act_seq(feats_channels + shortcut_feats_channels, feats_channels, 1, **cfgs),
            *conv_norm_act_seq(feats_channels, feats_channels, 1, **cfgs),
            nn.Dropout2d(dropout_stage1),
            nn.Conv2d(feats_channels, num_classes, kernel_size=1),
        )
        self.decoder_stage2 = nn.Sequential(
            *conv_norm_act_seq(feats_channels + epm_hidden_channels * (len(channels) - 1), feats_channels, 1, **cfgs),
            *conv_norm_act_seq(feats_channels, feats_channels, 1, **cfgs),
            nn.Dropout2d(dropout_stage2),
            nn.Conv2d(feats_channels, num_classes, kernel_size=1),
        )

    def training_outputs(self) -> list[str]:
        return ["out", "stage1", "edge"]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        inputs = self.select(features)
        size = inputs[0].shape[2:]
        ppm_out = F.interpolate(self.ppm_net(inputs[-1]), size=size, mode="bilinear", align_corners=self.align_corners)
        edge, edge_feats = self.edge_net(inputs[:-1])
        feats_stage1 = self.decoder_stage1[:-1](torch.cat([ppm_out, self.shortcut(inputs[0])], dim=1))
        out = self.decoder_stage2(torch.cat([feats_stage1, edge_feats], dim=1))
        if not self.training:
            return out
        return {"out": out, "stage1": self.decoder_stage1[-1](feats_stage1), "edge": edge}
