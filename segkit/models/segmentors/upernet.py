"""``UPerNet``: Unified Perceptual Parsing (Xiao et al., ECCV 2018) on the shared encoder-decoder base.

On plain ViTs (BEiT, MAE) the same-stride outputs first go through the ``Feature2Pyramid`` neck (SSSegmentation's
``head.feature2pyramid``, a top-level ``[neck]`` table in segkit recipes).
"""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("UPerNet")
class UPerNet(EncoderDecoder):
    """Backbone (-> optional neck) -> :class:`~segkit.models.heads.upernet.UPerNetHead` (+ auxiliary heads, on the
    second-to-last pyramid level, while training)."""

    head_type = "UPerNetHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "feats_to_pyramid_net": "neck", "ppm_net": "head.ppm_net",
        "lateral_convs": "head.fpn.lateral_convs", "fpn_convs": "head.fpn.fpn_convs", "decoder": "head.decoder",
        "auxiliary_decoder": "aux_heads",
    }
