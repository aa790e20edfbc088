"""``CE2P``: Context Embedding with Edge Perceiving (Ruan et al., 2019) as SSSegmentation builds it, and
``CE2PCriterion``, its default criterion (per-batch balanced edge weights, as SSSegmentation)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from torch import nn

from ...registry import CRITERIA, SEGMENTORS
from .base import EncoderDecoder, Route

if TYPE_CHECKING:
    from ..losses.criterion import DenseCriterion


@SEGMENTORS.register("CE2P")
class CE2P(EncoderDecoder):
    """Backbone (4 levels) -> :class:`~segkit.models.heads.ce2p.CE2PHead`.

    Training outputs ``out`` (stage 2), ``stage1`` and ``edge`` (``epm_out_channels`` edge logits); SSSegmentation's
    loss names are routed: ``loss_cls_stage1`` -> ``stage1``, ``loss_cls_stage2`` -> ``out``, ``loss_edge`` ->
    ``edge`` against the batch's ``edge_target`` (the dataset pipeline needs an ``EdgeExtractor`` step). The default
    criterion is :class:`CE2PCriterion`: an edge loss table without ``class_weight`` gets ``"batch_balanced"``.
    SSSegmentation's CE2P has no auxiliary head (an ``auxiliary`` table is not read there); here one may be added.
    """

    head_type = "CE2PHead"
    criterion_type = "CE2PCriterion"
    loss_routes = {
        "loss_cls_stage1": Route("stage1"),
        "loss_cls_stage2": Route("out"),
        "loss_edge": Route("edge", target="edge_target"),
    }
    ssseg_prefixes = {
        "backbone_net": "backbone", "ppm_net": "head.ppm_net", "edge_net": "head.edge_net", "shortcut": "head.shortcut",
        "decoder_stage1": "head.decoder_stage1", "decoder_stage2": "head.decoder_stage2",
        "auxiliary_decoder": "aux_heads",
    }


BATCH_BALANCED_LOSSES = ("CrossEntropyLoss",)
"""The loss types whose edge tables default to ``class_weight = "batch_balanced"`` (the only ones that take it)."""


def balanced_edge_losses(losses: dict[str, Any]) -> dict[str, Any]:
    """``losses`` with ``class_weight = "batch_balanced"`` set in every cross-entropy table whose loss name contains
    ``edge`` and that gives no ``class_weight``.

    SSSegmentation's CE2P overwrites ``class_weight`` of every loss whose name contains ``edge`` with ``[n_edge / n,
    n_non_edge / n]`` counted over each batch's ``edge_target`` (``ce2p.py``), whatever the table says;
    ``CrossEntropyLoss(class_weight="batch_balanced")`` computes exactly these weights. An explicit ``class_weight``
    is kept here (a recipe's choice wins).
    """
    result = copy.deepcopy(losses)
    for name, value in result.items():
        if "edge" not in name:
            continue
        for table in value if isinstance(value, list) else [value]:
            if isinstance(table, dict) and table.get("type") in BATCH_BALANCED_LOSSES:
                table.setdefault("class_weight", "batch_balanced")
    return result


@CRITERIA.register("CE2PCriterion")
class CE2PCriterion:
    """Builds the :class:`~segkit.models.losses.criterion.DenseCriterion` of a CE2P recipe, with its edge
    cross-entropy losses defaulting to ``class_weight = "batch_balanced"`` (see :func:`balanced_edge_losses`).

    A factory, not a subclass: the dense criterion's module imports the segmentors' base, so the segmentor modules
    import it only when a criterion is built. ``criterion.type = "DenseCriterion"`` opts out of the default.
    """

    @classmethod
    def from_recipe(cls, recipe: Any, segmentor: nn.Module, table: dict, *, probe: bool = False) -> DenseCriterion:
        from ..losses.criterion import DenseCriterion

        losses = getattr(recipe, "losses", None)
        if isinstance(losses, dict):
            balanced = balanced_edge_losses(losses)
            if balanced != losses:
                recipe = _with_losses(recipe, balanced)
        return DenseCriterion.from_recipe(recipe, segmentor, table, probe=probe)


def _with_losses(recipe: Any, losses: dict) -> Any:
    """A shallow copy of ``recipe`` with ``losses`` replaced (a pydantic recipe or a plain namespace)."""
    if hasattr(recipe, "model_copy"):
        return recipe.model_copy(update={"losses": losses})
    clone = copy.copy(recipe)
    clone.losses = losses
    return clone
