"""``ENCNet``: Context Encoding Network (Zhang et al., 2018) as SSSegmentation builds it."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder, Route


@SEGMENTORS.register("ENCNet")
class ENCNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.enc.ENCHead` (+ auxiliary heads while training).

    With ``head.extra.use_se_loss`` the training outputs are ``out`` and ``se`` (``[B, K]`` class-presence logits);
    ``loss_se`` scores ``se`` against the ``class_presence`` target (which classes each image's ``seg_target``
    contains, as SSSegmentation's ``histc`` one-hot), without resizing. SSSegmentation routes only ``loss_aux``,
    ``loss_se`` and ``loss_cls`` when the SE loss is on (a list of auxiliary heads fails there); here every
    auxiliary output keeps its name rule.
    """

    head_type = "ENCHead"
    loss_routes = {"loss_se": Route("se", target="class_presence", resize="none")}
    ssseg_prefixes = {
        "backbone_net": "backbone", "bottleneck": "head.bottleneck", "enc_module": "head.enc_module",
        "lateral_convs": "head.lateral_convs", "fusion": "head.fusion", "se_layer": "head.se_layer",
        "decoder": "head.decoder", "auxiliary_decoder": "aux_heads",
    }
