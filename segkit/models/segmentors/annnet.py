"""``ANNNet``: Asymmetric Non-local Neural Networks for semantic segmentation (Zhu et al., ICCV 2019)."""

from __future__ import annotations

from typing import ClassVar

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("ANNNet")
class ANNNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.ANNHead` on the last two selected features (+ auxiliary heads while
    training)."""

    head_type = "ANNHead"
    ssseg_prefixes: ClassVar[dict[str, str]] = {
        "backbone_net": "backbone",
        **{name: f"head.{name}" for name in ("afn_block", "apn_block", "bottleneck", "decoder")},
        "auxiliary_decoder": "aux_heads",
    }
