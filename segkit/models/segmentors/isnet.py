"""``ISNet``: Integrating Image-level and Semantic-level Context (Jin et al., 2021) as SSSegmentation builds it."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ...errors import RecipeError
from ...registry import SEGMENTORS
from .base import EncoderDecoder, Route

if TYPE_CHECKING:
    from ..build import ModelBuilder
    from ..features import FeatureInfo


@SEGMENTORS.register("ISNet")
class ISNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.isnet.ISHead` (+ auxiliary heads while training).

    Training outputs ``out`` (stage 2) and ``stage1``, scored by SSSegmentation's ``loss_cls_stage2`` and
    ``loss_cls_stage1``. With ``head.shortcut.is_on`` the shortcut reads the first selected feature map (as
    SSSegmentation's ``backbone_outputs[0]``); its ``in_channels`` is derived from it when the table leaves it out,
    and checked when it gives it.

    The semantic-level context (a per-image, per-class Python loop in SSSegmentation) is vectorised, so ISNet
    exports to ONNX.
    """

    head_type = "ISHead"
    loss_routes = {"loss_cls_stage1": Route("stage1"), "loss_cls_stage2": Route("out")}
    ssseg_prefixes = {
        "backbone_net": "backbone", "bottleneck": "head.bottleneck", "ilc_net": "head.ilc_net",
        "slc_net": "head.slc_net", "decoder_stage1": "head.decoder_stage1", "shortcut": "head.shortcut",
        "decoder_stage2": "head.decoder_stage2", "auxiliary_decoder": "aux_heads",
    }

    @classmethod
    def from_recipe(cls, builder: ModelBuilder) -> ISNet:
        backbone, features = builder.backbone()
        neck, features = builder.neck(features)
        head = builder.head(features, default_type=cls.head_type, table=shortcut_channels(builder.recipe.head,
                                                                                            features))
        aux_heads = builder.aux_heads(features)
        return cls(backbone=backbone, neck=neck, head=head, aux_heads=aux_heads,
                   selected_indices=builder.selected_indices, align_corners=builder.align_corners)


def shortcut_channels(table: Any, features: FeatureInfo) -> Any:
    """``table`` with ``shortcut.in_channels`` set to the first feature map's channels when the shortcut is on and
    the table does not give them; a given value that differs is a :class:`RecipeError` at its path."""
    shortcut = table.get("shortcut") if isinstance(table, dict) else None
    if not isinstance(shortcut, dict) or not shortcut.get("is_on"):
        return table
    channels = features.channels_at(0)
    given = shortcut.get("in_channels")
    if given is None:
        table = copy.deepcopy(table)
        table["shortcut"]["in_channels"] = channels
    elif given != channels:
        raise RecipeError("head.shortcut.in_channels", f"{given} does not match the feature map the shortcut reads "
                          f"(the first selected one: {channels} channels)")
    return table
