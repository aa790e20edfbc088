"""``PointRend``: image segmentation as rendering (Kirillov et al., 2020), as SSSegmentation builds it.

Backbone -> :class:`~segkit.models.heads.pointrend.PointRendHead`, whose coarse decoder is the recipe's ``auxiliary``
table (SSSeg: ``{in_channels = 128, dropout = 0, num_convs = 0}``, an AuxiliaryHead over the summed scale heads; it
runs in training and at inference). In training the main loss scores the point logits against the labels sampled
(nearest) at the same points (the ``point_labels`` target, not resized) and ``loss_aux`` the coarse logits; at
inference ``out`` is the subdivision-refined dense map.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from ...errors import RecipeError
from ...registry import HEADS, SEGMENTORS
from ..features import Feature, FeatureInfo
from .base import EncoderDecoder, Route

if TYPE_CHECKING:
    from ..build import ModelBuilder


@SEGMENTORS.register("PointRend")
class PointRend(EncoderDecoder):
    """Backbone -> PointRendHead (FPN, scale heads, coarse head, point head); see the module docstring."""

    head_type = "PointRendHead"
    loss_routes = {"loss_cls": Route("out", target="point_labels", resize="none")}
    unsupervised_outputs = frozenset({"points"})
    ssseg_prefixes = {
        "backbone_net": "backbone", "fpn_neck": "head.fpn_neck", "scale_heads": "head.scale_heads",
        "fcs": "head.fcs", "decoder": "head.decoder", "auxiliary_decoder": "head.auxiliary_decoder",
    }

    @classmethod
    def from_recipe(cls, builder: ModelBuilder) -> PointRend:
        recipe = builder.recipe
        backbone, features = builder.backbone()
        auxiliary = getattr(recipe, "auxiliary", None)
        if not isinstance(auxiliary, dict):
            raise RecipeError("auxiliary", "PointRend's coarse decoder is the auxiliary table (SSSegmentation: "
                              "{in_channels = 128, dropout = 0, num_convs = 0}); give exactly one table")
        head_table = recipe.head if isinstance(recipe.head, dict) else {}
        channels = head_table.get("scale_head_channels", 128)
        coarse_input = FeatureInfo([Feature(int(channels), features.strides[0], "scale_heads")])
        coarse_table = copy.deepcopy(auxiliary)
        coarse_table.setdefault("type", "AuxiliaryHead")
        if coarse_table["type"] in HEADS and "in_index" in HEADS.parameters(coarse_table["type"]):
            coarse_table.setdefault("in_index", -1)
        coarse = builder.component(HEADS, coarse_table, "auxiliary", features=coarse_input)
        head = builder.head(features, default_type=cls.head_type, coarse_head=coarse)
        return cls(backbone=backbone, head=head, selected_indices=builder.selected_indices,
                   align_corners=builder.align_corners)
