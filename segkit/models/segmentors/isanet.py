"""``ISANet``: Interlaced Sparse Self-Attention for semantic segmentation (Huang et al., 2019)."""

from __future__ import annotations

from typing import ClassVar

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("ISANet")
class ISANet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.ISAHead` (+ auxiliary heads while training)."""

    head_type = "ISAHead"
    ssseg_prefixes: ClassVar[dict[str, str]] = {
        "backbone_net": "backbone",
        **{name: f"head.{name}" for name in ("in_conv", "global_relation", "local_relation", "out_conv", "decoder")},
        "auxiliary_decoder": "aux_heads",
    }
