"""``PSANet``: Point-wise Spatial Attention Network (Zhao et al., 2018) as SSSegmentation builds it."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from ...errors import RecipeError
from ...registry import SEGMENTORS
from .base import EncoderDecoder

if TYPE_CHECKING:
    from ..build import ModelBuilder

PSA_TYPES = ("collect", "distribute", "bi-direction")
"""SSSegmentation's ``head.type`` values (the attention direction; ``PSAHead.psa_type``)."""


@SEGMENTORS.register("PSANet")
class PSANet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.psa.PSAHead` (+ auxiliary heads while training).

    SSSegmentation's configs name the attention direction ``head.type`` (``"collect"``, ``"distribute"`` or
    ``"bi-direction"``); such a ``head.type`` is read as ``head.psa_type`` of the default ``PSAHead``, so SSSeg's
    tables work unchanged.
    """

    head_type = "PSAHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "reduce": "head.reduce", "attention": "head.attention",
        "reduce_p": "head.reduce_p", "attention_p": "head.attention_p", "proj": "head.proj",
        "decoder": "head.decoder", "auxiliary_decoder": "aux_heads",
    }

    @classmethod
    def from_recipe(cls, builder: ModelBuilder) -> PSANet:
        backbone, features = builder.backbone()
        neck, features = builder.neck(features)
        head = builder.head(features, default_type=cls.head_type, table=psa_head_table(builder.recipe.head))
        aux_heads = builder.aux_heads(features)
        return cls(backbone=backbone, neck=neck, head=head, aux_heads=aux_heads,
                   selected_indices=builder.selected_indices, align_corners=builder.align_corners)


def psa_head_table(table):
    """``table`` with SSSegmentation's ``type = "<direction>"`` moved to ``psa_type`` (other tables unchanged)."""
    if not isinstance(table, dict) or table.get("type") not in PSA_TYPES:
        return table
    if "psa_type" in table:
        raise RecipeError("head.type", f"'{table['type']}' is SSSegmentation's spelling of psa_type, and psa_type "
                          "is given too; keep one")
    table = copy.deepcopy(table)
    table["psa_type"] = table.pop("type")
    return table
