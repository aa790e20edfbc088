"""``SETRUP`` and ``SETRMLA``: SEgmentation TRansformer (Zheng et al., 2021) on a plain ViT.

SSSegmentation's SETR head keys that configure the per-level token norm are the neck's in segkit, and are accepted
in either place: ``head.norm_cfg`` (SETR's token LayerNorm; the decoder convs use the top-level ``norm_cfg``, as in
SSSegmentation) is ``neck.token_norm_cfg`` (default ``LayerNorm, eps=1e-6``), SETR-MLA's ``head.mla_feats_channels``
is ``neck.out_channels``, and ``head.in_channels_list`` (the ViT levels) is checked against the backbone's
features. The auxiliary tables build :class:`~segkit.models.heads.setr_aux.SETRAuxiliaryHead` unless they name
another ``type``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ...errors import RecipeError
from ...registry import HEADS, NECKS, SEGMENTORS
from ..features import FeatureInfo
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
    neck_keys: dict[str, str] = {"norm_cfg": "token_norm_cfg"}
    """SSSegmentation head keys that configure the neck: head key -> neck key."""
    ssseg_prefixes = {"backbone_net": "backbone", "norm_layers": "neck.norm_layers", "decoder": "head.decoder",
                      "auxiliary_decoders": "aux_heads"}

    @classmethod
    def from_recipe(cls, builder) -> EncoderDecoder:
        backbone, features = builder.backbone()
        head_table = builder.recipe.head
        if not isinstance(head_table, dict):
            raise RecipeError("head", f"expected a table, got {head_table!r}")
        head_table = copy.deepcopy(head_table)
        neck_table = cls.neck_table(getattr(builder.recipe, "neck", None), head_table, features)
        neck, features = builder.neck(features, table=neck_table, default_type=cls.neck_type)
        head = builder.head(features, default_type=cls.head_type, table=head_table)
        auxiliary = cls.aux_defaults(getattr(builder.recipe, "auxiliary", None), len(features))
        aux_heads = builder.aux_heads(features, table=auxiliary) if auxiliary is not None else {}
        return cls(backbone=backbone, neck=neck, head=head, aux_heads=aux_heads,
                   selected_indices=builder.selected_indices, align_corners=builder.align_corners)

    @classmethod
    def neck_table(cls, neck: Any, head_table: dict, features: FeatureInfo) -> Any:
        """The recipe's neck table with SSSegmentation's neck keys moved in from ``head_table`` (popped there)."""
        channels = head_table.pop("in_channels_list", None)
        if channels is not None and list(channels) != features.channels:
            raise RecipeError("head.in_channels_list", f"{channels} does not match the backbone's features "
                              f"({features.channels}), which the {cls.neck_type} neck reads")
        moved = {k: head_table.pop(k) for k in cls.neck_keys if k in head_table}
        if not moved:
            return neck
        if neck is not None and not isinstance(neck, dict):
            raise RecipeError("neck", f"expected a table, got {neck!r}")
        neck = copy.deepcopy(neck) if neck is not None else {}
        neck_type = neck.get("type", cls.neck_type)
        for head_key, value in moved.items():
            neck_key = cls.neck_keys[head_key]
            if head_key == "norm_cfg" and not (isinstance(value, dict) and value.get("type") == "LayerNorm"):
                raise RecipeError("head.norm_cfg", f"SETR's head.norm_cfg is the per-level token norm (the decoder "
                                  f"convs use the top-level norm_cfg); only LayerNorm fits, got {value!r}")
            if neck_type in NECKS and neck_key not in NECKS.parameters(neck_type):
                raise RecipeError(f"head.{head_key}", f"configures SETR's {cls.neck_type} neck (its {neck_key}); "
                                  f"neck.type {neck_type} takes no {neck_key}")
            if neck_key in neck and neck[neck_key] != value:
                raise RecipeError(f"head.{head_key}", f"{value!r} conflicts with neck.{neck_key} = "
                                  f"{neck[neck_key]!r} (the same setting; give it once)")
            neck[neck_key] = value
        return neck

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
    neck_keys = {"norm_cfg": "token_norm_cfg", "mla_feats_channels": "out_channels"}
    ssseg_prefixes = {"backbone_net": "backbone", "mla_neck": "neck", "up_convs": "head.up_convs",
                      "decoder": "head.decoder", "auxiliary_decoders": "aux_heads"}

    @staticmethod
    def aux_defaults(auxiliary: Any, num_features: int) -> Any:
        if isinstance(auxiliary, dict):
            auxiliary = {"in_index": -1, **auxiliary}
        return _aux_tables(auxiliary, num_features, lambda i, n: i - n, most=num_features)
