"""``ISHead``: the decoder of ISNet (Jin et al., 2021), as SSSegmentation's ``ISNet`` builds it."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS, TableOf
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, build_act, build_norm
from ..layers.conv_seq import conv_norm_act_seq
from ..layers.image_level_context import ImageLevelContext
from ..layers.semantic_level_context import SemanticLevelContext
from .base import Head


def isnet_shortcut(is_on: bool = False, in_channels: int = 256, feats_channels: int = 48) -> dict:
    """ISNet's ``head.shortcut`` table: with ``is_on``, a 1x1 conv (with bias)-norm-act from the first feature map
    (``in_channels`` channels; the ISNet segmentor derives or checks it) joins stage 2 at that map's resolution."""
    return {"is_on": is_on, "in_channels": in_channels, "feats_channels": feats_channels}


@HEADS.register("ISHead")
class ISHead(Head):
    """``bottleneck`` (3x3 conv-norm-act on the feature at ``in_index``) -> ``ilc_net``
    (:class:`~segkit.models.layers.image_level_context.ImageLevelContext`) and ``decoder_stage1`` (1x1
    conv-norm-act, Dropout2d, 1x1 classifier: training output ``stage1``) -> ``slc_net``
    (:class:`~segkit.models.layers.semantic_level_context.SemanticLevelContext`, regions from the stage-1 argmax)
    -> [``shortcut``: upsample to the first feature map, concat its 1x1 projection] -> ``decoder_stage2``: ``out``.

    ``decoder_stage2`` is Dropout2d -> 1x1 classifier, or with the shortcut 1x1 conv-norm-act first.
    With ``concat_input = false`` the image-level context is built (its parameters count, as in SSSegmentation) but
    not used, so it is not computed either (SSSegmentation computes and discards it).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        transform_channels: int = 256,
        concat_input: bool = True,
        shortcut: Annotated[dict, TableOf(isnet_shortcut)] | None = None,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        shortcut = isnet_shortcut(**(shortcut or {}))
        self.align_corners = align_corners
        self.concat_input = concat_input
        cfgs = {"norm_cfg": norm_cfg, "act_cfg": act_cfg}
        self.bottleneck = conv_norm_act_seq(in_channels, feats_channels, 3, **cfgs)
        self.ilc_net = ImageLevelContext(feats_channels, transform_channels, concat_input, align_corners, **cfgs)
        self.slc_net = SemanticLevelContext(feats_channels, transform_channels, concat_input, **cfgs)
        self.decoder_stage1 = nn.Sequential(
            *conv_norm_act_seq(feats_channels, feats_channels, 1, **cfgs),
            nn.Dropout2d(dropout),
            nn.Conv2d(feats_channels, num_classes, kernel_size=1),
        )
        self.shortcut: nn.Sequential | None = None
        if shortcut["is_on"]:
            self.shortcut = nn.Sequential(
                nn.Conv2d(shortcut["in_channels"], shortcut["feats_channels"], kernel_size=1),
                build_norm(norm_cfg, shortcut["feats_channels"]), build_act(act_cfg),
            )
            self.decoder_stage2 = nn.Sequential(
                *conv_norm_act_seq(feats_channels + shortcut["feats_channels"], feats_channels, 1, **cfgs),
                nn.Dropout2d(dropout),
                nn.Conv2d(feats_channels, num_classes, kernel_size=1),
            )
        else:
            self.decoder_stage2 = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(feats_channels, num_classes, 1))

    def training_outputs(self) -> list[str]:
        return ["out", "stage1"]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        feats = self.bottleneck(self.select(features))
        feats_il = self.ilc_net(feats) if self.concat_input else None
        preds_stage1 = self.decoder_stage1(feats)
        feats_sl = self.slc_net(feats, preds_stage1, feats_il)
        if self.shortcut is not None:
            shortcut = self.shortcut(features[0])
            feats_sl = F.interpolate(feats_sl, size=shortcut.shape[2:], mode="bilinear",
                                     align_corners=self.align_corners)
            feats_sl = torch.cat([feats_sl, shortcut], dim=1)
        out = self.decoder_stage2(feats_sl)
        if self.training:
            return {"out": out, "stage1": preds_stage1}
        return out
