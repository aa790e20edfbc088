"""``OCRHead``: object-contextual representations (Yuan et al., ECCV 2020), as SSSegmentation's OCRNet builds them.

The head owns the auxiliary decoder, because its logits are needed at test time too: they are the *soft object
regions*. Pixel features are pooled per region (spatial gather), each pixel attends to the region representations
(object context block), and the result is classified::

    aux    = auxiliary_decoder(features)                      # [B, K, h', w'] (also returned as "aux" in training)
    feats  = bottleneck(features[in_index])                   # 3x3 conv-norm-act -> feats_channels
    region = softmax_over_pixels(scale * aux) @ feats         # [B, C, K, 1]  (spatial_gather_module)
    feats  = object_context_block(feats, region)              # SelfAttentionBlock + 3x3 conv-norm-act on [ctx, feats]
    out    = decoder(feats)                                   # Dropout2d -> 1x1

Recipes keep SSSegmentation's layout: the top-level ``auxiliary`` table (an ``AuxiliaryHead`` table, on the
second-to-last feature by default) configures this head-owned decoder. ``OCRNet.from_recipe`` builds it from that
table (errors are reported at ``auxiliary.<key>``, its ``in_channels`` is derived from the features it reads) and
hands it to the head as ``auxiliary_decoder``; ``loss_aux`` supervises the ``aux`` output as usual.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.self_attention import SelfAttentionBlock
from .base import Head


class SpatialGatherModule(nn.Module):
    """Region representations: features averaged over each class's pixels with weights ``softmax(scale * logits)``
    over the spatial positions. ``features`` ``[B, C, H, W]``, ``probs`` ``[B, K, H, W]`` -> ``[B, C, K, 1]``."""

    def __init__(self, scale: float = 1) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        weights = (self.scale * probs.flatten(2)).softmax(dim=2)  # [B, K, HW]
        context = torch.matmul(weights, features.flatten(2).transpose(1, 2))  # [B, K, C]
        return context.transpose(1, 2).unsqueeze(3)


class ObjectContextBlock(SelfAttentionBlock):
    """Pixels (queries) attend to the region representations (keys/values); the context is concatenated with the
    pixel features and fused by a 3x3 conv-norm-act (``bottleneck``).

    ``scale > 1`` max-pools the queries by ``scale``; the context is then upsampled back to the pixel grid before the
    fusion (SSSegmentation 1.7.0 crashes for ``scale > 1``; every SSSeg config uses 1).
    """

    def __init__(self, in_channels: int, transform_channels: int, scale: int = 1, align_corners: bool = False,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None) -> None:
        super().__init__(
            key_in_channels=in_channels, query_in_channels=in_channels, transform_channels=transform_channels,
            out_channels=in_channels, share_key_query=False,
            query_downsample=nn.MaxPool2d(kernel_size=scale) if scale > 1 else None, key_downsample=None,
            key_query_num_convs=2, value_out_num_convs=1, key_query_norm=True, value_out_norm=True,
            matmul_norm=True, with_out_project=True, norm_cfg=norm_cfg, act_cfg=act_cfg,
        )
        self.align_corners = align_corners
        self.bottleneck = ConvNormAct(in_channels * 2, in_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, query_feats: torch.Tensor, key_feats: torch.Tensor) -> torch.Tensor:
        context = super().forward(query_feats, key_feats)
        if context.shape[2:] != query_feats.shape[2:]:
            context = F.interpolate(context, size=query_feats.shape[2:], mode="bilinear",
                                    align_corners=self.align_corners)
        return self.bottleneck(torch.cat([context, query_feats], dim=1))


@HEADS.register("OCRHead")
class OCRHead(Head):
    """OCRNet's decoder (see the module docstring); training returns ``{"out", "aux"}``, eval the logits.

    ``auxiliary_decoder`` is the auxiliary head built from the recipe's ``auxiliary`` table (``OCRNet`` passes it;
    it is not a recipe key). ``scale`` sharpens the spatial-gather softmax and (when > 1) pools the queries of the
    object context block. ``resize_aux_logits`` (default, SSSegmentation's later fix) resizes the auxiliary logits
    to the bottleneck features before the spatial gather when their sizes differ; ``false`` is SSSegmentation
    1.7.0's behaviour, which needs both at the same size (true of every SSSeg config) and raises otherwise.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        auxiliary_decoder: nn.Module | None = None,
        feats_channels: int = 512,
        transform_channels: int = 256,
        scale: int = 1,
        dropout: float = 0.0,
        resize_aux_logits: bool = True,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if auxiliary_decoder is None:
            raise ArgumentError("auxiliary_decoder", "OCRHead needs its auxiliary decoder (the soft object regions): "
                                "OCRNet builds it from the recipe's `auxiliary` table")
        if scale < 1:
            raise ArgumentError("scale", f"scale must be >= 1, got {scale}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.resize_aux_logits = resize_aux_logits
        self.align_corners = align_corners
        self.auxiliary_decoder = auxiliary_decoder
        self.bottleneck = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.spatial_gather_module = SpatialGatherModule(scale)
        self.object_context_block = ObjectContextBlock(feats_channels, transform_channels, scale,
                                                       align_corners=align_corners, norm_cfg=norm_cfg,
                                                       act_cfg=act_cfg)
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(feats_channels, num_classes, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        aux_logits = self.auxiliary_decoder(features)
        feats = self.bottleneck(self.select(features))
        regions = aux_logits
        if regions.shape[2:] != feats.shape[2:]:
            if not self.resize_aux_logits:
                raise RuntimeError(
                    f"OCRHead: the auxiliary logits ({tuple(regions.shape[2:])}) and the features "
                    f"({tuple(feats.shape[2:])}) differ in size; SSSegmentation 1.7.0's behaviour "
                    "(resize_aux_logits = false) needs them equal; set resize_aux_logits = true")
            regions = F.interpolate(regions, size=feats.shape[2:], mode="bilinear", align_corners=self.align_corners)
        context = self.spatial_gather_module(feats, regions)
        feats = self.object_context_block(feats, context)
        logits = self.decoder(feats)
        if self.training:
            return {"out": logits, "aux": aux_logits}
        return logits

    def training_outputs(self) -> list[str]:
        return ["out", "aux"]
