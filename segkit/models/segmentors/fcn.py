"""``FCN`` and ``DepthwiseSeparableFCN``: Fully Convolutional Networks (Long et al., 2015) as SSSegmentation builds
them, on the shared encoder-decoder base."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("FCN")
class FCN(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.FCNHead` (+ auxiliary heads while training)."""

    head_type = "FCNHead"


@SEGMENTORS.register("DepthwiseSeparableFCN")
class DepthwiseSeparableFCN(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.DepthwiseSeparableFCNHead` (Fast-SCNN's classifier; SSSegmentation's
    ``DepthwiseSeparableFCN``) (+ auxiliary heads while training)."""

    head_type = "DepthwiseSeparableFCNHead"
