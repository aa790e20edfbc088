"""``SemanticFPN``: Panoptic FPN's semantic branch (Kirillov et al., 2019): FPN, per-level scale heads summed at
the finest level (stride 4 on ResNet), a 1x1 classifier."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("SemanticFPN")
class SemanticFPN(EncoderDecoder):
    """Backbone (all four stages) -> :class:`~segkit.models.heads.semanticfpn.SemanticFPNHead`. No auxiliary head in
    SSSegmentation's recipes. Its ``head.in_channels_list`` is derived from the backbone here, and its
    ``head.feature_stride_list`` too when left out."""

    head_type = "SemanticFPNHead"
    ssseg_prefixes = {"backbone_net": "backbone", "fpn_neck": "head.fpn_neck", "scale_heads": "head.scale_heads",
                      "decoder": "head.decoder", "auxiliary_decoder": "aux_heads"}
