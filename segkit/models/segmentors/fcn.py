"""``FCN``: Fully Convolutional Networks (Long et al., 2015) as SSSegmentation builds them."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("FCN")
class FCN(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.FCNHead` (+ auxiliary heads while training)."""

    head_type = "FCNHead"
