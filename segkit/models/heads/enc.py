"""``ENCHead``: the decoder of EncNet (Zhang et al., 2018), as SSSegmentation's ``ENCNet`` builds it."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS, TableOf
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, build_act, build_norm
from ..layers.conv_seq import conv_norm_act_seq
from ..layers.encoding import ContextEncoding
from .base import Head


def enc_extra(use_se_loss: bool = True, add_lateral: bool = False) -> dict:
    """ENCNet's ``head.extra`` table: ``use_se_loss`` adds the SE classifier (output ``se``), ``add_lateral`` fuses
    the earlier features into the bottleneck output."""
    return {"use_se_loss": use_se_loss, "add_lateral": add_lateral}


@HEADS.register("ENCHead")
class ENCHead(Head):
    """``bottleneck`` (3x3 conv-norm-act on the last feature of ``in_index``) -> [``extra.add_lateral``: 1x1
    ``lateral_convs`` on the other features, resized to it, concatenated, 3x3 ``fusion``] -> ``enc_module``
    (:class:`~segkit.models.layers.encoding.ContextEncoding`, ``num_codes`` codewords) -> ``decoder`` (Dropout2d,
    1x1 classifier). With ``extra.use_se_loss`` the encoded feature also goes through ``se_layer`` (``Linear(C ->
    num_classes)``): the training output ``se`` ``[B, num_classes]`` (which classes the image contains).

    ``in_index`` lists the features read, the last being the bottleneck's input (SSSegmentation's
    ``in_channels_list``, default ``[0, 1, 2]`` for its ``selected_indices = (1, 2, 3)``); the others are used only
    by the laterals. ``in_channels_list`` (SSSegmentation's name) is accepted and checked against the channels read.

    SSSegmentation 1.7.0 crashes with ``add_lateral = true`` (``ModuleList.append`` is given three modules); here the
    laterals are built as its code intends: ``Sequential(1x1 conv (with bias), norm, act)`` each, and a 3x3
    ``fusion`` conv (with bias)-norm-act.
    """

    def __init__(
        self,
        in_channels: int | list[int],
        num_classes: int,
        feats_channels: int = 512,
        num_codes: int = 32,
        extra: Annotated[dict, TableOf(enc_extra)] | None = None,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_channels_list: list[int] | None = None,
        in_index: InIndex = [0, 1, 2],  # noqa: B006 (never mutated; Head copies it)
    ) -> None:
        super().__init__(in_index)
        channels = list(in_channels) if isinstance(in_channels, list | tuple) else [in_channels]
        if in_channels_list is not None and list(in_channels_list) != channels:
            raise ArgumentError("in_channels_list", f"{list(in_channels_list)} does not match the features it reads "
                                f"(in_index {in_index}: {channels} channels)")
        extra = enc_extra(**(extra or {}))
        if extra["add_lateral"] and len(channels) < 2:
            raise ArgumentError("extra", "add_lateral needs in_index to list the lateral features before the last one")
        if num_codes < 1:
            raise ArgumentError("num_codes", f"must be at least 1, got {num_codes}")
        self.align_corners = align_corners
        self.use_se_loss = extra["use_se_loss"]
        cfgs = {"norm_cfg": norm_cfg, "act_cfg": act_cfg}
        self.bottleneck = conv_norm_act_seq(channels[-1], feats_channels, 3, **cfgs)
        self.enc_module = ContextEncoding(feats_channels, num_codes, **cfgs)
        self.lateral_convs: nn.ModuleList | None = None
        self.fusion: nn.Sequential | None = None
        if extra["add_lateral"]:
            self.lateral_convs = nn.ModuleList(
                conv_norm_act_seq(c, feats_channels, 1, bias=True, **cfgs) for c in channels[:-1]
            )
            self.fusion = nn.Sequential(
                nn.Conv2d(len(channels) * feats_channels, feats_channels, kernel_size=3, padding=1),
                build_norm(norm_cfg, feats_channels), build_act(act_cfg),
            )
        self.se_layer = nn.Linear(feats_channels, num_classes) if self.use_se_loss else None
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(feats_channels, num_classes, kernel_size=1))

    def training_outputs(self) -> list[str]:
        return ["out", "se"] if self.use_se_loss else ["out"]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        inputs = self.select(features)
        inputs = inputs if isinstance(inputs, list) else [inputs]
        feats = self.bottleneck(inputs[-1])
        if self.lateral_convs is not None and self.fusion is not None:
            laterals = [F.interpolate(conv(x), size=feats.shape[2:], mode="bilinear", align_corners=self.align_corners)
                        for conv, x in zip(self.lateral_convs, inputs[:-1], strict=True)]
            feats = self.fusion(torch.cat([feats, *laterals], dim=1))
        encoded, feats = self.enc_module(feats)
        out = self.decoder(feats)
        if self.training and self.se_layer is not None:
            return {"out": out, "se": self.se_layer(encoded)}
        return out
