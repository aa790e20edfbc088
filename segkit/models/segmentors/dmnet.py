"""``DMNet``: Dynamic Multi-scale Network (He et al., ICCV 2019) on the shared encoder-decoder base."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("DMNet")
class DMNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.dm.DMHead` (+ auxiliary heads while training)."""

    head_type = "DMHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "dcm_modules": "head.dcm_modules", "decoder": "head.decoder",
        "auxiliary_decoder": "aux_heads",
    }
