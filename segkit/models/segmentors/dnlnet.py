"""``DNLNet``: Disentangled Non-Local Neural Networks (Yin et al., ECCV 2020)."""

from __future__ import annotations

from typing import ClassVar

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("DNLNet")
class DNLNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.DNLHead` (+ auxiliary heads while training)."""

    head_type = "DNLHead"
    ssseg_prefixes: ClassVar[dict[str, str]] = {
        "backbone_net": "backbone",
        "conv_before_dnl": "head.conv_before_dnl",
        "dnl_block": "head.dnl_block",
        "conv_after_dnl": "head.conv_after_dnl",
        "decoder": "head.decoder",
        "auxiliary_decoder": "aux_heads",
    }
