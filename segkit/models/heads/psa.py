"""``PSAHead``: the decoder of PSANet (Zhao et al., 2018), as SSSegmentation's ``PSANet`` builds it."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError
from ..layers.conv_seq import conv_norm_act_seq
from ..layers.psa_mask import PSAMask
from .base import Head

PSA_TYPES = ("collect", "distribute", "bi-direction")


@HEADS.register("PSAHead")
class PSAHead(Head):
    """Point-wise spatial attention on the feature at ``in_index``, then ``decoder`` on ``[input, attention]``.

    ``reduce`` (1x1 conv-norm-act to ``feats_channels``) -> bilinear shrink by ``shrink_factor`` -> ``attention``
    (1x1 conv-norm-act, 1x1 conv to ``mask_size[0] * mask_size[1]`` channels) -> :class:`PSAMask` (``compact=False``)
    -> softmax over the source positions (``psa_softmax``) -> the features aggregated over them (``bmm``), divided by
    ``normalization_factor`` (``None``: the mask area). ``psa_type = "bi-direction"`` runs a collect branch
    (``reduce``, ``attention``) and a distribute branch (``reduce_p``, ``attention_p``) and concatenates them.
    ``proj`` (1x1 conv-norm-act to ``in_channels``) -> bilinear resize to the input -> concat with the input ->
    ``decoder`` (3x3 conv-norm-act, Dropout2d, 1x1 classifier).

    SSSegmentation's quirks are kept: ``proj``'s 1x1 conv has ``padding=1`` (its output is 2 pixels larger and is
    resized back); the shrink uses ``align_corners=True`` with ``(h - 1) // s + 1`` when both sides are not multiples
    of ``shrink_factor`` (else ``h // s`` with ``align_corners=False``), and that value, not the segmentor's
    ``align_corners``, also drives the final resize. ``compact=True`` reads the attention map as the ``(H * W) x
    (H * W)`` matrix itself (``mask_size`` must then cover exactly ``H * W`` positions).

    SSSegmentation's config names the attention direction ``head.type``; segkit's ``head.type`` names the head, so
    it is ``psa_type`` here (the PSANet segmentor also accepts SSSeg's spelling, see
    :class:`~segkit.models.segmentors.psanet.PSANet`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        psa_type: Literal["collect", "distribute", "bi-direction"] = "bi-direction",
        mask_size: tuple[int, int] = (97, 97),
        compact: bool = False,
        shrink_factor: int = 2,
        normalization_factor: float | None = 1.0,
        psa_softmax: bool = True,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if psa_type not in PSA_TYPES:
            raise ArgumentError("psa_type", f"expected one of {', '.join(PSA_TYPES)}, got {psa_type!r}")
        if shrink_factor < 1:
            raise ArgumentError("shrink_factor", f"must be >= 1, got {shrink_factor}")
        mask_h, mask_w = mask_size
        if mask_h < 1 or mask_w < 1:
            raise ArgumentError("mask_size", f"must be positive, got {list(mask_size)}")
        self.psa_type = psa_type
        self.mask_size = (mask_h, mask_w)
        self.compact = compact
        self.shrink_factor = shrink_factor
        self.normalization_factor = float(mask_h * mask_w if normalization_factor is None else normalization_factor)
        self.psa_softmax = psa_softmax
        self.align_corners = align_corners
        cfgs = {"norm_cfg": norm_cfg, "act_cfg": act_cfg}
        self.reduce = conv_norm_act_seq(in_channels, feats_channels, 1, **cfgs)
        self.attention = nn.Sequential(
            *conv_norm_act_seq(feats_channels, feats_channels, 1, **cfgs),
            nn.Conv2d(feats_channels, mask_h * mask_w, kernel_size=1, bias=False),
        )
        if psa_type == "bi-direction":
            self.reduce_p = conv_norm_act_seq(in_channels, feats_channels, 1, **cfgs)
            self.attention_p = nn.Sequential(
                *conv_norm_act_seq(feats_channels, feats_channels, 1, **cfgs),
                nn.Conv2d(feats_channels, mask_h * mask_w, kernel_size=1, bias=False),
            )
            if not compact:
                self.psamask_collect = PSAMask("collect", self.mask_size)
                self.psamask_distribute = PSAMask("distribute", self.mask_size)
        elif not compact:
            self.psamask = PSAMask(psa_type, self.mask_size)
        branches = 2 if psa_type == "bi-direction" else 1
        self.proj = conv_norm_act_seq(feats_channels * branches, in_channels, 1, padding=1, **cfgs)
        self.decoder = nn.Sequential(
            *conv_norm_act_seq(in_channels * 2, feats_channels, 3, **cfgs),
            nn.Dropout2d(dropout),
            nn.Conv2d(feats_channels, num_classes, kernel_size=1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        identity = self.select(features)
        align_corners = self.align_corners
        if self.psa_type == "bi-direction":
            x_col, x_dis = self.reduce(identity), self.reduce_p(identity)
            x_col, align_corners = self._shrink(x_col)
            x_dis, _ = self._shrink(x_dis)
            y_col, y_dis = self.attention(x_col), self.attention_p(x_dis)
            if self.compact:
                y_dis = self._transpose_positions(y_dis)
            else:
                y_col, y_dis = self.psamask_collect(y_col), self.psamask_distribute(y_dis)
            out = torch.cat([self._aggregate(x_col, y_col), self._aggregate(x_dis, y_dis)], dim=1)
        else:
            x, align_corners = self._shrink(self.reduce(identity))
            y = self.attention(x)
            if self.compact:
                if self.psa_type == "collect":
                    y = self._transpose_positions(y)
            else:
                y = self.psamask(y)
            out = self._aggregate(x, y)
        feats = F.interpolate(self.proj(out), size=identity.shape[2:], mode="bilinear", align_corners=align_corners)
        return self.decoder(torch.cat([identity, feats], dim=1))

    def _shrink(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``x`` shrunk by ``shrink_factor`` and the ``align_corners`` used (SSSegmentation's rule)."""
        if self.shrink_factor == 1:
            return x, self.align_corners
        h, w, s = x.size(2), x.size(3), self.shrink_factor
        if h % s and w % s:
            size, align_corners = ((h - 1) // s + 1, (w - 1) // s + 1), True
        else:
            size, align_corners = (h // s, w // s), False
        return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners), align_corners

    @staticmethod
    def _transpose_positions(y: torch.Tensor) -> torch.Tensor:
        n, _, h, w = y.shape
        return y.reshape(n, h * w, h * w).transpose(1, 2).reshape(n, h * w, h, w)

    def _aggregate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, C, H, W]`` aggregated with the attention ``y`` ``[N, H * W (source), H, W]``."""
        if self.psa_softmax:
            y = F.softmax(y, dim=1)
        # an einsum, not bmm between reshapes: the ONNX exporter (onnxscript 0.7 optimizer) drops the reshapes
        # around a MatMul when they round-trip the shape, which is wrong when C == H * W
        out = torch.einsum("ncp,npq->ncq", x.flatten(2), y.flatten(2)).unflatten(2, x.shape[2:])
        return out * (1.0 / self.normalization_factor)
