"""``GCNet``: Non-local Networks Meet Squeeze-Excitation Networks and Beyond (Cao et al., 2019)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, ClassVar

from ...registry import SEGMENTORS
from .base import EncoderDecoder

if TYPE_CHECKING:
    from ..build import ModelBuilder


@SEGMENTORS.register("GCNet")
class GCNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.GCHead` (+ auxiliary heads while training).

    SSSegmentation's ``head.norm_cfg`` / ``head.act_cfg`` configure the context block only; the head's convolutions
    take the recipe's top-level ``norm_cfg`` / ``act_cfg`` (passed here as ``convs_norm_cfg`` / ``convs_act_cfg``).
    """

    head_type = "GCHead"
    ssseg_prefixes: ClassVar[dict[str, str]] = {
        "backbone_net": "backbone",
        "conv_before_cb": "head.conv_before_cb",
        "contextblock_net": "head.contextblock_net",
        "conv_after_cb": "head.conv_after_cb",
        "decoder": "head.decoder",
        "auxiliary_decoder": "aux_heads",
    }

    @classmethod
    def from_recipe(cls, builder: ModelBuilder) -> GCNet:
        backbone, features = builder.backbone()
        neck, features = builder.neck(features)
        head = builder.head(features, default_type=cls.head_type, convs_norm_cfg=copy.deepcopy(builder.norm_cfg),
                            convs_act_cfg=copy.deepcopy(builder.act_cfg))
        aux_heads = builder.aux_heads(features)
        return cls(backbone=backbone, neck=neck, head=head, aux_heads=aux_heads,
                   selected_indices=builder.selected_indices, align_corners=builder.align_corners)
