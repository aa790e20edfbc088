"""``Deeplabv3``: atrous convolution with ASPP (Chen et al., 2017) on the shared encoder-decoder base."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("Deeplabv3")
class Deeplabv3(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.aspp.ASPPHead` (+ auxiliary heads while training)."""

    head_type = "ASPPHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "aspp_net": "head.aspp_net", "decoder": "head.decoder",
        "auxiliary_decoder": "aux_heads",
    }
