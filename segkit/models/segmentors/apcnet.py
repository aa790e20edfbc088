"""``APCNet``: Adaptive Pyramid Context Network (He et al., CVPR 2019) on the shared encoder-decoder base."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("APCNet")
class APCNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.apc.APCHead` (+ auxiliary heads while training)."""

    head_type = "APCHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "acm_modules": "head.acm_modules", "decoder": "head.decoder",
        "auxiliary_decoder": "aux_heads",
    }
