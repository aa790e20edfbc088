"""``NonLocalNet``: Non-local Neural Networks (Wang et al., CVPR 2018) as a segmentation head."""

from __future__ import annotations

from typing import ClassVar

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("NonLocalNet")
class NonLocalNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.NonLocalHead` (+ auxiliary heads while training)."""

    head_type = "NonLocalHead"
    ssseg_prefixes: ClassVar[dict[str, str]] = {
        "backbone_net": "backbone",
        "conv_before_nl": "head.conv_before_nl",
        "nl_block": "head.nl_block",
        "conv_after_nl": "head.conv_after_nl",
        "decoder": "head.decoder",
        "auxiliary_decoder": "aux_heads",
    }
