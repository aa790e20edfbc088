"""``FastFCN``: Joint Pyramid Upsampling (Wu et al., 2019) in front of another segmentor's decode head.

SSSegmentation's FastFCN wraps a whole inner segmentor (top-level ``segmentor`` key: FCN, ENCNet, PSPNet or
Deeplabv3) and feeds it JPU features. segkit builds the same model flat: backbone -> ``JPU`` neck (the recipe's
``neck`` table: SSSegmentation's ``head.jpu``, channels derived) -> the inner segmentor's head (the recipe's
``head`` table, whose ``segmentor`` key names the inner type) -> auxiliary heads on the JPU outputs (``[-2]`` is the
backbone's layer3 with SSSegmentation's recipes). The built model takes the inner segmentor's loss routes and
exportability, and maps SSSegmentation checkpoints (``segmentor.*``, ``jpu_neck.*``).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from ...errors import RecipeError
from ...registry import SEGMENTORS
from .base import EncoderDecoder

SSSEG_INNER = ("FCN", "ENCNet", "PSPNet", "Deeplabv3")
"""The inner segmentors SSSegmentation's FastFCN accepts."""


@SEGMENTORS.register("FastFCN")
class FastFCN(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.necks.jpu.JPU` -> the head of ``head.segmentor`` (e.g. ``"PSPNet"`` ->
    PSPHead) (+ auxiliary heads while training). Instances are of a subclass per inner type (``FastFCN[PSPNet]``),
    which carries that type's class-level declarations (loss routes, SSSegmentation prefixes)."""

    neck_type = "JPU"
    inner_type: ClassVar[str] = "FCN"
    ssseg_prefixes = {"segmentor.backbone_net": "backbone", "segmentor.decoder": "head",
                      "segmentor.auxiliary_decoder": "aux_heads", "jpu_neck": "neck"}
    _variants: ClassVar[dict[str, type[FastFCN]]] = {}

    @classmethod
    def from_recipe(cls, builder) -> EncoderDecoder:
        head_table = builder.recipe.head
        if not isinstance(head_table, dict):
            raise RecipeError("head", f"expected a table, got {head_table!r}")
        head_table = copy.deepcopy(head_table)
        variant = cls.for_inner(head_table.pop("segmentor", None))
        backbone, features = builder.backbone()
        neck, features = builder.neck(features, default_type=cls.neck_type)
        head = builder.head(features, default_type=SEGMENTORS.get(variant.inner_type).head_type, table=head_table)
        aux_heads = builder.aux_heads(features)
        return variant(backbone=backbone, neck=neck, head=head, aux_heads=aux_heads,
                       selected_indices=builder.selected_indices, align_corners=builder.align_corners)

    @classmethod
    def for_inner(cls, name: Any) -> type[FastFCN]:
        """The FastFCN class around the inner segmentor ``name`` (``head.segmentor``), checked."""
        if name is None:
            raise RecipeError("head.segmentor", f"name the segmentor whose head FastFCN runs on the JPU features "
                              f"(SSSegmentation: one of {', '.join(SSSEG_INNER)})")
        if not isinstance(name, str):
            raise RecipeError("head.segmentor", f"expected a segmentor name, got {name!r}")
        inner = SEGMENTORS.get(name, path="head.segmentor")
        if name in cls._variants:
            return cls._variants[name]
        if (not (isinstance(inner, type) and issubclass(inner, EncoderDecoder)) or issubclass(inner, FastFCN)
                or not inner.head_type or inner.forward is not EncoderDecoder.forward or inner.uses_targets):
            raise RecipeError("head.segmentor", f"{name} is not a plain backbone -> head segmentor FastFCN can wrap "
                              f"(SSSegmentation: one of {', '.join(SSSEG_INNER)})")
        prefixes = {f"segmentor.{k}": v for k, v in inner.ssseg_prefixes.items()}
        prefixes["jpu_neck"] = "neck"
        variant = type(f"FastFCN[{name}]", (cls,), {
            "__module__": cls.__module__,
            "__doc__": f"FastFCN with {name}'s head ({inner.head_type}).",
            "inner_type": name,
            "head_type": inner.head_type,
            "criterion_type": inner.criterion_type,
            "loss_routes": dict(inner.loss_routes),
            "unsupervised_outputs": inner.unsupervised_outputs,
            "uses_progress": inner.uses_progress,
            "exportable": inner.exportable,
            "not_exportable_reason": inner.not_exportable_reason,
            "ssseg_prefixes": prefixes,
        })
        variant.__name__ = "FastFCN"
        cls._variants[name] = variant
        return variant
