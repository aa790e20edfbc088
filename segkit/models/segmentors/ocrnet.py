"""``OCRNet``: Object-Contextual Representations for semantic segmentation (Yuan et al., ECCV 2020)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ...errors import RecipeError
from ...registry import SEGMENTORS
from .base import EncoderDecoder

if TYPE_CHECKING:
    from ..build import ModelBuilder


@SEGMENTORS.register("OCRNet")
class OCRNet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.OCRHead`, which owns the auxiliary decoder (its logits are the soft
    object regions, needed at test time too).

    The recipe's ``auxiliary`` must be one table (SSSegmentation's layout; an ``AuxiliaryHead`` table reading the
    second-to-last feature unless it sets ``in_index``); it is built here and handed to the head, which returns
    ``{"out", "aux"}`` in training (``loss_cls`` and ``loss_aux``). There are no segmentor-level auxiliary heads.
    """

    head_type = "OCRHead"
    ssseg_prefixes: ClassVar[dict[str, str]] = {
        "backbone_net": "backbone",
        "auxiliary_decoder": "head.auxiliary_decoder",
        "bottleneck": "head.bottleneck",
        "object_context_block": "head.object_context_block",
        "decoder": "head.decoder",
    }

    @classmethod
    def from_recipe(cls, builder: ModelBuilder) -> OCRNet:
        backbone, features = builder.backbone()
        neck, features = builder.neck(features)
        auxiliary = getattr(builder.recipe, "auxiliary", None)
        if not isinstance(auxiliary, dict):
            raise RecipeError("auxiliary", "OCRNet needs exactly one auxiliary table (its logits are the soft object "
                              f"regions of the OCR head, in training and at test time), got {auxiliary!r}")
        auxiliary_decoder = builder.aux_heads(features)["aux"]
        head = builder.head(features, default_type=cls.head_type, auxiliary_decoder=auxiliary_decoder)
        return cls(backbone=backbone, neck=neck, head=head, aux_heads=None,
                   selected_indices=builder.selected_indices, align_corners=builder.align_corners)
