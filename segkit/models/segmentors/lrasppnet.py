"""``LRASPPNet``: MobileNetV3 with the Lite R-ASPP decoder (Howard et al., 2019)."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder

_HEAD_MODULES = ("branch_convs", "branch_ups", "aspp_conv", "image_pool", "bottleneck", "decoder")


@SEGMENTORS.register("LRASPPNet")
class LRASPPNet(EncoderDecoder):
    """Backbone (MobileNetV3 with ``selected_indices = [0, 1, 2]`` in SSSegmentation's recipes) ->
    :class:`~segkit.models.heads.lraspp.LRASPPHead`. No auxiliary head in SSSegmentation's recipes.

    The head's image pooling is fixed to SSSegmentation's ``AvgPool2d(49, stride=(16, 20))`` by default, so inputs
    must be at least 392x392 at output stride 8 (``head.pool_kernel`` / ``head.pool_stride`` change it). Its
    ``head.in_channels_list`` is derived from the backbone here.
    """

    head_type = "LRASPPHead"
    ssseg_prefixes = {"backbone_net": "backbone", **{name: f"head.{name}" for name in _HEAD_MODULES},
                      "auxiliary_decoder": "aux_heads"}
