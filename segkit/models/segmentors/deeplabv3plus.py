"""``Deeplabv3Plus``: DeepLabv3 with a decoder over a low-level shortcut (Chen et al., ECCV 2018)."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("Deeplabv3Plus")
class Deeplabv3Plus(EncoderDecoder):
    """Backbone (all four stages selected) -> :class:`~segkit.models.heads.deeplabv3plus.Deeplabv3PlusHead` on the
    first and last features (+ auxiliary heads, on the second-to-last, while training)."""

    head_type = "Deeplabv3PlusHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "aspp_net": "head.aspp_net", "shortcut": "head.shortcut",
        "decoder": "head.decoder", "auxiliary_decoder": "aux_heads",
    }
