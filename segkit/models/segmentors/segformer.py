"""``Segformer``: SegFormer (Xie et al., 2021): a MiT backbone and an all-MLP decoder, logits at stride 4."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("Segformer")
class Segformer(EncoderDecoder):
    """Backbone (MixVisionTransformer in SSSegmentation's recipes, all four stages) ->
    :class:`~segkit.models.heads.segformer.SegformerHead`. No auxiliary head in SSSegmentation's recipes (one may
    still be given). SSSegmentation's ``head.in_channels_list`` is derived from the backbone here."""

    head_type = "SegformerHead"
    ssseg_prefixes = {"backbone_net": "backbone", "convs": "head.convs", "decoder": "head.decoder",
                      "auxiliary_decoder": "aux_heads"}
