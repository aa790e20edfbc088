"""``CCNet``: Criss-Cross Network (Huang et al., 2019) as SSSegmentation builds it."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("CCNet")
class CCNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.cc.CCHead` (+ auxiliary heads while training)."""

    head_type = "CCHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "conv_before_cca": "head.conv_before_cca", "cca": "head.cca",
        "conv_after_cca": "head.conv_after_cca", "decoder": "head.decoder", "auxiliary_decoder": "aux_heads",
    }
