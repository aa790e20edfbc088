"""``PSPNet``: Pyramid Scene Parsing Network (Zhao et al., CVPR 2017) on the shared encoder-decoder base."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("PSPNet")
class PSPNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.psp.PSPHead` (+ auxiliary heads while training)."""

    head_type = "PSPHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "ppm_net": "head.ppm_net", "decoder": "head.decoder",
        "auxiliary_decoder": "aux_heads",
    }
