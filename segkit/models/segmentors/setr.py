"""``SETRUP`` and ``SETRMLA``: SEgmentation TRansformer (Zheng et al., 2021) on a plain ViT.

SSSegmentation's recipe keys and segkit's: ``head.in_channels_list`` is derived; SETR's token LayerNorm
(SSSegmentation's ``head.norm_cfg``) is the neck's ``token_norm_cfg`` (the ``SequenceNorm`` / ``MLANeck`` default is
its ``LayerNorm, eps=1e-6``); SETR-MLA's ``head.mla_feats_channels`` is ``neck.out_channels``. The auxiliary tables
build :class:`~segkit.models.heads.setr_aux.SETRAuxiliaryHead` unless they name another ``type``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ...errors import RecipeError
from ...registry import HEADS, SEGMENTORS
from .base import EncoderDecoder

AUX_HEAD = "SETRAuxiliaryHead"


def _aux_tables(auxiliary: Any, num_features: int, in_index: Callable[[int, int], int], most: int) -> Any:
    """The recipe's auxiliary tables with SETR's defaults: ``type`` SETRAuxiliaryHead and, for an array of N
    tables, ``in_index = in_index(i, N)`` (a single table keeps its head's default ``in_index``)."""
    if not isinstance(auxiliary, list | tuple):
        if isinstance(auxiliary, dict):
            auxiliary = copy.deepcopy(auxiliary)
            auxiliary.setdefault("type", AUX_HEAD)
        return auxiliary
    if len(auxiliary) > most and any(isinstance(t, dict) and "in_index" not in t for t in auxiliary):
        raise RecipeError("auxiliary", f"{len(auxiliary)} auxiliary heads, but SETR gives them at most {most} of its "
                          f"{num_features} features (set in_index to choose)")
    tables = []
    for index, table in enumerate(auxiliary):
        if isinstance(table, dict):
            table = copy.deepcopy(table)
            table.setdefault("type", AUX_HEAD)
            if table["type"] in HEADS and "in_index" in HEADS.parameters(table["type"]):
                table.setdefault("in_index", in_index(index, len(auxiliary)))
        tables.append(table)
    return tables


@SEGMENTORS.register("SETRUP")
class SETRUP(EncoderDecoder):
    """ViT -> ``SequenceNorm`` neck (per-level token LayerNorm; every head reads normalised features) ->
    :class:`~segkit.models.heads.setr_up.SETRUPHead` on the last level; auxiliary heads (SETR's up-conv decoders)
    on the levels before it: the i-th head reads the i-th level, as SSSegmentation pairs them."""

    head_type = "SETRUPHead"
    neck_type = "SequenceNorm"
    ssseg_prefixes = {"backbone_net": "backbone", "norm_layers": "neck.norm_layers", "decoder": "head.decoder",
                      "auxiliary_decoders": "aux_heads"}

    @classmethod
    def from_recipe(cls, builder) -> EncoderDecoder:
        backbone, features = builder.backbone()
        neck, features = builder.neck(features, default_type=cls.neck_type)
        head = builder.head(features, default_type=cls.head_type)
        auxiliary = cls.aux_defaults(getattr(builder.recipe, "auxiliary", None), len(features))
        aux_heads = builder.aux_heads(features, table=auxiliary) if auxiliary is not None else {}
        return cls(backbone=backbone, neck=neck, head=head, aux_heads=aux_heads,
                   selected_indices=builder.selected_indices, align_corners=builder.align_corners)

    @staticmethod
    def aux_defaults(auxiliary: Any, num_features: int) -> Any:
        # SSSegmentation: zip(features[:-1], auxiliary_decoders) -> head i reads feature i
        return _aux_tables(auxiliary, num_features, lambda i, n: i, most=num_features - 1)


@SEGMENTORS.register("SETRMLA")
class SETRMLA(SETRUP):
    """ViT -> ``MLANeck`` (token LayerNorm, 1x1 projections, running sums from the deepest level, 3x3) ->
    :class:`~segkit.models.heads.setr_mla.SETRMLAHead` on all its outputs; N auxiliary heads on its last N outputs,
    as SSSegmentation (``feats_list[-N:]``)."""

    head_type = "SETRMLAHead"
    neck_type = "MLANeck"
    ssseg_prefixes = {"backbone_net": "backbone", "mla_neck": "neck", "up_convs": "head.up_convs",
                      "decoder": "head.decoder", "auxiliary_decoders": "aux_heads"}

    @staticmethod
    def aux_defaults(auxiliary: Any, num_features: int) -> Any:
        if isinstance(auxiliary, dict):
            auxiliary = {"in_index": -1, **auxiliary}
        return _aux_tables(auxiliary, num_features, lambda i, n: i - n, most=num_features)
