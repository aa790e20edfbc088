"""``DAHead``: the Dual Attention Network decoder (Fu et al., CVPR 2019), as SSSegmentation's DANet builds it.

Two branches read the same feature map: the position attention module (PAM, attention over pixels) and the channel
attention module (CAM, attention over channels), each between two 3x3 conv-norm-act layers; their sum is classified
(``decoder_pamcam``, the ``out`` logits). In training each branch is also classified on its own (``pam``, ``cam``:
SSSegmentation's ``loss_cls_pam`` / ``loss_cls_cam``). Both attentions are added to their input through a learnable
``Scale`` initialised to 0.
"""

from __future__ import annotations

import torch
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ConvNormAct
from ..layers.scale import Scale
from ..layers.self_attention import SelfAttentionBlock
from .base import Head


class PositionAttentionModule(SelfAttentionBlock):
    """``x + gamma * attention(x, x)``: 1x1 query/key projections to ``transform_channels`` and a 1x1 value
    projection, without norms, unscaled dot products; ``gamma`` starts at 0."""

    def __init__(self, in_channels: int, transform_channels: int) -> None:
        super().__init__(
            key_in_channels=in_channels, query_in_channels=in_channels, transform_channels=transform_channels,
            out_channels=in_channels, share_key_query=False, query_downsample=None, key_downsample=None,
            key_query_num_convs=1, value_out_num_convs=1, key_query_norm=False, value_out_norm=False,
            matmul_norm=False, with_out_project=False, norm_cfg=None, act_cfg=None,
        )
        self.gamma = Scale(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.gamma(super().forward(x, x)) + x


class ChannelAttentionModule(nn.Module):
    """``x + gamma * A x`` with ``A = softmax(max(E) - E)`` over channels, ``E = x x^T`` (``[B, C, C]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = Scale(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # [B, C, HW]
        energy = torch.matmul(flat, flat.transpose(1, 2))
        energy = energy.amax(dim=-1, keepdim=True) - energy
        out = torch.matmul(energy.softmax(dim=-1), flat).reshape(x.shape)
        return self.gamma(out) + x


def _classifier(channels: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))


@HEADS.register("DAHead")
class DAHead(Head):
    """PAM and CAM branches (see the module docstring). Training returns ``{"out": pam+cam logits, "pam", "cam"}``;
    eval returns the ``out`` logits only (the branch classifiers are not run)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        transform_channels: int = 64,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.pam_in_conv = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.pam_net = PositionAttentionModule(feats_channels, transform_channels)
        self.pam_out_conv = ConvNormAct(feats_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder_pam = _classifier(feats_channels, num_classes, dropout)
        self.cam_in_conv = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.cam_net = ChannelAttentionModule()
        self.cam_out_conv = ConvNormAct(feats_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder_cam = _classifier(feats_channels, num_classes, dropout)
        self.decoder_pamcam = _classifier(feats_channels, num_classes, dropout)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        x = self.select(features)
        feats_pam = self.pam_out_conv(self.pam_net(self.pam_in_conv(x)))
        feats_cam = self.cam_out_conv(self.cam_net(self.cam_in_conv(x)))
        logits = self.decoder_pamcam(feats_pam + feats_cam)
        if not self.training:
            return logits
        return {"out": logits, "pam": self.decoder_pam(feats_pam), "cam": self.decoder_cam(feats_cam)}

    def training_outputs(self) -> list[str]:
        return ["out", "pam", "cam"]
